"""Checking a fleet: acknowledged work in, every input applied exactly once
out (used by tests/fleet, ``make demo-fleet`` and bench/fleet.py).

``load_sessions`` accepts prompts into many sessions through an owner of
its own and returns, per session, the ids the store acknowledged, in the
order they were acknowledged. ``check_exactly_once`` then reads what the
fleet left and names every input that was lost, applied twice, applied out
of its session's arrival order, or is not consumed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, SessionId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
from meerkat_runtime.store.base import RuntimeStore

if TYPE_CHECKING:
    from meerkat_runtime.testing.fleet_submitter import SubmitterReport

Acknowledged = dict[SessionId, list[InputId]]


def session_ids(count: int, prefix: str = "fleet") -> list[SessionId]:
    return [SessionId(f"{prefix}-{n:04d}") for n in range(count)]


async def load_sessions(
    store: RuntimeStore,
    sessions: list[SessionId],
    per_session: int,
    *,
    owner: str = "fleet-loader",
    release: bool = True,
) -> Acknowledged:
    """Accept ``per_session`` prompts into each session as ``owner`` (no
    executor: nothing runs here), the sessions side by side. With
    ``release`` the leases are given back at the end; without, they are
    left to expire, as a crashed loader's would."""
    adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore(), owner=owner)
    acknowledged: Acknowledged = {sid: [] for sid in sessions}
    await asyncio.gather(*(adapter.register_session(sid) for sid in sessions))

    async def accept(sid: SessionId, n: int) -> None:
        outcome = await adapter.accept_input(sid, PromptInput.new(f"{sid} #{n}"))
        assert isinstance(outcome, Accepted), outcome
        acknowledged[sid].append(outcome.input_id)

    # The n-th prompts of all sessions at once (they share commits); a
    # session's own prompts one after the other, so its order is known.
    for n in range(per_session):
        await asyncio.gather(*(accept(sid, n) for sid in sessions))
    if release:
        await adapter.close()
    elif adapter.ownership is not None:
        adapter.ownership.held.clear()  # nothing renews or releases them now
        await adapter.ownership.close()
    return acknowledged


@dataclass
class FleetCheck:
    """What ``check_exactly_once`` found; ``problems`` empty when clean."""

    inputs: int = 0
    receipts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


async def check_exactly_once(
    store: RuntimeStore, acknowledged: Acknowledged
) -> FleetCheck:
    """Every acknowledged input consumed and named by exactly one receipt,
    and each session's receipts applying its inputs in arrival order."""
    check = FleetCheck()
    for sid, expected in acknowledged.items():
        runtime_id = LogicalRuntimeId(str(sid))
        receipts = await store.load_boundary_receipts(runtime_id)
        check.receipts += len(receipts)
        applied = [iid for r in receipts for iid in r.contributing_input_ids]
        counts = Counter(applied)
        states = {s.input_id: s for s in await store.load_input_states(runtime_id)}
        for iid in expected:
            check.inputs += 1
            state = states.get(iid)
            if state is None:
                check.problems.append(f"{sid}: input {iid} lost (not in the store)")
            elif state.current_state() is not InputLifecycleState.CONSUMED:
                phase = state.current_state().value
                check.problems.append(f"{sid}: input {iid} ended {phase}, not consumed")
            if counts[iid] != 1:
                check.problems.append(
                    f"{sid}: input {iid} named by {counts[iid]} receipts, not 1"
                )
        if [iid for iid in applied if iid in set(expected)] != expected:
            check.problems.append(
                f"{sid}: receipts apply its inputs out of arrival order"
            )
    return check


COMPLETED = frozenset({"Completed", "CompletedWithoutResult"})


async def check_submitters(
    store: RuntimeStore, reports: Sequence[SubmitterReport]
) -> FleetCheck:
    """``check_exactly_once`` for what each submitter process acknowledged
    (arrival order per submitter: two submitters' prompts to one session
    interleave in an order nobody knows), plus what the submitters saw:
    every resubmission answered ``Deduplicated`` naming the original, and
    every handle they held resolved once, completed."""
    total = FleetCheck()
    for report in reports:
        acked: Acknowledged = {
            SessionId(sid): [InputId(i) for i in ids]
            for sid, ids in report.acked.items()
        }
        check = await check_exactly_once(store, acked)
        total.inputs += check.inputs
        total.receipts = check.receipts  # the same sessions: counted once
        total.problems += [f"{report.name}: {p}" for p in check.problems]
        total.problems += [f"{report.name}: {w}" for w in report.wrong]
        resolved = sum(report.outcomes.values())
        if resolved != report.handles:
            total.problems.append(
                f"{report.name}: {resolved} of {report.handles} handles resolved"
            )
        if set(report.outcomes) - COMPLETED:
            total.problems.append(f"{report.name}: outcomes {report.outcomes}")
    return total
