"""Admission validation of an input's shape (docs/behaviour.md T-10..T-14,
decision 11): a malformed input, key, payload or an input over the size
limit raises ``RuntimeDriverError.ValidationFailed`` whose ``reason`` names
the field, and nothing is recorded or emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meerkat_runtime import (
    BlobId,
    ContentBlock,
    ContinuationInput,
    CorrelationId,
    ExternalEventInput,
    FlowStepInput,
    HandlingMode,
    IdempotencyKey,
    ImageData,
    Input,
    InputId,
    InputOrigin,
    InputVisibility,
    OperationInput,
    PeerInput,
    PromptInput,
    RuntimeDriverError,
    RuntimeTurnMetadata,
    SupersessionKey,
    codec,
)
from tests.values.admission import (
    MIB,
    _any,
    _assert_accepted,
    _assert_validation_failed,
    _driver,
    _header,
    _keyed,
    _prompt,
)

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
