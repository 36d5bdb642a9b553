"""The demo's claims: what the parent learnt from the worker (``Journal``) and
the checks of that against the database read back after recovery.

Each claim is a plain value (``Claim``), so the checks can be tested on their
own and ``demo`` decides how to print them; a failed claim makes the demo
exit non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inspection import (
    RuntimeView,
    all_inputs,
    receipts_naming,
    short,
)
from meerkat_runtime.runs import RunApplyBoundary

Event = dict[str, Any]


@dataclass
class Journal:
    """What the worker reported before it was killed."""

    acks: list[Event] = field(default_factory=list)
    crash_run: str = ""
    crash_pid: int = 0

    def record(self, event: Event) -> None:
        if event["event"] == "ack":
            self.acks.append(event)

    def role(self, name: str) -> Event:
        return next(a for a in self.acks if a["role"] == name)

    def acknowledged(self) -> list[str]:
        return [a["input_id"] for a in self.acks if a["outcome"] == "accepted"]


@dataclass(frozen=True)
class Claim:
    title: str
    ok: bool
    text: str


def check_claims(
    journal: Journal, views: list[RuntimeView], after_crash: set[str]
) -> list[Claim]:
    states = all_inputs(views)
    named = receipts_naming(views)
    return [
        durable_claim(journal, after_crash),
        _dedup(journal, states, named),
        _supersede(journal, states, named),
        _steer(journal, views),
        _retry(journal, states, named),
        _recovery(journal, states, named),
        integrity_claim(journal, views),
    ]


States = dict[str, InputState]
Named = dict[str, list[str]]


def durable_claim(journal: Journal, after_crash: set[str]) -> Claim:
    """Every input acknowledged before the crash is in the file after it."""
    acked = journal.acknowledged()
    missing = [short(i) for i in acked if i not in after_crash]
    return Claim(
        "Durable before ack",
        not missing,
        f"each “acknowledged” line was printed only after SQLite committed the input; "
        f"right after the SIGKILL the file held {len(acked) - len(missing)} of the "
        f"{len(acked)} acknowledged inputs"
        + (f" (missing: {missing})" if missing else ""),
    )


def _dedup(journal: Journal, states: States, named: Named) -> Claim:
    original, duplicate = journal.role("original"), journal.role("duplicate")
    ok = (
        duplicate["outcome"] == "deduplicated"
        and duplicate.get("existing_id") == original["input_id"]
        and duplicate["input_id"] not in states
        and len(named.get(original["input_id"], [])) == 1
    )
    return Claim(
        "Dedup",
        ok,
        f"the retried “{original['text']}” carried the same idempotency key, so it was "
        "Deduplicated against the first: one stored input, one run",
    )


def _supersede(journal: Journal, states: States, named: Named) -> Claim:
    old = journal.role("superseded")
    state = states.get(old["input_id"])
    ok = (
        state is not None
        and state.current_state() is InputLifecycleState.SUPERSEDED
        and not named.get(old["input_id"])
    )
    return Claim(
        "Supersede",
        ok,
        f"ops-watch routes external events to QueueMode.SUPERSEDE: “{old['text']}” "
        "was replaced by the newer event with the same supersession key while still "
        "queued; no receipt names it",
    )


def _steer(journal: Journal, views: list[RuntimeView]) -> Claim:
    steer, queued = journal.role("steer"), journal.role("queued")
    order: dict[str, tuple[str, str]] = {}
    for view in views:
        for receipt in view.receipts:
            for input_id in receipt.contributing_input_ids:
                order[str(input_id)] = (str(receipt.run_id), receipt.boundary.value)
    mine, theirs = order.get(steer["input_id"]), order.get(queued["input_id"])
    ok = (
        mine is not None
        and theirs is not None
        and mine[1] == RunApplyBoundary.RUN_CHECKPOINT.value
        and mine[0] < theirs[0]
    )
    return Claim(
        "Steer",
        ok,
        f"“{steer['text']}” (handling_mode STEER) arrived last but ran right after "
        "the current run, at a run checkpoint, ahead of the prompts queued before it",
    )


def _retry(journal: Journal, states: States, named: Named) -> Claim:
    flaky = journal.role("flaky")
    state = states.get(flaky["input_id"])
    ok = (
        state is not None
        and state.current_state() is InputLifecycleState.CONSUMED
        and state.attempt_count() == 2
        and len(named.get(flaky["input_id"], [])) == 1
    )
    attempts = state.attempt_count() if state is not None else 0
    return Claim(
        "Retry",
        ok,
        f"the toy model failed “{flaky['text']}” once; the runtime rolled it back to "
        f"queued and ran it again: {attempts} attempts, one receipt",
    )


def _recovery(journal: Journal, states: States, named: Named) -> Claim:
    crash = journal.role("crash")
    state = states.get(crash["input_id"])
    runs = named.get(crash["input_id"], [])
    ok = (
        state is not None
        and state.current_state() is InputLifecycleState.CONSUMED
        and state.recovery_count >= 1
        and len(runs) == 1
        and not runs[0].startswith(journal.crash_run)
    )
    return Claim(
        "Crash + recovery",
        ok,
        f"“{crash['text']}” was mid-run in pid {journal.crash_pid} when it was "
        "SIGKILLed. Staging is never persisted and the killed run left no receipt, "
        "so the file still had it queued: the new process recovered it, ran it in "
        "a new run, then the input queued behind it",
    )


def integrity_claim(journal: Journal, views: list[RuntimeView]) -> Claim:
    """Every acknowledged input finished; no input is named by two receipts,
    and every consumed input by exactly one."""
    states, named = all_inputs(views), receipts_naming(views)
    acked = journal.acknowledged()
    lost = [short(i) for i in acked if i not in states or not states[i].is_terminal()]
    twice = [short(i) for i, runs in named.items() if len(runs) > 1]
    consumed = [
        i
        for i, s in states.items()
        if s.current_state() is InputLifecycleState.CONSUMED
    ]
    unreceipted = [short(i) for i in consumed if len(named.get(i, [])) != 1]
    ok = not (lost or twice or unreceipted)
    text = (
        f"{len(acked)} acknowledged inputs, all finished: {len(consumed)} consumed, "
        f"each named by exactly one receipt, {len(acked) - len(consumed)} "
        f"superseded; {len(twice)} named by two receipts"
    )
    if not ok:
        text += f" (lost: {lost}, named twice: {twice}, without receipt: {unreceipted})"
    return Claim("Nothing lost, nothing applied twice", ok, text)
