"""Accept outcomes and reports (A-19) and event envelopes (E-1..E-3)
round-trip through the one JSON codec.
"""

from __future__ import annotations

from typing import Any

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    DestroyReport,
    EphemeralRuntimeDriver,
    Input,
    InputHeader,
    InputLifecycleEvent,
    InputOrigin,
    OperationInput,
    PeerInput,
    PromptInput,
    RecoveryReport,
    RecycleReport,
    RejectReason,
    ResetReport,
    RetireReport,
    RunLifecycleEvent,
    RuntimeEvent,
    RuntimeEventEnvelope,
    RuntimeState,
)
from meerkat_runtime.codec import Value, decode, encode
from meerkat_runtime.events import AnyInputLifecycleEvent, AnyRunLifecycleEvent
from tests.values.codec import (
    CONVENTIONS,
    IID,
    IID2,
    INPUT_EVENTS,
    RID,
    RT,
    _envelope,
    _round_trip,
)

# ================================================================ outcomes

REJECT_REASONS = [
    pytest.param(
        RejectReason.NotReady(state=RuntimeState.RETIRED),
        "not_ready",
        "runtime not accepting input while in state: retired",
        id="not_ready",
    ),
    pytest.param(
        RejectReason.DurabilityViolation(
            detail="External ingress cannot submit derived inputs"
        ),
        "durability_violation",
        "External ingress cannot submit derived inputs",
        id="durability_violation",
    ),
    pytest.param(
        RejectReason.PeerHandlingModeInvalid(
            detail="handling_mode is forbidden on ResponseProgress peer inputs"
        ),
        "peer_handling_mode_invalid",
        "handling_mode is forbidden on ResponseProgress peer inputs",
        id="peer_handling_mode_invalid",
    ),
]


@pytest.mark.parametrize(("reason", "tag", "text"), REJECT_REASONS)
def test_reject_reason_round_trips_and_displays(
    reason: RejectReason, tag: str, text: str
) -> None:
    """A-19: tagged by ``reject_type``; Display is the A-19 text."""
    data = _round_trip(reason, RejectReason)
    assert data["reject_type"] == tag
    assert str(reason) == text
    if tag == "not_ready":
        assert data["state"] == "retired"


@pytest.mark.parametrize(("reason", "tag", "text"), REJECT_REASONS)
def test_rejected_outcome_round_trips(reason: Any, tag: str, text: str) -> None:
    """A-19: ``rejected {reason}`` under ``outcome_type``."""
    outcome = AcceptOutcome.Rejected(reason=reason)
    data = _round_trip(outcome, AcceptOutcome)
    assert data["outcome_type"] == "rejected"
    assert data["reason"]["reject_type"] == tag
    assert outcome.is_rejected()
    assert not outcome.is_accepted()
    assert not outcome.is_deduplicated()
    assert str(outcome.reason) == text


def test_deduplicated_outcome_round_trips() -> None:
    """A-19: ``deduplicated {input_id, existing_id}``, ids bare."""
    outcome = AcceptOutcome.Deduplicated(input_id=IID2, existing_id=IID)
    data = _round_trip(outcome, AcceptOutcome)
    assert data == {
        "outcome_type": "deduplicated",
        "input_id": str(IID2),
        "existing_id": str(IID),
    }
    assert outcome.is_deduplicated()
    assert not outcome.is_accepted()
    assert not outcome.is_rejected()


@pytest.mark.parametrize(
    "inp",
    [
        PromptInput.new("hello"),
        OperationInput(
            header=InputHeader.new(), operation_id="op", event={"kind": "done"}
        ),
        PeerInput(
            header=InputHeader.new(source=InputOrigin.Peer(peer_id="p")),
            body="progress",
            convention=CONVENTIONS[2],
        ),
    ],
    ids=["queued-prompt", "consumed-operation", "steer-progress-peer"],
)
def test_accepted_outcome_from_a_driver_round_trips(inp: Input) -> None:
    """A-15, A-19: ``accepted {input_id, policy, state}``; the carried
    InputState compares equal after decoding."""
    outcome = EphemeralRuntimeDriver(RT).accept_now(inp)
    assert isinstance(outcome, AcceptOutcome.Accepted)
    assert outcome.is_accepted()
    data = _round_trip(outcome, AcceptOutcome)
    assert data["outcome_type"] == "accepted"
    assert data["input_id"] == str(inp.id())
    assert data["state"]["input_id"] == str(inp.id())
    back = decode(encode(outcome), AcceptOutcome)
    assert isinstance(back, AcceptOutcome.Accepted)
    assert back.state == outcome.state
    assert back.state.current_state() is outcome.state.current_state()
    assert back.state.history() == outcome.state.history()
    assert back.policy == outcome.policy


