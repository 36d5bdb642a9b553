"""The checks of one runtime's stored records that need no history replay.

Theory of operation: a stored input record must be a state the spec can
reach, and the records of a runtime must agree with each other. What can be
judged from the records as they are, without replaying any history, is
checked here (docs/decisions.md PD-49):

* each input's lifecycle state satisfies the spec's invariants and its
  fields are within their declared ranges (the generated authority's
  ``is_consistent``; its ``violated_invariants`` names what failed);
* receipts and phases agree: a committed receipt never names an input that
  is still waiting to run (it would run twice), no input is named by two
  receipts, and an input consumed through a run that committed receipts
  is named by the receipt of the boundary it records;
* a stopped or destroyed runtime holds no unfinished input (decision 5).

These checks are cheap (one generated boolean expression per input, the
rest only for the few inputs receipts name), so recovery runs them on
everything it loads and fails closed on the first violation
(``check_loaded``); ``meerkat_runtime.audit`` runs them too, beside the
full replay of every history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meerkat_runtime.generated.input_lifecycle import FIELD_RANGES, InputLifecycleState
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.integrity import corruption
from meerkat_runtime.store.records import INPUTS, RECEIPTS, STATES

_S = InputLifecycleState
# Phases from which an input would still be run: a receipt naming one means
# its effect is already in the session and it would be applied twice.
_WAITING = frozenset({_S.ACCEPTED, _S.QUEUED, _S.STAGED})

# Rule ids of the cross-record checks (the per-input ones are the spec's
# invariant names and ``field_range``).
FIELD_RANGE = "field_range"
RECEIPT_NAMES_WAITING_INPUT = "receipt_names_waiting_input"
INPUT_NAMED_TWICE = "input_named_by_two_receipts"
CONSUMED_WITHOUT_RECEIPT = "consumed_without_receipt"
HALTED_RUNTIME_WITH_LIVE_INPUT = "halted_runtime_with_live_input"


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule a runtime's stored records break."""

    runtime_id: str
    rule: str  # a spec invariant or guard name, or one of the ids above
    message: str
    input_id: str | None = None
    step: int | None = None  # the history entry (from 0), for a replay finding
    table: str = INPUTS  # where the offending record lives

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime_id": self.runtime_id,
            "input_id": self.input_id,
            "step": self.step,
            "rule": self.rule,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = "" if self.input_id is None else f"input {self.input_id}"
        if self.step is not None:
            where += f" step {self.step}"
        return (
            f"{where}: {self.rule}: {self.message}"
            if where
            else (f"{self.rule}: {self.message}")
        )


ReceiptKey = tuple[RunId, int]


def receipts_by_input(
    receipts: Sequence[RunBoundaryReceipt],
) -> dict[InputId, list[ReceiptKey]]:
    """input id -> the receipts (run, sequence) that name it, in order."""
    named: dict[InputId, list[ReceiptKey]] = {}
    for receipt in receipts:
        key = (receipt.run_id, receipt.sequence)
        for input_id in receipt.contributing_input_ids:
            named.setdefault(input_id, []).append(key)
    return named


def state_violations(runtime_id: str, state: InputState) -> list[Violation]:
    """The spec invariants and field ranges one stored state breaks."""
    if state.is_consistent():
        return []
    iid = str(state.input_id)
    found = [
        Violation(runtime_id, name, _invariant_text(state, name), iid)
        for name in state.violated_invariants()
    ]
    snapshot = state.lifecycle_snapshot()
    for field, (low, high) in FIELD_RANGES.items():
        value = getattr(snapshot, field)
        if not low <= value <= high:
            text = f"{field} = {value} is outside its declared range {low}..{high}"
            found.append(Violation(runtime_id, FIELD_RANGE, text, iid))
    return found


def _invariant_text(state: InputState, name: str) -> str:
    snap = state.lifecycle_snapshot()
    outcome = snap.terminal_outcome
    return (
        f"the stored state breaks the spec invariant {name} (phase "
        f"{snap.phase.value}, terminal outcome "
        f"{'none' if outcome is None else type(outcome).__name__}, "
        f"last run {snap.last_run_id}, boundary {snap.last_boundary_sequence}, "
        f"attempts {snap.attempt_count})"
    )


