"""``audit``: judge what a store recorded against the spec (trace validation).

Theory of operation: every transition an input went through is in its
stored history, with the parameters of the input that fired it (PD-48).
``replay`` feeds that history, from ``accepted``, through a fresh generated
input-lifecycle authority: each step must be a transition the spec allows
from the phase the replay is in (its guards re-evaluated with the stored
parameters), must be the transition the entry names and lead where it says,
and must leave the spec's invariants holding; at the end the replayed phase
and fields must equal the stored ones. Only the first illegal step of an
input is reported: after it the replay has no state to continue from.

Two differences are not violations. A store stamps the boundary that
committed an input (L-9) without a history entry, so stored run and
boundary fields that differ from the replay are fine when a stored receipt
of exactly that boundary names the input. A history written before
parameters were recorded is replayed as far as it can be: a missing
parameter is taken from the replayed state, the guards on it are not
re-evaluated, and the fields it sets are not compared; ``notes`` says which.

Beside the replay, ``audit_records`` runs the stored-record checks of
``audit_checks`` (invariants, ranges, receipts against phases, decision 5),
the same ones recovery runs on what it loads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meerkat_runtime.audit_checks import (
    ReceiptKey,
    Violation,
    receipts_by_input,
    stored_violations,
)
from meerkat_runtime.generated.input_lifecycle import (
    TRANSITION_INPUTS,
    InputLifecycleAuthority,
    InputLifecycleError,
    InputLifecycleInput,
    InputLifecycleState,
)
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import (
    Abandoned,
    Cancelled,
    Coalesced,
    Superseded,
)
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState, InputStateHistoryEntry
from meerkat_runtime.inspection import (
    RuntimeView,
    describe_lease,
    lease_json,
    load_database,
)
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.leases import Lease

# Rule ids of the replay (the others are in ``audit_checks``).
HISTORY_START = "history_starts_at_accepted"
STEP_FROM = "step_from_replayed_phase"
UNKNOWN_TRANSITION = "unknown_transition"
NO_TRANSITION = "no_such_transition"
TERMINAL_IS_FINAL = "terminal_is_final"
STEP_MATCHES_SPEC = "step_matches_spec"
REPLAY_EQUALS_RECORD = "replay_equals_record"

# An input parameter -> the history entry field that records it (PD-48),
# and the authority field a transition sets from it (not compared when the
# parameter was not recorded).
_RECORDED_AS = {
    "run_id": "run_id",
    "boundary_sequence": "boundary_sequence",
    "reason": "abandon_reason",
    "superseded_by": "replaced_by",
    "aggregate_id": "replaced_by",
}
_SETS = {
    "run_id": "last_run_id",
    "boundary_sequence": "last_boundary_sequence",
    "reason": "terminal_outcome",
    "superseded_by": "terminal_outcome",
    "aggregate_id": "terminal_outcome",
}
_COMPARED = (
    "phase",
    "terminal_outcome",
    "attempt_count",
    "last_run_id",
    "last_boundary_sequence",
)
_STAMPED = frozenset({"last_run_id", "last_boundary_sequence"})
_UNKNOWN_RUN = RunId("unrecorded-run")
_UNKNOWN_INPUT = InputId("unrecorded-input")


@dataclass
class Replay:
    """One input's replay: the first violation (if any) and what could not
    be re-evaluated for want of recorded parameters."""

    violation: Violation | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Context:
    runtime_id: str
    state: InputState
    receipts: list[ReceiptKey]
    result: Replay = field(default_factory=Replay)
    unknown: set[str] = field(default_factory=set)  # fields not compared

    def fail(self, rule: str, text: str, step: int | None) -> Replay:
        iid = str(self.state.input_id)
        self.result.violation = Violation(self.runtime_id, rule, text, iid, step)
        return self.result


def replay(
    runtime_id: str, state: InputState, receipts: Sequence[ReceiptKey] = ()
) -> Replay:
    """Replay ``state``'s history through the spec; ``receipts`` are the
    stored receipts naming it (they explain a store's stamp)."""
    ctx = _Context(runtime_id, state, list(receipts))
    authority = InputLifecycleAuthority()
    for index, entry in enumerate(state.history()):
        problem = _step(ctx, authority, index, entry)
        if problem is not None:
            return problem
    return _compare(ctx, authority)


def _step(
    ctx: _Context,
    authority: InputLifecycleAuthority,
    index: int,
    entry: InputStateHistoryEntry,
) -> Replay | None:
    step = f"{entry.from_state.value} → {entry.to_state.value} ({entry.reason})"
    if entry.from_state is not authority.phase():
        rule = HISTORY_START if index == 0 else STEP_FROM
        text = f"{step} starts from {entry.from_state.value}, but the replay is in "
        return ctx.fail(rule, text + authority.phase().value, index)
    kind = TRANSITION_INPUTS.get(entry.reason)
    if kind is None:
        return ctx.fail(
            UNKNOWN_TRANSITION, f"{step}: the spec has no such transition", index
        )
    lifecycle_input = _rebuild(ctx, authority, index, entry, kind)
    try:
        transition = authority.apply(lifecycle_input)
    except InputLifecycleError as exc:
        return ctx.fail(_refusal_rule(exc), f"{step}: {exc}", index)
    if transition.name != entry.reason or transition.next_phase is not entry.to_state:
        text = (
            f"{step}: from {entry.from_state.value} the spec fires "
            f"{transition.name} to {transition.next_phase.value}"
        )
        return ctx.fail(STEP_MATCHES_SPEC, text, index)
    broken = authority.violated_invariants()
    if broken:
        return ctx.fail(broken[0], f"{step}: leaves the invariant broken", index)
    return None


def _refusal_rule(exc: InputLifecycleError) -> str:
    if isinstance(exc, InputLifecycleError.GuardFailed):
        return ", ".join(exc.guards)  # the guards that did not hold
    if isinstance(exc, InputLifecycleError.TerminalState):
        return TERMINAL_IS_FINAL
    return NO_TRANSITION


def _rebuild(
    ctx: _Context,
    authority: InputLifecycleAuthority,
    index: int,
    entry: InputStateHistoryEntry,
    kind: type[InputLifecycleInput],
) -> InputLifecycleInput:
    """The input that fired the step, from the entry's parameters; a missing
    one is stood in for (see the module docstring) and noted."""
    values: dict[str, Any] = {}
    missing: list[str] = []
    for name in kind.__struct_fields__:
        value = getattr(entry, _RECORDED_AS[name])
        if value is None:
            missing.append(name)
            ctx.unknown.add(_SETS[name])
            value = _stand_in(ctx.state, authority, name)
        values[name] = value
    if missing:
        ctx.result.notes.append(
            f"input {ctx.state.input_id} step {index} ({entry.reason}): no "
            f"{', '.join(missing)} recorded: guards reading it not re-evaluated, fields it sets not compared"
        )
    return kind(**values)


def _stand_in(state: InputState, authority: InputLifecycleAuthority, name: str) -> Any:
    """A value for an unrecorded parameter: what the replay or the record
    already holds, so the guards on it hold and the step can go on."""
    outcome = state.terminal_outcome()
    if name == "run_id":
        return authority.last_run_id() or state.last_run_id() or _UNKNOWN_RUN
    if name == "boundary_sequence":
        return state.last_boundary_sequence() or 0
    if name == "reason":
        return outcome.reason if isinstance(outcome, Abandoned) else Cancelled()
    if name == "superseded_by" and isinstance(outcome, Superseded):
        return outcome.superseded_by
    if name == "aggregate_id" and isinstance(outcome, Coalesced):
        return outcome.aggregate_id
    return _UNKNOWN_INPUT


def _compare(ctx: _Context, authority: InputLifecycleAuthority) -> Replay:
    """The replayed phase and fields against the stored ones."""
    replayed, stored = authority.snapshot(), ctx.state.lifecycle_snapshot()
    stamp = (stored.last_run_id, stored.last_boundary_sequence)
    stamped = stamp in ctx.receipts  # L-9: a receipt explains the stamp
    for name in _COMPARED:
        if name in ctx.unknown or (stamped and name in _STAMPED):
            continue
        want, got = getattr(replayed, name), getattr(stored, name)
        if want != got:
            text = f"the history leads to {name} = {_shown(want)}, the record holds {_shown(got)}"
            return ctx.fail(REPLAY_EQUALS_RECORD, text, None)
    return ctx.result


def _shown(value: object) -> str:
    if isinstance(value, InputLifecycleState):
        return value.value
    return "none" if value is None else str(value)


# ---------------------------------------------------------------- runtimes


@dataclass
class RuntimeAudit:
    """What ``audit`` found in one runtime."""

    runtime_id: str
    phase: RuntimeState | None
    inputs: int
    receipts: int
    violations: list[Violation]
    notes: list[str]
    lease: Lease | None = None  # who owned the runtime (PD-36), if anyone did

    @property
    def clean(self) -> bool:
        return not self.violations

    def verdict(self) -> str:
        """One line: clean or how many violations, and what was not checked."""
        head = (
            "clean"
            if self.clean
            else f"{len(self.violations)} violation"
            + ("" if len(self.violations) == 1 else "s")
        )
        text = (
            f"audit: {head} ({self.inputs} histories replayed, {self.receipts} receipts"
        )
        if self.notes:
            text += f"; {len(self.notes)} steps without recorded parameters"
        return text + ")"

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime_id": self.runtime_id,
            "state": None if self.phase is None else self.phase.value,
            "inputs": self.inputs,
            "receipts": self.receipts,
            "clean": self.clean,
            "violations": [v.to_json() for v in self.violations],
            "notes": self.notes,
            "lease": None if self.lease is None else lease_json(self.lease),
        }


