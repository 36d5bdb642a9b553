"""Admission rules for well-formed inputs: a legal input the runtime refuses
(A-2, A-3) is answered with ``AcceptOutcome.Rejected``; a runtime that is not
accepting raises ``RuntimeDriverError.NotReady`` (A-1). In every case nothing
is recorded and no event is emitted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    BlobId,
    ContentBlock,
    ContinuationInput,
    CorrelationId,
    EphemeralRuntimeDriver,
    ExternalEventInput,
    FlowStepInput,
    HandlingMode,
    IdempotencyKey,
    ImageData,
    Input,
    InputDurability,
    InputHeader,
    InputLifecycleState,
    InputOrigin,
    InputVisibility,
    OperationInput,
    PeerConvention,
    PeerInput,
    PromptInput,
    RejectReason,
    ResponseProgressPhase,
    ResponseTerminalStatus,
    RuntimeControlCommand,
    RuntimeDriverError,
    RuntimeState,
    RuntimeTurnMetadata,
    SupersessionKey,
)
from meerkat_runtime.inputs import AnyInputOrigin
from tests.values.admission import (
    RT,
    _accept,
    _assert_accepted,
    _driver,
    _header,
)

# ================================================================ rejections

Derived = InputDurability.DERIVED
MAKERS: dict[str, Callable[[InputHeader, HandlingMode | None], Input]] = {
    "prompt": lambda h, _m: PromptInput(header=h, text="p"),
    "peer_none": lambda h, m: PeerInput(header=h, body="b", handling_mode=m),
    "peer_message": lambda h, m: PeerInput(
        header=h, body="b", convention=PeerConvention.Message(), handling_mode=m
    ),
    "peer_request": lambda h, m: PeerInput(
        header=h,
        body="b",
        convention=PeerConvention.Request(request_id="r", intent="i"),
        handling_mode=m,
    ),
    "peer_progress": lambda h, m: PeerInput(
        header=h,
        body="b",
        convention=PeerConvention.ResponseProgress(
            request_id="r", phase=ResponseProgressPhase.IN_PROGRESS
        ),
        handling_mode=m,
    ),
    "peer_terminal": lambda h, m: PeerInput(
        header=h,
        body="b",
        convention=PeerConvention.ResponseTerminal(
            request_id="r", status=ResponseTerminalStatus.COMPLETED
        ),
        handling_mode=m,
    ),
    "flow_step": lambda h, _m: FlowStepInput(header=h, step_id="s", instructions="i"),
    "external_event": lambda h, _m: ExternalEventInput(
        header=h, event_type="e", payload={"k": 1}
    ),
    "continuation": lambda h, _m: ContinuationInput(header=h, reason="r"),
    "operation": lambda h, _m: OperationInput(
        header=h, operation_id="o", event={"kind": "done"}
    ),
}
EXTERNAL_ORIGINS: dict[str, AnyInputOrigin] = {
    "operator": InputOrigin.Operator(),
    "peer": InputOrigin.Peer(peer_id="p"),
    "external": InputOrigin.External(source_name="hook"),
}
INTERNAL_ORIGINS: dict[str, AnyInputOrigin] = {
    "system": InputOrigin.System(),
    "flow": InputOrigin.Flow(flow_id="f", step_index=0),
}


def _make(
    kind: str,
    origin: AnyInputOrigin,
    durability: InputDurability = Derived,
    mode: HandlingMode | None = None,
) -> Input:
    return MAKERS[kind](_header(source=origin, durability=durability), mode)


def _assert_rejected(inp: Input, expected: AcceptOutcome) -> None:
    driver = _driver()
    before = driver.observe()
    outcome = _accept(driver, inp)
    assert outcome == expected
    assert outcome.is_rejected()
    assert not outcome.is_accepted()
    assert isinstance(outcome, AcceptOutcome.Rejected)
    assert str(outcome.reason) == getattr(outcome.reason, "detail", None)
    assert driver.observe() == before
    assert driver.drain_events() == []
    assert driver.input_state(inp.id()) is None


EXTERNAL_DERIVED = AcceptOutcome.Rejected(
    reason=RejectReason.DurabilityViolation(
        detail="External ingress cannot submit derived inputs"
    )
)


@pytest.mark.parametrize(
    ("kind", "origin"), list(itertools.product(MAKERS, EXTERNAL_ORIGINS))
)
def test_derived_from_external_ingress_is_rejected(kind: str, origin: str) -> None:
    """A-2, T-11 step 1: derived durability from Operator/Peer/External is
    refused for every variant (even those that allow derived from System)."""
    _assert_rejected(_make(kind, EXTERNAL_ORIGINS[origin]), EXTERNAL_DERIVED)


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("prompt", "Derived durability forbidden for prompt"),
        ("flow_step", "Derived durability forbidden for flow_step"),
        ("peer_message", "Derived durability forbidden for peer_message"),
        ("peer_request", "Derived durability forbidden for peer_request"),
        ("peer_terminal", "Derived durability forbidden for peer_response_terminal"),
    ],
)
@pytest.mark.parametrize("origin", list(INTERNAL_ORIGINS))
def test_derived_forbidden_kinds_are_rejected(
    kind: str, detail: str, origin: str
) -> None:
    """A-2, T-11 step 2, T-12 with decision 11: the kind in the message is the
    plain kind id (``peer_message``, never ``peer_peer_message``)."""
    inp = _make(kind, INTERNAL_ORIGINS[origin])
    _assert_rejected(
        inp,
        AcceptOutcome.Rejected(reason=RejectReason.DurabilityViolation(detail=detail)),
    )
    assert "peer_peer" not in detail


@pytest.mark.parametrize(
    "kind",
    ["external_event", "continuation", "operation", "peer_progress", "peer_none"],
)
@pytest.mark.parametrize("origin", list(INTERNAL_ORIGINS))
def test_derived_allowed_kinds_from_system_or_flow_are_accepted(
    kind: str, origin: str
) -> None:
    """T-11, T-13: derived is allowed from System/Flow for ExternalEvent,
    Continuation, Operation and a progress or convention-less Peer."""
    driver = _driver()
    inp = _make(kind, INTERNAL_ORIGINS[origin])
    _assert_accepted(driver, inp)
    state = driver.input_state(inp.id())
    assert state is not None
    assert state.durability is InputDurability.DERIVED


@pytest.mark.parametrize(
    "durability", [InputDurability.DURABLE, InputDurability.EPHEMERAL]
)
@pytest.mark.parametrize(
    "origin", list(EXTERNAL_ORIGINS.values()) + list(INTERNAL_ORIGINS.values())
)
@pytest.mark.parametrize("kind", list(MAKERS))
def test_durable_and_ephemeral_are_always_accepted(
    kind: str, origin: AnyInputOrigin, durability: InputDurability
) -> None:
    """T-10: only ``derived`` is ever refused."""
    _assert_accepted(_driver(), _make(kind, origin, durability))


PROGRESS_MODE_INVALID = AcceptOutcome.Rejected(
    reason=RejectReason.PeerHandlingModeInvalid(
        detail="handling_mode is forbidden on ResponseProgress peer inputs"
    )
)


@pytest.mark.parametrize("mode", list(HandlingMode))
@pytest.mark.parametrize(
    "durability", [InputDurability.DURABLE, InputDurability.EPHEMERAL, Derived]
)
def test_progress_peer_with_a_handling_mode_is_rejected(
    mode: HandlingMode, durability: InputDurability
) -> None:
    """A-3, T-14: a ResponseProgress peer may not carry any handling mode."""
    origin = (
        InputOrigin.System() if durability is Derived else InputOrigin.Peer(peer_id="p")
    )
    _assert_rejected(
        _make("peer_progress", origin, durability, mode), PROGRESS_MODE_INVALID
    )


@pytest.mark.parametrize("mode", list(HandlingMode))
@pytest.mark.parametrize(
    "kind", ["peer_none", "peer_message", "peer_request", "peer_terminal"]
)
def test_other_peers_may_carry_a_handling_mode(kind: str, mode: HandlingMode) -> None:
    """T-14: Message, Request, ResponseTerminal and convention-less peers may
    carry either mode (steer included)."""
    _assert_accepted(
        _driver(),
        _make(kind, InputOrigin.Peer(peer_id="p"), InputDurability.DURABLE, mode),
    )


def test_durability_check_comes_before_the_peer_mode_check() -> None:
    """A-2 before A-3: a derived progress peer with a mode from a Peer origin
    is a durability violation."""
    inp = _make(
        "peer_progress", InputOrigin.Peer(peer_id="p"), Derived, HandlingMode.STEER
    )
    _assert_rejected(inp, EXTERNAL_DERIVED)


def test_rejected_input_id_and_key_can_be_used_afterwards() -> None:
    """A rejection records nothing: the same id and idempotency key are
    accepted when resubmitted legally (not deduplicated)."""
    driver = _driver()
    header = _header(
        source=InputOrigin.Operator(),
        durability=Derived,
        idempotency_key=IdempotencyKey("once"),
    )
    rejected = _accept(driver, PromptInput(header=header, text="p"))
    assert rejected.is_rejected()
    legal = PromptInput(
        header=_header(
            id=header.id,
            durability=InputDurability.DURABLE,
            idempotency_key=IdempotencyKey("once"),
        ),
        text="p",
    )
    outcome = _accept(driver, legal)
    assert outcome.is_accepted()
    assert isinstance(outcome, AcceptOutcome.Accepted)
    assert outcome.input_id == header.id


# ================================================================ not ready


def _retire(driver: EphemeralRuntimeDriver) -> None:
    asyncio.run(driver.retire())


def _stop(driver: EphemeralRuntimeDriver) -> None:
    asyncio.run(driver.on_runtime_control(RuntimeControlCommand.STOP))


def _destroy(driver: EphemeralRuntimeDriver) -> None:
    asyncio.run(driver.destroy())


@pytest.mark.parametrize(
    ("leave", "state"),
    [
        pytest.param(_retire, RuntimeState.RETIRED, id="retired"),
        pytest.param(_stop, RuntimeState.STOPPED, id="stopped"),
        pytest.param(_destroy, RuntimeState.DESTROYED, id="destroyed"),
    ],
)
def test_accept_when_not_ready_raises_not_ready(
    leave: Callable[[EphemeralRuntimeDriver], None], state: RuntimeState
) -> None:
    """A-1: the *error* ``NotReady{state}`` ("Runtime not ready: retired"),
    not ``Rejected``; nothing recorded, no event."""
    driver = _driver()
    leave(driver)
    assert driver.runtime_state() is state
    driver.drain_events()
    before = driver.observe()
    inp = PromptInput.new("late")
    with pytest.raises(RuntimeDriverError.NotReady) as caught:
        _accept(driver, inp)
    err = caught.value
    assert isinstance(err, RuntimeDriverError)
    assert getattr(err, "state") is state  # noqa: B009 - typed as object
    assert str(err) == f"Runtime not ready: {state.value}"
    assert driver.observe() == before
    assert driver.drain_events() == []
    assert driver.input_state(inp.id()) is None


def test_retired_runtime_keeps_its_queued_work() -> None:
    """A-1 with C-8: the refused input changes nothing about pending work."""
    driver = EphemeralRuntimeDriver(RT)
    first = PromptInput.new("queued before retire")
    assert _accept(driver, first).is_accepted()
    _retire(driver)
    with pytest.raises(RuntimeDriverError.NotReady):
        _accept(driver, PromptInput.new("late"))
    state = driver.input_state(first.id())
    assert state is not None
    assert state.current_state() is InputLifecycleState.QUEUED
    assert driver.active_input_ids() == [first.id()]


def test_well_formed_inputs_of_every_kind_are_accepted() -> None:
    """Control: the validator accepts every variant with every optional field
    set (so the failures above are caused by the one bad field)."""
    driver = _driver()
    blocks: list[Any] = [
        ContentBlock.Text(text="t"),
        ContentBlock.Image(media_type="image/png", data=ImageData.Inline(data="AA==")),
        ContentBlock.Image(
            media_type="image/png", data=ImageData.Blob(blob_id=BlobId("b"))
        ),
    ]
    full: dict[str, Any] = {
        "idempotency_key": None,
        "supersession_key": SupersessionKey("s"),
        "correlation_id": CorrelationId.new(),
        "visibility": InputVisibility(transcript_eligible=False),
    }
    inputs: list[Input] = [
        PromptInput(
            header=_header(**full),
            text="t",
            blocks=blocks,
            turn_metadata=RuntimeTurnMetadata(handling_mode=HandlingMode.STEER),
        ),
        PeerInput(
            header=_header(
                source=InputOrigin.Peer(peer_id="p", runtime_id="r"), **full
            ),
            body="b",
            convention=PeerConvention.Request(request_id="r", intent="i"),
            blocks=blocks,
            handling_mode=HandlingMode.QUEUE,
        ),
        FlowStepInput(
            header=_header(source=InputOrigin.Flow(flow_id="f", step_index=2), **full),
            step_id="s",
            instructions="i",
            blocks=blocks,
            turn_metadata=RuntimeTurnMetadata(),
        ),
        ExternalEventInput(
            header=_header(source=InputOrigin.External(source_name="x"), **full),
            event_type="e",
            payload={"a": [1, 2.5, None, True, "s"]},
            blocks=blocks,
            handling_mode=HandlingMode.STEER,
        ),
        ContinuationInput(
            header=_header(source=InputOrigin.System(), **full),
            reason="r",
            handling_mode=HandlingMode.STEER,
            request_id="q",
        ),
        OperationInput(header=_header(**full), operation_id="o", event=[1, "two"]),
    ]
    for inp in inputs:
        _assert_accepted(driver, inp)
