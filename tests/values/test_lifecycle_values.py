"""Lifecycle values round-trip through the one JSON codec: abandon reasons,
terminal outcomes, history entries and whole input states (L-10, L-12).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from meerkat_runtime import (
    IdempotencyKey,
    InputAbandonReason,
    InputDurability,
    InputLifecycleInput,
    InputLifecycleState,
    InputState,
    InputStateHistoryEntry,
    InputTerminalOutcome,
    PolicySnapshot,
    PromptInput,
    RunId,
)
from meerkat_runtime.codec import decode, encode
from tests.values.codec import (
    BLOCKS,
    DECISIONS,
    IID,
    IID2,
    RID,
    T0,
    _header,
    _round_trip,
)

# ================================================================ lifecycle (L-10, L-12)

ABANDON_REASONS = [
    pytest.param(InputAbandonReason.Retired(), "retired", id="retired"),
    pytest.param(InputAbandonReason.Reset(), "reset", id="reset"),
    pytest.param(InputAbandonReason.Destroyed(), "destroyed", id="destroyed"),
    pytest.param(InputAbandonReason.Cancelled(), "cancelled", id="cancelled"),
    pytest.param(
        InputAbandonReason.MaxAttemptsExhausted(attempts=3),
        "max_attempts_exhausted",
        id="max_attempts_exhausted",
    ),
]


@pytest.mark.parametrize(("reason", "tag"), ABANDON_REASONS)
def test_abandon_reason_round_trips(reason: Any, tag: str) -> None:
    """L-12, decision 23: externally tagged, as upstream writes it: a bare name,
    or ``{name: {fields}}`` for the one variant with a field."""
    data = encode(reason)
    assert decode(data, InputAbandonReason) == reason
    assert type(reason).from_json(reason.to_json()) == reason
    assert InputAbandonReason.from_json(data.decode("utf-8")) == reason
    expected: Any = tag if tag != "max_attempts_exhausted" else {tag: {"attempts": 3}}
    assert json.loads(data) == expected
    outcome = InputTerminalOutcome.Abandoned(reason=reason)
    wire = _round_trip(outcome, InputTerminalOutcome)
    assert wire == {"outcome_type": "abandoned", "reason": expected}


@pytest.mark.parametrize(
    ("outcome", "wire"),
    [
        (InputTerminalOutcome.Consumed(), {"outcome_type": "consumed"}),
        (
            InputTerminalOutcome.Superseded(superseded_by=IID2),
            {"outcome_type": "superseded", "superseded_by": str(IID2)},
        ),
        (
            InputTerminalOutcome.Coalesced(aggregate_id=IID2),
            {"outcome_type": "coalesced", "aggregate_id": str(IID2)},
        ),
    ],
    ids=["consumed", "superseded", "coalesced"],
)
def test_terminal_outcome_round_trips(
    outcome: InputTerminalOutcome, wire: dict[str, Any]
) -> None:
    """L-12: tagged by ``outcome_type``."""
    assert _round_trip(outcome, InputTerminalOutcome) == wire


def test_history_entry_round_trips() -> None:
    """L-7, L-10: ``{timestamp, from, to, reason}`` (upstream's keys)."""
    entry = InputStateHistoryEntry(
        timestamp=T0,
        from_state=InputLifecycleState.APPLIED,
        to_state=InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
        reason="mark_applied_pending_consumption",
    )
    data = _round_trip(entry, InputStateHistoryEntry)
    assert data == {
        "timestamp": "2024-05-06T07:08:09.123456Z",
        "from": "applied",
        "to": "applied_pending_consumption",
        "reason": "mark_applied_pending_consumption",
    }


def _consumed_state() -> InputState:
    inp = PromptInput(
        header=_header(idempotency_key=IdempotencyKey("k-1")),
        text="hello",
        blocks=BLOCKS,
    )
    state = InputState.new_accepted(inp.id(), now=T0)
    state.policy = PolicySnapshot(version=1, decision=DECISIONS[0])
    state.durability = InputDurability.DURABLE
    state.idempotency_key = IdempotencyKey("k-1")
    state.persisted_input = inp
    state.recovery_count = 2
    state.reconstruction_source = "store"
    state.apply(InputLifecycleInput.QueueAccepted(), T0)
    state.apply(InputLifecycleInput.StageForRun(run_id=RID), T0)
    state.apply(InputLifecycleInput.MarkApplied(run_id=RID), T0)
    state.apply(InputLifecycleInput.MarkAppliedPendingConsumption(boundary_sequence=4))
    state.apply(InputLifecycleInput.Consume())
    return state


def _exhausted_state() -> InputState:
    state = InputState.new_accepted(IID2)
    state.durability = InputDurability.EPHEMERAL
    state.apply(InputLifecycleInput.QueueAccepted())
    for attempt in range(3):
        run_id = RunId(f"run-{attempt}")
        state.apply(InputLifecycleInput.StageForRun(run_id=run_id))
        state.apply(InputLifecycleInput.RollbackStaged())
    return state


def _superseded_state() -> InputState:
    state = InputState.new_accepted(IID)
    state.apply(InputLifecycleInput.QueueAccepted())
    state.apply(InputLifecycleInput.Supersede(superseded_by=IID2))
    return state


STATES = [
    pytest.param(lambda: InputState.new_accepted(IID, now=T0), id="fresh"),
    pytest.param(_consumed_state, id="consumed-full"),
    pytest.param(_exhausted_state, id="abandoned-max-attempts"),
    pytest.param(_superseded_state, id="superseded"),
]


def _accessors(state: InputState) -> tuple[object, ...]:
    return (
        state.input_id,
        state.current_state(),
        state.is_terminal(),
        state.terminal_outcome(),
        state.history(),
        state.last_run_id(),
        state.last_boundary_sequence(),
        state.attempt_count(),
        state.updated_at(),
        state.created_at,
        state.policy,
        state.durability,
        state.idempotency_key,
        state.recovery_count,
        state.reconstruction_source,
        state.persisted_input,
    )


@pytest.mark.parametrize("make", STATES)
def test_input_state_round_trips(make: Any) -> None:
    """L-10: ``to_json``/``from_json`` rebuild the state exactly (history,
    policy, persisted input, terminal outcome ...); it also travels through
    the codec as a field type."""
    state: InputState = make()
    back = InputState.from_json(state.to_json())
    assert back == state
    assert _accessors(back) == _accessors(state)
    assert decode(encode(state), InputState) == state
    assert decode(encode([state]), list[InputState]) == [state]


def test_input_state_wire_shape() -> None:
    """L-10: field names; ids bare; optional fields omitted when None."""
    data = json.loads(_consumed_state().to_json())
    assert data["input_id"] == str(IID)
    assert data["current_state"] == "consumed"
    assert data["terminal_outcome"] == {"outcome_type": "consumed"}
    assert data["durability"] == "durable"
    assert data["idempotency_key"] == "k-1"
    assert data["attempt_count"] == 1
    assert data["recovery_count"] == 2
    assert data["reconstruction_source"] == "store"
    assert data["last_run_id"] == str(RID)
    assert data["last_boundary_sequence"] == 4
    assert data["policy"]["version"] == 1
    assert data["persisted_input"]["input_type"] == "prompt"
    assert [h["to"] for h in data["history"]] == [
        "queued",
        "staged",
        "applied",
        "applied_pending_consumption",
        "consumed",
    ]
    assert all(h["reason"] for h in data["history"])
    assert {"created_at", "updated_at"} <= set(data)

    fresh = json.loads(InputState.new_accepted(IID, now=T0).to_json())
    assert fresh["current_state"] == "accepted"
    absent = {
        "policy",
        "terminal_outcome",
        "durability",
        "idempotency_key",
        "history",
        "reconstruction_source",
        "persisted_input",
        "last_run_id",
        "last_boundary_sequence",
    }
    assert absent.isdisjoint(fresh)
    # L-10: the two counts are always written, zero included.
    assert (fresh["attempt_count"], fresh["recovery_count"]) == (0, 0)


def test_input_state_reads_defaults_for_absent_counters() -> None:
    """L-10: attempt_count, recovery_count and history default on read."""
    raw = {
        "input_id": str(IID),
        "current_state": "queued",
        "created_at": "2024-05-06T07:08:09Z",
        "updated_at": "2024-05-06T07:08:09Z",
    }
    state = InputState.from_json(json.dumps(raw))
    assert state.current_state() is InputLifecycleState.QUEUED
    assert state.attempt_count() == 0
    assert state.recovery_count == 0
    assert state.history() == []


def test_input_state_equality_tracks_every_field() -> None:
    """InputState is mutable: equal by content, unequal after a change, unhashable."""
    state = _consumed_state()
    other = InputState.from_json(state.to_json())
    assert other == state
    other.recovery_count += 1
    assert other != state
    with pytest.raises(TypeError):
        hash(state)
