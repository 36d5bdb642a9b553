"""Trace validation: history parameters (PD-48), the replay and the
stored-record checks (PD-49), on states built in memory."""

from __future__ import annotations

import msgspec

from meerkat_runtime.audit import audit_records, replay
from meerkat_runtime.audit_checks import stored_violations
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.input_state import InputState, InputStateHistoryEntry
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt

RID = "runtime-1"
RUN, OTHER = RunId("run-1"), RunId("run-2")


def _consumed(run: RunId = RUN, sequence: int = 0) -> InputState:
    state = InputState.new_accepted(InputId.new())
    for step in (
        il.QueueAccepted(),
        il.StageForRun(run),
        il.MarkApplied(run),
        il.MarkAppliedPendingConsumption(sequence),
        il.Consume(),
    ):
        state.apply(step)
    return state


def _receipt(
    ids: list[InputId], run: RunId = RUN, sequence: int = 0
) -> RunBoundaryReceipt:
    return RunBoundaryReceipt(
        run_id=run,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=ids,
        message_count=1,
        sequence=sequence,
    )


def _with_history(
    state: InputState, history: list[InputStateHistoryEntry]
) -> InputState:
    record = msgspec.structs.replace(state.to_record(), history=history)
    return InputState.from_record(record)


# ---------------------------------------------------------------- parameters


def test_history_entries_carry_the_parameters_of_their_transition() -> None:
    state = _consumed(RUN, 4)
    entries = state.history()
    assert [e.run_id for e in entries] == [None, RUN, RUN, None, None]
    assert [e.boundary_sequence for e in entries] == [None, None, None, 4, None]
    abandoned = InputState.new_accepted(InputId.new())
    abandoned.apply(il.Abandon(InputAbandonReason.Reset()))
    assert abandoned.history()[0].abandon_reason == InputAbandonReason.Reset()
    replacer = InputId.new()
    for lifecycle_input in (il.Supersede(replacer), il.Coalesce(replacer)):
        other = InputState.new_accepted(InputId.new())
        other.apply(il.QueueAccepted())
        other.apply(lifecycle_input)
        assert other.history()[-1].replaced_by == replacer
        assert InputState.from_json(other.to_json()) == other  # round trip


def test_an_entry_written_before_parameters_decodes_without_them() -> None:
    old = (
        b'{"timestamp":"2025-01-01T00:00:00Z","from_state":"queued",'
        b'"to_state":"staged","reason":"stage_for_run"}'
    )
    entry = InputStateHistoryEntry.from_json(old)
    assert (entry.run_id, entry.boundary_sequence) == (None, None)
    assert (entry.abandon_reason, entry.replaced_by) == (None, None)


# ---------------------------------------------------------------- replay


def test_a_history_the_driver_writes_replays_clean() -> None:
    state = _consumed()
    result = replay(RID, state, [(RUN, 0)])
    assert result.violation is None
    assert result.notes == []


def test_the_replay_re_evaluates_guards_with_the_stored_parameters() -> None:
    state = _consumed()
    history = state.history()
    history[2] = msgspec.structs.replace(history[2], run_id=OTHER)  # mark_applied
    result = replay(RID, _with_history(state, history))
    assert result.violation is not None
    assert result.violation.rule == "matches_last_run"
    assert result.violation.step == 2


def test_a_step_the_spec_would_name_otherwise_is_a_violation() -> None:
    state = _consumed()
    history = state.history()
    history[0] = msgspec.structs.replace(
        history[0], to_state=il.InputLifecycleState.STAGED
    )
    result = replay(RID, _with_history(state, history))
    assert result.violation is not None
    assert result.violation.rule == "step_matches_spec"
    assert result.violation.step == 0


def test_a_history_without_parameters_replays_with_notes_not_violations() -> None:
    state = _consumed(RUN, 3)
    bare = [
        msgspec.structs.replace(e, run_id=None, boundary_sequence=None)
        for e in state.history()
    ]
    result = replay(RID, _with_history(state, bare), [(RUN, 3)])
    assert result.violation is None
    assert len(result.notes) == 3  # stage, mark_applied, pending consumption
    assert "mark_applied" in result.notes[1]
    assert "not re-evaluated" in result.notes[1]


def test_a_stamp_is_explained_only_by_a_receipt_of_that_boundary() -> None:
    state = _consumed(RUN, 0)
    state.stamp_receipt_metadata(OTHER, 5)  # L-9, no history entry
    assert replay(RID, state, [(OTHER, 5)]).violation is None
    unexplained = replay(RID, state, [(RUN, 0)]).violation
    assert unexplained is not None
    assert unexplained.rule == "replay_equals_record"
    assert "last_run_id" in unexplained.message


# ---------------------------------------------------------------- stored checks


def _rules(
    states: list[InputState],
    receipts: list[RunBoundaryReceipt],
    phase: RuntimeState | None = RuntimeState.IDLE,
) -> set[str]:
    return {v.rule for v in stored_violations(RID, phase, states, receipts)}


def test_receipts_and_phases_must_agree() -> None:
    consumed = _consumed()
    assert _rules([consumed], [_receipt([consumed.input_id])]) == set()
    other_boundary = _receipt([], RUN, 1)
    assert _rules([consumed], [other_boundary]) == {"consumed_without_receipt"}
    assert _rules([consumed], []) == set()  # a run without receipts
    twice = [_receipt([consumed.input_id]), _receipt([consumed.input_id], OTHER, 0)]
    assert _rules([consumed], twice) == {"input_named_by_two_receipts"}
    queued = InputState.new_accepted(InputId.new())
    queued.apply(il.QueueAccepted())
    assert _rules([queued], [_receipt([queued.input_id])]) == {
        "receipt_names_waiting_input"
    }


def test_a_halted_runtime_holds_no_live_input() -> None:
    queued = InputState.new_accepted(InputId.new())
    queued.apply(il.QueueAccepted())
    assert _rules([queued], [], RuntimeState.DESTROYED) == {
        "halted_runtime_with_live_input"
    }
    assert _rules([_consumed()], [_receipt([])], RuntimeState.STOPPED) == {
        "consumed_without_receipt"
    }  # finished inputs are fine; the missing receipt is not


def test_audit_records_sorts_and_counts() -> None:
    good, bad = _consumed(), _consumed()
    audit = audit_records(
        RID, RuntimeState.IDLE, [good, bad], [_receipt([good.input_id])]
    )
    assert not audit.clean
    assert [v.input_id for v in audit.violations] == [str(bad.input_id)]
    assert audit.verdict().startswith("audit: 1 violation (2 histories replayed")
