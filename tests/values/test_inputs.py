"""Inputs and what they carry round-trip through the one JSON codec: the nine
input kinds (T-1), headers (T-6), peer conventions (T-2), content blocks (T-19),
kind ids and handling-mode hints.
"""

from __future__ import annotations

import json
import pickle
import re
from typing import Any

import msgspec
import pytest

from meerkat_runtime import (
    ContentBlock,
    ContinuationInput,
    ExternalEventInput,
    FlowStepInput,
    HandlingMode,
    ImageData,
    Input,
    InputDurability,
    InputHeader,
    InputOrigin,
    InputVisibility,
    OperationInput,
    PeerConvention,
    PeerInput,
    PromptInput,
    RuntimeTurnMetadata,
)
from meerkat_runtime.codec import decode, encode, to_builtins
from meerkat_runtime.inputs import AnyInputOrigin, AnyPeerConvention
from tests.values.codec import (
    BLOB_IMAGE,
    BLOCKS,
    CONVENTIONS,
    FULL_HEADER,
    FULL_METADATA,
    IID,
    INLINE_IMAGE,
    ORIGINS,
    _header,
    _round_trip,
    _wire,
)

# ================================================================ inputs (T-1)

INPUTS = [
    pytest.param(PromptInput(header=_header(), text="hi"), "prompt", id="prompt-min"),
    pytest.param(
        PromptInput(
            header=FULL_HEADER, text="hi", blocks=BLOCKS, turn_metadata=FULL_METADATA
        ),
        "prompt",
        id="prompt-full",
    ),
    pytest.param(PeerInput(header=_header(), body="yo"), "peer", id="peer-min"),
    *(
        pytest.param(
            PeerInput(
                header=FULL_HEADER,
                body="yo",
                convention=convention,
                blocks=BLOCKS,
                handling_mode=HandlingMode.STEER,
            ),
            "peer",
            id=f"peer-{encode(convention).decode()}",
        )
        for convention in CONVENTIONS
    ),
    pytest.param(
        FlowStepInput(header=_header(), step_id="s1", instructions="do it"),
        "flow_step",
        id="flow_step-min",
    ),
    pytest.param(
        FlowStepInput(
            header=FULL_HEADER,
            step_id="s1",
            instructions="do it",
            blocks=BLOCKS,
            turn_metadata=FULL_METADATA,
        ),
        "flow_step",
        id="flow_step-full",
    ),
    pytest.param(
        ExternalEventInput(header=_header(), event_type="webhook", payload=None),
        "external_event",
        id="external_event-min",
    ),
    pytest.param(
        ExternalEventInput(
            header=FULL_HEADER,
            event_type="webhook",
            payload={"url": "https://example.com", "n": [1, 2.5, True, None]},
            blocks=BLOCKS,
            handling_mode=HandlingMode.STEER,
            render_metadata={"title": "hook"},
        ),
        "external_event",
        id="external_event-full",
    ),
    pytest.param(
        ContinuationInput(header=_header(), reason="resume"),
        "continuation",
        id="continuation-min",
    ),
    pytest.param(
        ContinuationInput(
            header=FULL_HEADER,
            reason="resume",
            handling_mode=HandlingMode.STEER,
            request_id="req-9",
        ),
        "continuation",
        id="continuation-full",
    ),
    pytest.param(
        OperationInput(
            header=_header(), operation_id="op-1", event={"kind": "started", "n": 1}
        ),
        "operation",
        id="operation",
    ),
    *(
        pytest.param(
            PromptInput(header=_header(source=origin), text="hi"),
            "prompt",
            id=f"prompt-origin-{tag}-{i}",
        )
        for i, (origin, tag) in enumerate(ORIGINS)
    ),
]


@pytest.mark.parametrize(("inp", "tag"), INPUTS)
def test_input_round_trips_with_its_input_type_tag(inp: Input, tag: str) -> None:
    """T-1: internally tagged by ``input_type``; ids are bare strings (T-18)."""
    data = _round_trip(inp, Input)
    assert data["input_type"] == tag
    assert data["header"]["id"] == str(inp.id())
    assert decode(encode(inp), Input).kind_id() == inp.kind_id()