def receipt_violations(
    runtime_id: str,
    state: InputState,
    keys: list[ReceiptKey] | None,
    runs: frozenset[RunId] = frozenset(),
) -> list[Violation]:
    """One input's phase against the receipts that name it (``keys``);
    ``runs``: the runs that committed any receipt. A run that committed
    none applied its inputs by delegation (R-8, boundary 0, no receipt), so
    an input it consumed is not required to be named."""
    found: list[Violation] = []
    phase = state.current_state()
    iid = str(state.input_id)
    if keys and phase in _WAITING:
        text = (
            f"receipt {_key(keys[0])} names it, but it is {phase.value}: "
            "recovery would run it a second time"
        )
        found.append(Violation(runtime_id, RECEIPT_NAMES_WAITING_INPUT, text, iid))
    if keys and len(keys) > 1:
        text = f"named by receipts {', '.join(map(_key, keys))}"
        found.append(
            Violation(runtime_id, INPUT_NAMED_TWICE, text, iid, None, RECEIPTS)
        )
    run, sequence = state.last_run_id(), state.last_boundary_sequence()
    consumed_by_run = phase is _S.CONSUMED and run in runs and sequence is not None
    if consumed_by_run and (run, sequence) not in (keys or ()):
        text = (
            f"consumed by run {run} at boundary {sequence}, but no stored "
            "receipt of that boundary names it"
        )
        found.append(Violation(runtime_id, CONSUMED_WITHOUT_RECEIPT, text, iid))
    return found


def _key(key: ReceiptKey) -> str:
    return f"{key[0]}/{key[1]}"


def runtime_violations(
    runtime_id: str, phase: RuntimeState | None, states: Sequence[InputState]
) -> list[Violation]:
    """Decision 5: a stopped or destroyed runtime holds no unfinished input."""
    if phase is None or not phase.is_terminal():
        return []
    return [
        Violation(
            runtime_id,
            HALTED_RUNTIME_WITH_LIVE_INPUT,
            f"the runtime is stored {phase.value} but the input is "
            f"{state.current_state().value}",
            str(state.input_id),
            None,
            STATES,
        )
        for state in states
        if not state.is_terminal()
    ]


def stored_violations(
    runtime_id: str,
    phase: RuntimeState | None,
    states: Sequence[InputState],
    receipts: Sequence[RunBoundaryReceipt] | None,
) -> list[Violation]:
    """Every violation of the stored-record checks; ``receipts`` is None when
    the store cannot list them (their checks are then skipped). Per input
    one generated test, and two more when the runtime has receipts."""
    found: list[Violation] = []
    for state in states:
        if not state.is_consistent():
            found.extend(state_violations(runtime_id, state))
    if receipts:  # without any, no input is named and none needs to be
        named = receipts_by_input(receipts)
        runs = frozenset(r.run_id for r in receipts)
        consumed = _S.CONSUMED
        for state in states:
            if state.input_id in named or state.current_state() is consumed:
                keys = named.get(state.input_id)
                found.extend(receipt_violations(runtime_id, state, keys, runs))
    found.extend(runtime_violations(runtime_id, phase, states))
    return found


async def stored_receipts(
    store: RuntimeStore, runtime_id: LogicalRuntimeId
) -> list[RunBoundaryReceipt] | None:
    """Every receipt of the runtime, or None from a store that cannot list
    them (the public protocol does not require it)."""
    load = getattr(store, "load_boundary_receipts", None)
    if load is None:
        return None
    try:
        receipts: list[RunBoundaryReceipt] = await load(runtime_id)
    except NotImplementedError:
        return None
    return receipts


def check_loaded(
    runtime_id: str,
    phase: RuntimeState | None,
    states: Sequence[InputState],
    receipts: Sequence[RunBoundaryReceipt] | None,
) -> None:
    """Recovery's check of what it loaded: raises ``RuntimeStoreError.Corrupt``
    naming the runtime, the input and the rule of the first violation."""
    found = stored_violations(runtime_id, phase, states, receipts)
    if not found:
        return
    first = found[0]
    more = (
        f" (and {len(found) - 1} more; run `meerkat-runtime audit`)"
        if len(found) > 1
        else ""
    )
    kind, record = ("input", first.input_id) if first.input_id else ("", "")
    raise corruption(
        first.table,
        runtime_id,
        f"breaks {first.rule}: {first.message}{more}",
        kind,
        record or "",
    )
