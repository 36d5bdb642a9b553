"""Admission validation (issue deliverable 6; docs/behaviour.md A-1..A-3,
T-10..T-14, decision 11).

Bad input gets a clear error and leaves nothing behind: a malformed input
raises ``RuntimeDriverError.ValidationFailed`` whose ``reason`` names the
field; a legal input the runtime refuses (A-2, A-3) is answered with
``AcceptOutcome.Rejected``; a runtime that is not accepting raises
``RuntimeDriverError.NotReady`` (A-1). In every case nothing is recorded and
no event is emitted.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime
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
    InputId,
    InputLifecycleState,
    InputOrigin,
    InputVisibility,
    LogicalRuntimeId,
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
    codec,
)
from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.inputs import AnyInputOrigin

RT = LogicalRuntimeId("rt")
MIB = 1024 * 1024


def _any(value: object) -> Any:
    """Lets a test hand the driver a value of the wrong type."""
    return value


def _header(
    source: AnyInputOrigin | None = None,
    durability: InputDurability = InputDurability.DURABLE,
    **fields: Any,
) -> InputHeader:
    values: dict[str, Any] = {
        "id": InputId.new(),
        "timestamp": datetime.now(UTC),
        "source": source if source is not None else InputOrigin.Operator(),
        "durability": durability,
    }
    values.update(fields)
    return InputHeader(**values)


def _prompt(text: object = "hi", **fields: Any) -> PromptInput:
    header = fields.pop("header", None) or _header()
    return PromptInput(header=header, text=_any(text), **fields)


def _keyed(key: object) -> PromptInput:
    return _prompt(header=_header(idempotency_key=_any(key)))


def _driver(max_input_bytes: int | None = None) -> EphemeralRuntimeDriver:
    """A driver with some history, so "nothing changed" is not vacuous."""
    if max_input_bytes is None:
        driver = EphemeralRuntimeDriver(RT)
    else:
        driver = EphemeralRuntimeDriver(RT, max_input_bytes=max_input_bytes)
    accepted = driver.accept_now(PromptInput.new("earlier"))
    assert accepted.is_accepted()
    driver.drain_events()
    return driver


def _accept(driver: EphemeralRuntimeDriver, inp: object) -> AcceptOutcome:
    """The public async entry point."""
    return asyncio.run(driver.accept_input(_any(inp)))


def _assert_validation_failed(
    driver: EphemeralRuntimeDriver, inp: object, field: str
) -> ValidationFailedError:
    before = driver.observe()
    with pytest.raises(RuntimeDriverError.ValidationFailed) as caught:
        _accept(driver, inp)
    err = caught.value
    assert isinstance(err, RuntimeDriverError)
    # The reason names the field, or a path inside it (``payload.tags``).
    assert re.match(rf"{re.escape(field)}[:.\[]", err.reason), err.reason
    assert err.reason in str(err)
    assert driver.observe() == before
    assert driver.drain_events() == []
    return err


def _assert_accepted(driver: EphemeralRuntimeDriver, inp: Input) -> None:
    outcome = _accept(driver, inp)
    assert outcome.is_accepted(), outcome
    assert driver.input_state(inp.id()) is not None


# ================================================================ wrong shapes


class _Origin:
    """Looks like an origin to a duck-typer; is not one."""

    type = "operator"


BAD_INPUTS: list[Any] = [
    pytest.param(lambda: _prompt(5), "text", id="text-int"),
    pytest.param(lambda: _prompt(None), "text", id="text-none"),
    pytest.param(lambda: _prompt(b"bytes"), "text", id="text-bytes"),
    pytest.param(
        lambda: PromptInput(header=_any(None), text="x"), "header", id="header-none"
    ),
    pytest.param(
        lambda: PromptInput(header=_any({"id": "x"}), text="x"),
        "header",
        id="header-dict",
    ),
    pytest.param(
        lambda: _prompt(
            header=_header(id=_any("0190b5a0-0000-7000-8000-000000000001"))
        ),
        "header.id",
        id="header.id-str",
    ),
    pytest.param(
        lambda: _prompt(header=_header(id=_any(None))),
        "header.id",
        id="header.id-missing",
    ),
    pytest.param(
        lambda: _prompt(header=_header(id=InputId(""))),
        "header.id",
        id="header.id-empty",
    ),
    pytest.param(
        lambda: _prompt(header=_header(timestamp=_any("2024-01-01T00:00:00Z"))),
        "header.timestamp",
        id="header.timestamp-str",
    ),
    pytest.param(
        lambda: _prompt(header=_header(source=_any("operator"))),
        "header.source",
        id="header.source-str",
    ),
    pytest.param(
        lambda: _prompt(header=_header(source=_any(_Origin()))),
        "header.source",
        id="header.source-object",
    ),
    pytest.param(
        lambda: _prompt(header=_header(source=_any(InputVisibility()))),
        "header.source",
        id="header.source-other-value",
    ),
    pytest.param(
        lambda: _prompt(header=_header(source=_any(InputOrigin.Peer(peer_id=_any(7))))),
        "header.source.peer_id",
        id="header.source.peer_id-int",
    ),
    pytest.param(
        lambda: _prompt(header=_header(durability=_any("durable"))),
        "header.durability",
        id="header.durability-str",
    ),
    pytest.param(
        lambda: _prompt(header=_header(durability=_any(HandlingMode.QUEUE))),
        "header.durability",
        id="header.durability-other-enum",
    ),
    pytest.param(
        lambda: _prompt(header=_header(visibility=_any(None))),
        "header.visibility",
        id="header.visibility-none",
    ),
    pytest.param(
        lambda: _prompt(header=_header(correlation_id=_any("corr"))),
        "header.correlation_id",
        id="header.correlation_id-str",
    ),
    pytest.param(
        lambda: _prompt(header=_header(supersession_key=_any(IdempotencyKey("k")))),
        "header.supersession_key",
        id="header.supersession_key-wrong-id-type",
    ),
    pytest.param(lambda: object(), "input", id="plain-object"),
    pytest.param(lambda: None, "input", id="none"),
    pytest.param(lambda: "prompt", "input", id="str"),
    pytest.param(lambda: PromptInput, "input", id="the-class-itself"),
    pytest.param(lambda: _header(), "input", id="a-header"),
    pytest.param(lambda: _prompt(blocks=["x"]), "blocks[0]", id="blocks-str-item"),
    pytest.param(
        lambda: _prompt(blocks=[ContentBlock.Text(text="ok"), {"type": "text"}]),
        "blocks[1]",
        id="blocks-dict-item",
    ),
    pytest.param(
        lambda: _prompt(blocks=[ImageData.Inline(data="AA==")]),
        "blocks[0]",
        id="blocks-image-data-not-a-block",
    ),
    pytest.param(lambda: _prompt(blocks="text"), "blocks", id="blocks-not-a-list"),
    pytest.param(
        lambda: _prompt(blocks=[ContentBlock.Text(text=_any(3))]),
        "blocks[0].text",
        id="blocks[0].text-int",
    ),
    pytest.param(
        lambda: _prompt(
            blocks=[
                ContentBlock.Image(
                    media_type=_any(None), data=ImageData.Inline(data="AA==")
                )
            ]
        ),
        "blocks[0].media_type",
        id="blocks[0].media_type-none",
    ),
    pytest.param(
        lambda: _prompt(
            blocks=[
                ContentBlock.Image(
                    media_type="image/png", data=ImageData.Inline(data=_any(b"\x89"))
                )
            ]
        ),
        "blocks[0].data",
        id="blocks[0].data-bytes",
    ),
    pytest.param(
        lambda: _prompt(turn_metadata=_any({"handling_mode": "steer"})),
        "turn_metadata",
        id="turn_metadata-dict",
    ),
    pytest.param(
        lambda: _prompt(turn_metadata=RuntimeTurnMetadata(handling_mode=_any("steer"))),
        "turn_metadata.handling_mode",
        id="turn_metadata.handling_mode-str",
    ),
    pytest.param(
        lambda: PeerInput(header=_header(), body=_any(1)), "body", id="peer-body-int"
    ),
    pytest.param(
        lambda: PeerInput(header=_header(), body="b", convention=_any("message")),
        "convention",
        id="peer-convention-str",
    ),
    pytest.param(
        lambda: PeerInput(header=_header(), body="b", handling_mode=_any("steer")),
        "handling_mode",
        id="peer-handling_mode-str",
    ),
    pytest.param(
        lambda: FlowStepInput(header=_header(), step_id=_any(1), instructions="i"),
        "step_id",
        id="flow_step-step_id-int",
    ),
    pytest.param(
        lambda: FlowStepInput(header=_header(), step_id="s", instructions=_any(None)),
        "instructions",
        id="flow_step-instructions-none",
    ),
    pytest.param(
        lambda: ExternalEventInput(header=_header(), event_type=_any(1), payload={}),
        "event_type",
        id="external-event_type-int",
    ),
    pytest.param(
        lambda: ExternalEventInput(
            header=_header(), event_type="e", payload={}, handling_mode=_any(None)
        ),
        "handling_mode",
        id="external-handling_mode-none",
    ),
    pytest.param(
        lambda: ContinuationInput(header=_header(), reason=_any(None)),
        "reason",
        id="continuation-reason-none",
    ),
    pytest.param(
        lambda: ContinuationInput(
            header=_header(), reason="r", handling_mode=_any("queue")
        ),
        "handling_mode",
        id="continuation-handling_mode-str",
    ),
    pytest.param(
        lambda: ContinuationInput(header=_header(), reason="r", request_id=_any(9)),
        "request_id",
        id="continuation-request_id-int",
    ),
    pytest.param(
        lambda: OperationInput(header=_header(), operation_id=_any(None), event={}),
        "operation_id",
        id="operation-operation_id-none",
    ),
]


@pytest.mark.parametrize(("make", "field"), BAD_INPUTS)
def test_malformed_input_fails_validation_naming_the_field(
    make: Callable[[], object], field: str
) -> None:
    """Deliverable 6: wrong types, a missing header field, an unknown kind ->
    ``ValidationFailed`` naming the field; nothing recorded, no event."""
    _assert_validation_failed(_driver(), make(), field)


def test_validation_failed_is_catchable_as_the_base_error() -> None:
    """API.md: ``except RuntimeDriverError`` catches every variant; the
    synchronous and async entry points agree."""
    driver = _driver()
    before = driver.observe()
    with pytest.raises(RuntimeDriverError) as caught:
        driver.accept_now(_any(_prompt(5)))
    err = caught.value
    assert isinstance(err, RuntimeDriverError.ValidationFailed)
    assert err.reason.startswith("text:")
    assert str(err) == f"Input validation failed: {err.reason}"
    assert driver.observe() == before
    assert driver.drain_events() == []


def test_subclass_of_a_known_input_is_an_unknown_kind() -> None:
    """T-1: ``Input`` is a closed sum of six variants; a subclass is not one."""

    def attempt() -> str:
        class SneakyPrompt(PromptInput, frozen=True):
            pass

        driver = _driver()
        err = _assert_validation_failed(
            driver, SneakyPrompt(header=_header(), text="x"), "input"
        )
        assert "SneakyPrompt" in err.reason
        return err.reason

    attempt()
    # Even while such a subclass exists, the codec still decodes a prompt as
    # a PromptInput (a tagged variant is never replaced by its subclasses).
    prompt = PromptInput(header=_header(), text="x")
    assert type(Input.from_json(prompt.to_json())) is PromptInput


# ================================================================ idempotency keys


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(IdempotencyKey(""), id="empty"),
        pytest.param(IdempotencyKey("   "), id="blank"),
        pytest.param(IdempotencyKey("\t"), id="tab-only"),
        pytest.param(IdempotencyKey("a\x00b"), id="nul"),
        pytest.param(IdempotencyKey("line\nbreak"), id="newline"),
        pytest.param(IdempotencyKey("del\x7f"), id="del"),
        pytest.param(IdempotencyKey("k" * 513), id="513-chars"),
        pytest.param("plain-str", id="str-not-IdempotencyKey"),
        pytest.param(42, id="int"),
        pytest.param(SupersessionKey("k"), id="wrong-id-type"),
    ],
)
def test_malformed_idempotency_key_fails_validation(key: object) -> None:
    """Deliverable 6: an idempotency key must be an IdempotencyKey of
    non-blank text, at most 512 characters, with no control characters."""
    driver = _driver()
    _assert_validation_failed(driver, _keyed(key), "header.idempotency_key")
    # The key was not remembered: a well-formed input is accepted afterwards.
    _assert_accepted(driver, _keyed(IdempotencyKey("fresh")))


@pytest.mark.parametrize(
    "key",
    [
        IdempotencyKey("k" * 512),
        IdempotencyKey("order-42/ünïcödé 🦦"),
        IdempotencyKey(" padded "),
    ],
    ids=["512-chars", "unicode", "inner-spaces"],
)
def test_well_formed_idempotency_keys_are_accepted(key: IdempotencyKey) -> None:
    """A key at the length limit, or with non-ASCII text, is fine."""
    _assert_accepted(_driver(), _keyed(key))


def test_malformed_supersession_key_fails_validation() -> None:
    """Keys are checked alike: a blank supersession key is refused."""
    _assert_validation_failed(
        _driver(),
        _prompt(header=_header(supersession_key=SupersessionKey(" "))),
        "header.supersession_key",
    )


# ================================================================ size limit

# Each case: an input whose one big field is ``n`` bytes of encoded text. The
# limit covers the whole encoded input, so each is measured exactly: at its
# own size it is accepted, one byte less refuses it, naming the big field.
BIG = 600
SIZED: list[Any] = [
    pytest.param(lambda n: _prompt("x" * n), "text", id="ascii"),
    pytest.param(lambda n: _prompt("é" * (n // 2)), "text", id="2-byte-chars"),
    pytest.param(lambda n: _prompt("🦦" * (n // 4)), "text", id="4-byte-chars"),
    pytest.param(
        lambda n: _prompt(
            "a",
            blocks=[
                ContentBlock.Image(
                    media_type="image/png", data=ImageData.Inline(data="A" * n)
                )
            ],
        ),
        "blocks[0].data",
        id="inline-image",
    ),
    pytest.param(
        lambda n: _prompt("a", blocks=[ContentBlock.Text(text="b" * n)]),
        "blocks[0].text",
        id="block-text",
    ),
    pytest.param(
        lambda n: PeerInput(header=_header(), body="x" * n), "body", id="peer-body"
    ),
    pytest.param(
        lambda n: FlowStepInput(header=_header(), step_id="s", instructions="x" * n),
        "instructions",
        id="flow-step",
    ),
    pytest.param(
        lambda n: ExternalEventInput(
            header=_header(), event_type="e", payload={"k": "x" * n}
        ),
        "payload",
        id="external-payload",
    ),
    pytest.param(
        lambda n: ContinuationInput(header=_header(), reason="x" * n),
        "reason",
        id="continuation-reason",
    ),
    pytest.param(
        lambda n: OperationInput(header=_header(), operation_id="o", event="x" * n),
        "event",
        id="operation-event",
    ),
    pytest.param(
        lambda n: _prompt(
            "m", turn_metadata=RuntimeTurnMetadata(provider_params={"p": "x" * n})
        ),
        "turn_metadata.provider_params",
        id="provider-params",
    ),
    pytest.param(
        lambda n: (
            _prompt(header=_header(correlation_id=CorrelationId("c" * 500)))
            if n < 0
            else _prompt("m", turn_metadata=RuntimeTurnMetadata(model="x" * n))
        ),
        "turn_metadata.model",
        id="model",
    ),
]


@pytest.mark.parametrize(("make", "field"), SIZED)
def test_input_one_byte_over_the_limit_fails_validation(
    make: Callable[[int], Input], field: str
) -> None:
    """Deliverable 6 with issue 12 item 2: the configurable limit is on the
    whole encoded input (UTF-8 bytes, every field counted) ->
    ``ValidationFailed`` naming the field that holds most of it."""
    inp = make(BIG)
    size = len(codec.encode(inp))
    err = _assert_validation_failed(_driver(max_input_bytes=size - 1), inp, field)
    assert err.reason.endswith(f"({size} bytes encoded, limit {size - 1})")


@pytest.mark.parametrize(("make", "field"), SIZED)
def test_input_exactly_at_the_limit_is_accepted(
    make: Callable[[int], Input],
    field: str,  # noqa: ARG001 - shared parameters
) -> None:
    """The limit is inclusive: an input of exactly ``max_input_bytes``
    encoded bytes is accepted."""
    inp = make(BIG)
    _assert_accepted(_driver(max_input_bytes=len(codec.encode(inp))), inp)


def test_the_limit_counts_utf8_bytes() -> None:
    """Two-byte characters count twice: 300 of them weigh what 600 ASCII
    characters do, and one more is over."""
    limit = len(codec.encode(_prompt("x" * BIG)))
    _assert_accepted(_driver(max_input_bytes=limit), _prompt("é" * (BIG // 2)))
    _assert_validation_failed(
        _driver(max_input_bytes=limit), _prompt("é" * (BIG // 2 + 1)), "text"
    )


def test_a_blob_reference_is_counted_not_its_blob() -> None:
    """A blob image costs its reference, however big the blob."""
    inp = _prompt(
        "a",
        blocks=[
            ContentBlock.Image(
                media_type="image/png", data=ImageData.Blob(blob_id=BlobId("b" * 64))
            )
        ],
    )
    _assert_accepted(_driver(max_input_bytes=len(codec.encode(inp))), inp)


def test_default_limit_is_one_mebibyte_of_encoded_input() -> None:
    """Deliverable 6: the default limit is 1 MiB, now of the whole encoded
    input (README "Limits")."""
    room = MIB - len(codec.encode(_prompt("")))
    _assert_validation_failed(_driver(), _prompt("x" * (room + 1)), "text")
    _assert_validation_failed(_driver(), _prompt("é" * (room // 2 + 1)), "text")
    _assert_accepted(_driver(), _prompt("x" * room))


# ================================================================ payloads


def test_external_event_payload_that_cannot_be_encoded_fails_validation() -> None:
    """Deliverable 6: an ExternalEvent payload that is not JSON-serialisable
    -> ``ValidationFailed`` naming ``payload``."""
    driver = _driver()
    for payload in ({"a": object()}, [1, object()], object()):
        inp = ExternalEventInput(header=_header(), event_type="e", payload=payload)
        _assert_validation_failed(driver, inp, "payload")


def test_operation_event_that_cannot_be_encoded_fails_validation() -> None:
    """OperationInput's ``event`` must be JSON-serialisable too (API.md)."""
    inp = OperationInput(header=_header(), operation_id="o", event={"x": object()})
    _assert_validation_failed(_driver(), inp, "event")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"tags": {"a", "b"}}, id="set"),
        pytest.param({"raw": b"\x00\x01"}, id="bytes"),
        pytest.param({"score": float("nan")}, id="nan"),
    ],
)
def test_external_event_payload_that_is_not_a_json_value_fails_validation(
    payload: object,
) -> None:
    """Deliverable 6: a payload that is not a JSON value (Python's ``json``
    refuses sets and bytes; NaN is not JSON) must be refused rather than
    silently changed on its way to the store."""
    inp = ExternalEventInput(header=_header(), event_type="e", payload=payload)
    _assert_validation_failed(_driver(), inp, "payload")


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