@pytest.mark.parametrize(
    ("inp", "absent"),
    [
        (PromptInput(header=_header(), text="hi"), {"blocks", "turn_metadata"}),
        (
            PeerInput(header=_header(), body="yo"),
            {"convention", "blocks", "handling_mode"},
        ),
        (
            FlowStepInput(header=_header(), step_id="s", instructions="i"),
            {"blocks", "turn_metadata"},
        ),
        (
            ExternalEventInput(header=_header(), event_type="e", payload={}),
            {"blocks", "render_metadata"},
        ),
        (ContinuationInput(header=_header(), reason="r"), {"request_id"}),
    ],
)
def test_absent_optional_input_fields_are_omitted(inp: Input, absent: set[str]) -> None:
    """T-1: optional fields are omitted from JSON when absent."""
    assert absent.isdisjoint(_wire(inp))


def test_peer_without_handling_mode_key_decodes_to_none() -> None:
    """T-1: a Peer without the ``handling_mode`` key has ``handling_mode = None``."""
    raw = {
        "input_type": "peer",
        "header": _wire(_header()),
        "body": "yo",
        "convention": {"convention_type": "message"},
    }
    peer = decode(json.dumps(raw), Input)
    assert isinstance(peer, PeerInput)
    assert peer.handling_mode is None
    assert peer.convention == PeerConvention.Message()


def test_external_event_and_continuation_default_to_queue() -> None:
    """T-1: ExternalEvent and Continuation ``handling_mode`` default to queue."""
    event = ExternalEventInput(header=_header(), event_type="e", payload=1)
    cont = ContinuationInput(header=_header(), reason="r")
    assert event.handling_mode is HandlingMode.QUEUE
    assert cont.handling_mode is HandlingMode.QUEUE
    assert decode(encode(event), Input) == event
    assert decode(encode(cont), Input) == cont


# ---------------------------------------------------------------- header (T-6)


def test_header_defaults_and_omitted_keys() -> None:
    """T-6: visibility defaults to both true; the optional keys default to None
    and are omitted from JSON; the timestamp is RFC 3339 UTC."""
    header = _header()
    assert header.visibility == InputVisibility()
    assert header.visibility.transcript_eligible is True
    assert header.visibility.operator_eligible is True
    assert header.idempotency_key is None
    assert header.supersession_key is None
    assert header.correlation_id is None
    data = _round_trip(header, InputHeader)
    assert {"idempotency_key", "supersession_key", "correlation_id"}.isdisjoint(data)
    assert data["id"] == str(IID)
    assert data["durability"] == "durable"
    assert data["source"] == {"type": "operator"}
    assert data["timestamp"] == "2024-05-06T07:08:09.123456Z"


def test_header_with_every_field_round_trips_with_bare_keys() -> None:
    """T-6, T-18: keys and ids are bare strings on the wire."""
    data = _round_trip(FULL_HEADER, InputHeader)
    assert data["idempotency_key"] == "idem-1"
    assert data["supersession_key"] == "sup-1"
    assert data["correlation_id"] == "0190b5a0-0000-7000-8000-0000000000cc"
    assert data["visibility"] == {
        "transcript_eligible": False,
        "operator_eligible": False,
    }
    assert data["durability"] == "ephemeral"


def test_input_header_new_mints_an_operator_durable_header() -> None:
    """T-8: ``PromptInput.new`` builds a durable operator prompt, default visibility."""
    prompt = PromptInput.new("hello")
    assert prompt.header.source == InputOrigin.Operator()
    assert prompt.header.durability is InputDurability.DURABLE
    assert prompt.header.visibility == InputVisibility()
    assert prompt.text == "hello"
    assert PromptInput.new("x").id() != prompt.id()


@pytest.mark.parametrize("durability", list(InputDurability))
def test_durability_values(durability: InputDurability) -> None:
    """T-6: durable | ephemeral | derived, as snake_case strings."""
    assert encode(durability) == f'"{durability.name.lower()}"'.encode()
    assert decode(encode(durability), InputDurability) is durability


@pytest.mark.parametrize(("origin", "tag"), ORIGINS)
def test_origin_round_trips_tagged_by_type(origin: AnyInputOrigin, tag: str) -> None:
    """T-7: InputOrigin is tagged by ``type``; absent runtime_id is omitted."""
    data = _round_trip(origin, InputOrigin)
    assert data["type"] == tag
    if isinstance(origin, InputOrigin.Peer) and origin.runtime_id is None:
        assert "runtime_id" not in data