@pytest.mark.parametrize(
    ("report", "cls"),
    [
        (RecoveryReport(), RecoveryReport),
        (
            RecoveryReport(
                inputs_recovered=3, inputs_abandoned=1, inputs_requeued=2, details=["x"]
            ),
            RecoveryReport,
        ),
        (RetireReport(inputs_abandoned=1, inputs_pending_drain=4), RetireReport),
        (ResetReport(inputs_abandoned=2), ResetReport),
        (DestroyReport(inputs_abandoned=5), DestroyReport),
        (RecycleReport(inputs_transferred=6), RecycleReport),
    ],
)
def test_reports_round_trip(report: Value, cls: type[Value]) -> None:
    """Reports are value types like the rest (API.md "Outcomes and reports")."""
    _round_trip(report, cls)


# ================================================================ events (E-1..E-3)

RUN_LIFECYCLE_EVENTS: list[tuple[AnyRunLifecycleEvent, str]] = [
    (RunLifecycleEvent.Started(run_id=RID), "run.started"),
    (RunLifecycleEvent.Completed(run_id=RID), "run.completed"),
    (
        RunLifecycleEvent.Failed(run_id=RID, error="boom", recoverable=False),
        "run.failed",
    ),
    (RunLifecycleEvent.Cancelled(run_id=RID), "run.cancelled"),
]


@pytest.mark.parametrize(
    ("event", "code"), INPUT_EVENTS, ids=[code for _, code in INPUT_EVENTS]
)
def test_input_lifecycle_event_envelope_round_trips(
    event: AnyInputLifecycleEvent, code: str
) -> None:
    """E-1..E-3: envelope ``{id, timestamp, runtime_id, event}``; category
    ``input_lifecycle`` with the event under ``data``, tagged by ``code`` with
    its short name; the dotted name is its ``event_code``, not the tag."""
    tag = code.removeprefix("input.")
    assert event.event_code == code
    assert _round_trip(event, InputLifecycleEvent)["code"] == tag
    wrapped = RuntimeEvent.InputLifecycle(data=event)
    assert wrapped.event_code == code
    assert _round_trip(wrapped, RuntimeEvent)["category"] == "input_lifecycle"
    data = _round_trip(_envelope(wrapped), RuntimeEventEnvelope)
    assert data["runtime_id"] == "rt"
    assert data["id"] == "0190b5a0-0000-7000-8000-0000000000ee"
    assert {"causation_id", "correlation_id"}.isdisjoint(data)
    assert data["event"]["category"] == "input_lifecycle"
    assert data["event"]["data"]["code"] == tag
    assert data["event"]["data"]["input_id"] == str(event.input_id)


@pytest.mark.parametrize(
    ("event", "code"),
    RUN_LIFECYCLE_EVENTS,
    ids=[code for _, code in RUN_LIFECYCLE_EVENTS],
)
def test_run_lifecycle_event_envelope_round_trips(
    event: AnyRunLifecycleEvent, code: str
) -> None:
    """E-2, E-3: category ``run_lifecycle``, data tagged by ``code`` with the
    short name; the dotted name is the ``event_code``."""
    tag = code.removeprefix("run.")
    assert event.event_code == code
    assert _round_trip(event, RunLifecycleEvent)["code"] == tag
    data = _round_trip(
        _envelope(RuntimeEvent.RunLifecycle(data=event)), RuntimeEventEnvelope
    )
    assert data["event"]["category"] == "run_lifecycle"
    assert data["event"]["data"]["code"] == tag
    assert data["event"]["data"]["run_id"] == str(RID)


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        (RuntimeState.IDLE, RuntimeState.ATTACHED),
        (RuntimeState.RUNNING, RuntimeState.RETIRED),
        (RuntimeState.STOPPED, RuntimeState.DESTROYED),
    ],
)
def test_runtime_state_change_envelope_round_trips(
    from_state: RuntimeState, to_state: RuntimeState
) -> None:
    """E-2: category ``runtime_state_change`` with ``data: {from, to}``; the
    value is built and read with API.md's ``from_state``/``to_state``."""
    change = RuntimeEvent.RuntimeStateChange(from_state=from_state, to_state=to_state)
    assert (change.from_state, change.to_state) == (from_state, to_state)
    assert change.event_code == "runtime.state_changed"
    data = _round_trip(_envelope(change), RuntimeEventEnvelope)
    assert data["event"] == {
        "category": "runtime_state_change",
        "data": {"from": from_state.value, "to": to_state.value},
    }


def test_envelopes_drained_from_a_driver_round_trip() -> None:
    """E-1: envelopes a driver emits are readable back, in order."""
    driver = EphemeralRuntimeDriver(RT)
    driver.accept_now(PromptInput.new("hi"))
    driver.attach()
    events = driver.drain_events()
    assert len(events) == 3
    for envelope in events:
        assert decode(encode(envelope), RuntimeEventEnvelope) == envelope
    assert decode(encode(events), list[RuntimeEventEnvelope]) == events