def audit_records(
    runtime_id: str,
    phase: RuntimeState | None,
    states: Sequence[InputState],
    receipts: Sequence[RunBoundaryReceipt] | None,
    lease: Lease | None = None,
) -> RuntimeAudit:
    """Audit one runtime's records: the stored-record checks, then the
    replay of every input's history (first illegal step per input)."""
    violations = stored_violations(runtime_id, phase, states, receipts)
    named = receipts_by_input(receipts or ())
    notes: list[str] = []
    for state in states:
        result = replay(runtime_id, state, named.get(state.input_id, ()))
        if result.violation is not None:
            violations.append(result.violation)
        notes.extend(result.notes)
    violations.sort(key=lambda v: (v.input_id or "", v.step is None, v.step or 0))
    return RuntimeAudit(
        runtime_id,
        phase,
        len(states),
        0 if receipts is None else len(receipts),
        violations,
        notes,
        lease,
    )


async def audit_store(
    store: RuntimeStore, runtime_ids: Iterable[LogicalRuntimeId]
) -> list[RuntimeAudit]:
    """Audit the named runtimes of any store (it changes nothing)."""
    audits = []
    for runtime_id in runtime_ids:
        states = await store.load_input_states(runtime_id)
        phase = await store.load_runtime_state(runtime_id)
        receipts = await store.load_boundary_receipts(runtime_id)
        audits.append(audit_records(str(runtime_id), phase, states, receipts))
    return audits


def audit_views(views: Iterable[RuntimeView]) -> list[RuntimeAudit]:
    """Audit runtimes as ``inspect`` loaded them (a SQLite file's or a
    PostgreSQL store's), each with its lease."""
    return [
        audit_records(v.runtime_id, v.state, v.inputs, v.receipts, v.lease)
        for v in views
    ]


def audit_database(path: Path) -> list[RuntimeAudit]:
    """Audit every runtime of a SQLite file, read-only (``inspection``)."""
    return audit_views(load_database(path))


def report_lines(audits: Sequence[RuntimeAudit], now: float | None = None) -> list[str]:
    """The text ``meerkat-runtime audit`` prints; ``now`` (wall-clock
    seconds, default the current time) says whether a lease still holds."""
    when = time.time() if now is None else now
    lines: list[str] = []
    for audit in audits:
        lines.append(f"runtime {audit.runtime_id!r}: {audit.verdict()}")
        lines.append(f"  owner: {describe_lease(audit.lease, when)}")
        lines.extend(f"  {violation}" for violation in audit.violations)
        lines.extend(f"  note: {note}" for note in audit.notes)
    return lines