# ---------------------------------------------------------------- peers (T-2)


@pytest.mark.parametrize(
    "convention", CONVENTIONS, ids=lambda c: encode(c).decode("utf-8")
)
def test_convention_round_trips_tagged_by_convention_type(
    convention: AnyPeerConvention,
) -> None:
    """T-2: tagged by ``convention_type``; phases and statuses are snake_case."""
    data = _round_trip(convention, PeerConvention)
    expected = {
        PeerConvention.Message: "message",
        PeerConvention.Request: "request",
        PeerConvention.ResponseProgress: "response_progress",
        PeerConvention.ResponseTerminal: "response_terminal",
    }[type(convention)]
    assert data["convention_type"] == expected
    if isinstance(convention, PeerConvention.ResponseProgress):
        assert data["phase"] in {"accepted", "in_progress", "partial_result"}
    if isinstance(convention, PeerConvention.ResponseTerminal):
        assert data["status"] in {"completed", "failed", "cancelled"}


# ---------------------------------------------------------------- content (T-19)


@pytest.mark.parametrize(
    ("block", "wire"),
    [
        (ContentBlock.Text(text="hi"), {"type": "text", "text": "hi"}),
        (
            INLINE_IMAGE,
            {
                "type": "image",
                "media_type": "image/png",
                "source": "inline",
                "data": "iVBORw0KGgo=",
            },
        ),
        (
            BLOB_IMAGE,
            {
                "type": "image",
                "media_type": "image/jpeg",
                "source": "blob",
                "blob_id": "sha256-abc",
            },
        ),
    ],
    ids=["text", "image-inline", "image-blob"],
)
def test_content_block_round_trips(block: Any, wire: dict[str, Any]) -> None:
    """T-19: blocks tagged by ``type``; an image's data, tagged by
    ``source``, is flattened into the block."""
    assert _round_trip(block, ContentBlock) == wire
    if isinstance(block, ContentBlock.Image):
        flattened = {k: v for k, v in wire.items() if k not in ("type", "media_type")}
        assert _round_trip(block.data, ImageData) == flattened


def test_an_image_block_is_a_value() -> None:
    """API.md: equal by value, hashable, printable as it is built, and it
    survives a pickle (the image block is not a struct: T-19)."""
    same = ContentBlock.Image(
        media_type="image/png", data=ImageData.Inline(data="iVBORw0KGgo=")
    )
    assert same == INLINE_IMAGE
    assert hash(same) == hash(INLINE_IMAGE)
    assert same != BLOB_IMAGE
    assert same != ContentBlock.Text(text="iVBORw0KGgo=")
    assert repr(same) == (
        "ImageBlock(media_type='image/png', data=InlineImage(data='iVBORw0KGgo='))"
    )
    assert pickle.loads(pickle.dumps(BLOB_IMAGE)) == BLOB_IMAGE


@pytest.mark.parametrize("image", [INLINE_IMAGE, BLOB_IMAGE], ids=["inline", "blob"])
def test_an_image_with_nested_data_is_still_read(image: Any) -> None:
    """PD-23: an image block as schema 2 wrote it (the data nested under
    ``data``) decodes to the same block, and is written back flat."""
    nested = {
        "type": "image",
        "media_type": image.media_type,
        "data": to_builtins(image.data),
    }
    for target in (ContentBlock, ContentBlock.Image):
        assert decode(json.dumps(nested), target) == image
    assert "source" in _wire(image)


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        ({"type": "image", "media_type": "m", "data": "AA=="}, "`source`"),
        (
            {"type": "image", "media_type": 3, "source": "inline", "data": "AA=="},
            "$.media_type",
        ),
        ({"type": "image", "media_type": "m", "source": "inline"}, "`data`"),
        ({"type": "image", "media_type": "m", "source": "url", "data": "x"}, "'url'"),
        ({"type": "video", "media_type": "m"}, "'video'"),
        ({"type": "text", "text": "t"}, "an image block"),
    ],
    ids=["no-source", "media-type-int", "no-data", "unknown-source", "video", "text"],
)
def test_a_malformed_image_block_is_refused_naming_what_is_wrong(
    wire: dict[str, Any], problem: str
) -> None:
    """T-19: a flat image without its source, of an unknown source or with a
    field of the wrong type does not decode; the error says which."""
    with pytest.raises(msgspec.ValidationError, match=re.escape(problem)):
        decode(json.dumps(wire), ContentBlock.Image)


