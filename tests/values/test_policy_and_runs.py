"""Policy decisions and snapshots (P-1), run receipts and run events (R-1, R-2)
round-trip through the one JSON codec.
"""

from __future__ import annotations

import pytest

from meerkat_runtime import (
    InputId,
    PolicyDecision,
    PolicySnapshot,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunEvent,
)
from meerkat_runtime.codec import Value, decode, encode
from tests.values.codec import (
    DECISIONS,
    IID,
    IID2,
    RECEIPT,
    RID,
    _header,
    _round_trip,
    _wire,
)

# ================================================================ policy (P-1)


@pytest.mark.parametrize("decision", DECISIONS)
def test_policy_decision_round_trips(decision: PolicyDecision) -> None:
    """P-1: snake_case enums; every field written."""
    data = encode(decision)
    assert decode(data, PolicyDecision) == decision
    wire = _wire(decision)
    assert set(wire) == {
        "apply_mode",
        "wake_mode",
        "queue_mode",
        "consume_point",
        "drain_policy",
        "routing_disposition",
        "record_transcript",
        "emit_operator_content",
        "policy_version",
    }
    assert wire["apply_mode"] == decision.apply_mode.value
    assert wire["policy_version"] == 1


def test_policy_decision_defaults_when_fields_absent() -> None:
    """P-1: drain_policy, routing_disposition, record_transcript and
    emit_operator_content default when absent on deserialisation."""
    raw = b'{"apply_mode":"ignore","wake_mode":"none","queue_mode":"priority","consume_point":"on_accept"}'
    decision = decode(raw, PolicyDecision)
    assert decision.drain_policy.value == "queue_next_turn"
    assert decision.routing_disposition.value == "queue"
    assert decision.record_transcript is True
    assert decision.emit_operator_content is True
    assert decision.policy_version == 1


def test_policy_decision_has_to_json_and_from_json() -> None:
    """API.md: every value type (decisions included) round-trips through
    ``to_json()`` / ``X.from_json()``."""
    decision = DECISIONS[0]
    to_json = getattr(decision, "to_json")  # noqa: B009 - absent today
    from_json = getattr(PolicyDecision, "from_json")  # noqa: B009
    assert from_json(to_json()) == decision


def test_policy_snapshot_round_trips() -> None:
    """A-8: the ledger's ``policy = {version, decision}``."""
    snapshot = PolicySnapshot(version=1, decision=DECISIONS[0])
    data = _round_trip(snapshot, PolicySnapshot)
    assert data["version"] == 1
    assert data["decision"]["apply_mode"] == "stage_run_start"


# ================================================================ runs


@pytest.mark.parametrize("boundary", list(RunApplyBoundary))
def test_receipt_round_trips(boundary: RunApplyBoundary) -> None:
    """R-2: ids bare, contributors ordered, boundary snake_case."""
    receipt = RunBoundaryReceipt(
        run_id=RID,
        boundary=boundary,
        contributing_input_ids=[IID2, IID],
        conversation_digest="d",
        message_count=3,
        sequence=5,
    )
    data = _round_trip(receipt, RunBoundaryReceipt)
    assert data == {
        "run_id": str(RID),
        "boundary": boundary.value,
        "contributing_input_ids": [str(IID2), str(IID)],
        "conversation_digest": "d",
        "message_count": 3,
        "sequence": 5,
    }


def test_receipt_without_digest_omits_it() -> None:
    """R-2: ``conversation_digest`` is omitted when None."""
    receipt = RunBoundaryReceipt(
        run_id=RID,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=[],
        message_count=1,
        sequence=1,
    )
    assert "conversation_digest" not in _round_trip(receipt, RunBoundaryReceipt)


RUN_EVENTS = [
    pytest.param(RunEvent.RunStarted(run_id=RID), "run_started", [], id="started"),
    pytest.param(
        RunEvent.BoundaryApplied(run_id=RID, receipt=RECEIPT),
        "boundary_applied",
        [IID, IID2],
        id="boundary_applied-no-snapshot",
    ),
    pytest.param(
        RunEvent.BoundaryApplied(
            run_id=RID, receipt=RECEIPT, session_snapshot=bytes(range(256))
        ),
        "boundary_applied",
        [IID, IID2],
        id="boundary_applied-snapshot",
    ),
    pytest.param(
        RunEvent.RunCompleted(run_id=RID, consumed_input_ids=[IID2]),
        "run_completed",
        [IID2],
        id="completed",
    ),
    pytest.param(
        RunEvent.RunFailed(run_id=RID, error="LLM timeout", recoverable=False),
        "run_failed",
        [],
        id="failed",
    ),
    pytest.param(
        RunEvent.RunCancelled(run_id=RID), "run_cancelled", [], id="cancelled"
    ),
]


@pytest.mark.parametrize(("event", "tag", "contributors"), RUN_EVENTS)
def test_run_event_round_trips(
    event: RunEvent, tag: str, contributors: list[InputId]
) -> None:
    """R-1: tagged by ``event_type``; ``session_snapshot`` is bytes (any bytes
    survive); ``contributing_input_ids()`` per variant."""
    data = _round_trip(event, RunEvent)
    assert data["event_type"] == tag
    assert data["run_id"] == str(RID)
    assert event.contributing_input_ids() == contributors
    if isinstance(event, RunEvent.BoundaryApplied):
        back = decode(encode(event), RunEvent)
        assert isinstance(back, RunEvent.BoundaryApplied)
        assert back.session_snapshot == event.session_snapshot
        if event.session_snapshot is None:
            assert "session_snapshot" not in data


WIRE_REQUIRED = [
    pytest.param(_header(), "visibility", id="T-6 header.visibility"),
    pytest.param(
        RunBoundaryReceipt(
            run_id=RID,
            boundary=RunApplyBoundary.IMMEDIATE,
            contributing_input_ids=[],
            message_count=0,
            sequence=3,
        ),
        "message_count",
        id="R-2 receipt.message_count=0",
    ),
    pytest.param(
        RunBoundaryReceipt(
            run_id=RID,
            boundary=RunApplyBoundary.RUN_START,
            contributing_input_ids=[IID],
            message_count=4,
            sequence=0,
        ),
        "sequence",
        id="R-2 receipt.sequence=0",
    ),
    pytest.param(
        RunEvent.RunFailed(run_id=RID, error="boom", recoverable=True),
        "recoverable",
        id="R-1 run_failed.recoverable=true",
    ),
    pytest.param(
        RunEvent.RunCompleted(run_id=RID, consumed_input_ids=[]),
        "consumed_input_ids",
        id="R-1 run_completed.consumed_input_ids=[]",
    ),
]


@pytest.mark.parametrize(("value", "key"), WIRE_REQUIRED)
def test_required_fields_are_always_written(value: Value, key: str) -> None:
    """T-6, R-1, R-2: only fields marked optional upstream are omitted; the
    rest are always on the wire (upstream has no serde default for them, so
    a record lacking them is unreadable by other tools)."""
    assert key in _wire(value)