@pytest.mark.parametrize(
    "metadata",
    [RuntimeTurnMetadata(), FULL_METADATA],
    ids=["empty", "full"],
)
def test_turn_metadata_round_trips(metadata: RuntimeTurnMetadata) -> None:
    """T-1: RuntimeTurnMetadata; unset fields are omitted."""
    data = _round_trip(metadata, RuntimeTurnMetadata)
    if metadata == RuntimeTurnMetadata():
        assert data == {}
    else:
        assert data["handling_mode"] == "steer"


# ---------------------------------------------------------------- kinds and hints


@pytest.mark.parametrize(
    ("inp", "kind"),
    [
        (PromptInput(header=_header(), text="x"), "prompt"),
        (PeerInput(header=_header(), body="x"), "peer_message"),
        (
            PeerInput(header=_header(), body="x", convention=PeerConvention.Message()),
            "peer_message",
        ),
        (
            PeerInput(header=_header(), body="x", convention=CONVENTIONS[1]),
            "peer_request",
        ),
        (
            PeerInput(header=_header(), body="x", convention=CONVENTIONS[2]),
            "peer_response_progress",
        ),
        (
            PeerInput(header=_header(), body="x", convention=CONVENTIONS[-1]),
            "peer_response_terminal",
        ),
        (FlowStepInput(header=_header(), step_id="s", instructions="i"), "flow_step"),
        (
            ExternalEventInput(header=_header(), event_type="e", payload=None),
            "external_event",
        ),
        (ContinuationInput(header=_header(), reason="r"), "continuation"),
        (OperationInput(header=_header(), operation_id="o", event=None), "operation"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_kind_id(inp: Input, kind: str) -> None:
    """T-3: nine kind ids for six variants; a peer without a convention is a
    ``peer_message``."""
    assert inp.kind_id() == kind


def test_nine_kind_ids() -> None:
    """T-3: exactly nine distinct kind ids across all variants and conventions."""
    inputs: list[Input] = [
        PromptInput(header=_header(), text="x"),
        PeerInput(header=_header(), body="x"),
        *(PeerInput(header=_header(), body="x", convention=c) for c in CONVENTIONS),
        FlowStepInput(header=_header(), step_id="s", instructions="i"),
        ExternalEventInput(header=_header(), event_type="e", payload=None),
        ContinuationInput(header=_header(), reason="r"),
        OperationInput(header=_header(), operation_id="o", event=None),
    ]
    assert len({inp.kind_id() for inp in inputs}) == 9


Q, S = HandlingMode.QUEUE, HandlingMode.STEER


@pytest.mark.parametrize(
    ("inp", "hint"),
    [
        (PromptInput(header=_header(), text="x"), None),
        (
            PromptInput(
                header=_header(), text="x", turn_metadata=RuntimeTurnMetadata()
            ),
            None,
        ),
        (
            PromptInput(
                header=_header(),
                text="x",
                turn_metadata=RuntimeTurnMetadata(handling_mode=S),
            ),
            S,
        ),
        (FlowStepInput(header=_header(), step_id="s", instructions="i"), None),
        (
            FlowStepInput(
                header=_header(),
                step_id="s",
                instructions="i",
                turn_metadata=RuntimeTurnMetadata(handling_mode=Q),
            ),
            Q,
        ),
        (ExternalEventInput(header=_header(), event_type="e", payload=None), Q),
        (
            ExternalEventInput(
                header=_header(), event_type="e", payload=None, handling_mode=S
            ),
            S,
        ),
        (ContinuationInput(header=_header(), reason="r"), Q),
        (ContinuationInput(header=_header(), reason="r", handling_mode=S), S),
        (PeerInput(header=_header(), body="x"), None),
        (PeerInput(header=_header(), body="x", handling_mode=Q), Q),
        (
            PeerInput(
                header=_header(), body="x", convention=CONVENTIONS[1], handling_mode=S
            ),
            S,
        ),
        (OperationInput(header=_header(), operation_id="o", event=None), None),
    ],
)
def test_handling_mode_hint(inp: Input, hint: HandlingMode | None) -> None:
    """T-4: Prompt/FlowStep read turn metadata; ExternalEvent and Continuation
    always have one; Peer its optional field; Operation never."""
    assert inp.handling_mode_hint() is hint
