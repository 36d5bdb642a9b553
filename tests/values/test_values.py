"""Value types and the one JSON codec (API.md "Translation rules"; docs/behaviour.md
T-1..T-7, T-18, T-19, P-1, R-1, R-2, A-19, L-10, L-12, E-1..E-3).

Every value type round-trips through ``encode``/``decode`` (a union base class
decodes into its variants) and through ``to_json``/``from_json``, using
upstream's tag names and shapes (an image's data flattened into its block);
``tests/values/test_wire.py`` and the golden documents of ``tests/fixtures/wire/``
pin the rest of upstream's shapes.
"""

from __future__ import annotations

import json
import pickle
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from meerkat_runtime import (
    AcceptOutcome,
    BlobId,
    ContentBlock,
    ContinuationInput,
    CorrelationId,
    DefaultPolicyTable,
    DestroyReport,
    EphemeralRuntimeDriver,
    ExternalEventInput,
    FlowStepInput,
    HandlingMode,
    IdempotencyKey,
    ImageData,
    Input,
    InputAbandonReason,
    InputDurability,
    InputHeader,
    InputId,
    InputLifecycleEvent,
    InputLifecycleInput,
    InputLifecycleState,
    InputOrigin,
    InputState,
    InputStateHistoryEntry,
    InputTerminalOutcome,
    InputVisibility,
    LogicalRuntimeId,
    OperationInput,
    PeerConvention,
    PeerInput,
    PolicyDecision,
    PolicySnapshot,
    PromptInput,
    RecoveryReport,
    RecycleReport,
    RejectReason,
    ResetReport,
    ResponseProgressPhase,
    ResponseTerminalStatus,
    RetireReport,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunEvent,
    RunId,
    RunLifecycleEvent,
    RuntimeEvent,
    RuntimeEventEnvelope,
    RuntimeState,
    RuntimeTurnMetadata,
    SessionDelta,
    SessionId,
    SupersessionKey,
    codec,
)
from meerkat_runtime.codec import Value, decode, encode, to_builtins
from meerkat_runtime.events import AnyInputLifecycleEvent, AnyRunLifecycleEvent
from meerkat_runtime.ids import MAX_ID_LENGTH, id_problem, id_types
from meerkat_runtime.inputs import AnyContentBlock, AnyInputOrigin, AnyPeerConvention

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
IID = InputId("0190b5a0-0000-7000-8000-000000000001")
IID2 = InputId("0190b5a0-0000-7000-8000-000000000002")
RID = RunId("0190b5a0-0000-7000-8000-0000000000aa")
RT = LogicalRuntimeId("rt")


def _header(
    source: AnyInputOrigin | None = None,
    durability: InputDurability = InputDurability.DURABLE,
    **keys: Any,
) -> InputHeader:
    return InputHeader(
        id=IID,
        timestamp=T0,
        source=source if source is not None else InputOrigin.Operator(),
        durability=durability,
        **keys,
    )


FULL_HEADER = _header(
    source=InputOrigin.Peer(peer_id="peer-1", runtime_id="rt-peer"),
    durability=InputDurability.EPHEMERAL,
    visibility=InputVisibility(transcript_eligible=False, operator_eligible=False),
    idempotency_key=IdempotencyKey("idem-1"),
    supersession_key=SupersessionKey("sup-1"),
    correlation_id=CorrelationId("0190b5a0-0000-7000-8000-0000000000cc"),
)
INLINE_IMAGE = ContentBlock.Image(
    media_type="image/png", data=ImageData.Inline(data="iVBORw0KGgo=")
)
BLOB_IMAGE = ContentBlock.Image(
    media_type="image/jpeg", data=ImageData.Blob(blob_id=BlobId("sha256-abc"))
)
BLOCKS: list[AnyContentBlock] = [
    ContentBlock.Text(text="look"),
    INLINE_IMAGE,
    BLOB_IMAGE,
]
FULL_METADATA = RuntimeTurnMetadata(
    handling_mode=HandlingMode.STEER,
    keep_alive=True,
    model="model-x",
    provider="provider-y",
    provider_params={"temperature": 0.5, "stop": ["\n"]},
    render_metadata={"style": "brief"},
    flow_tool_overlay={"allow": ["search"]},
    skill_references=["skill-a"],
    additional_instructions=["be terse", "cite"],
)
CONVENTIONS: list[AnyPeerConvention] = [
    PeerConvention.Message(),
    PeerConvention.Request(request_id="req-1", intent="mob.peer_added"),
    *(
        PeerConvention.ResponseProgress(request_id="req-1", phase=phase)
        for phase in ResponseProgressPhase
    ),
    *(
        PeerConvention.ResponseTerminal(request_id="req-1", status=status)
        for status in ResponseTerminalStatus
    ),
]
ORIGINS: list[tuple[AnyInputOrigin, str]] = [
    (InputOrigin.Operator(), "operator"),
    (InputOrigin.Peer(peer_id="peer-1"), "peer"),
    (InputOrigin.Peer(peer_id="peer-1", runtime_id="rt-2"), "peer"),
    (InputOrigin.Flow(flow_id="flow-1", step_index=3), "flow"),
    (InputOrigin.System(), "system"),
    (InputOrigin.External(source_name="webhook"), "external"),
]


def _wire(value: object) -> dict[str, Any]:
    data = json.loads(encode(value))
    assert isinstance(data, dict)
    return data


def _round_trip(value: Value | ContentBlock, base: type[Any]) -> dict[str, Any]:
    """decode(encode(x)) == x via ``base`` and via both ``from_json`` entry
    points; returns the JSON object for wire assertions."""
    data = encode(value)
    back = decode(data, base)
    assert back == value
    assert type(back) is type(value)
    assert base.from_json(value.to_json()) == value
    assert type(value).from_json(value.to_json()) == value
    assert decode(data.decode("utf-8"), base) == value  # str input too
    return _wire(value)


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


# ================================================================ policy (P-1)

DECISIONS = [
    DefaultPolicyTable.resolve_by_kind(kind, idle)
    for kind in (
        "prompt",
        "peer_response_progress",
        "continuation",
        "operation",
        "unknown_kind",
    )
    for idle in (True, False)
]


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

RECEIPT = RunBoundaryReceipt(
    run_id=RID,
    boundary=RunApplyBoundary.RUN_CHECKPOINT,
    contributing_input_ids=[IID, IID2],
    conversation_digest="sha256:abc",
    message_count=7,
    sequence=2,
)


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

INPUT_EVENTS: list[tuple[AnyInputLifecycleEvent, str]] = [
    (InputLifecycleEvent.Accepted(input_id=IID), "input.accepted"),
    (
        InputLifecycleEvent.Deduplicated(input_id=IID2, existing_id=IID),
        "input.deduplicated",
    ),
    (
        InputLifecycleEvent.Superseded(input_id=IID, superseded_by=IID2),
        "input.superseded",
    ),
    (InputLifecycleEvent.Coalesced(input_id=IID, aggregate_id=IID2), "input.coalesced"),
    (InputLifecycleEvent.Queued(input_id=IID), "input.queued"),
    (InputLifecycleEvent.Staged(input_id=IID, run_id=RID), "input.staged"),
    (InputLifecycleEvent.Applied(input_id=IID, run_id=RID), "input.applied"),
    (InputLifecycleEvent.Consumed(input_id=IID, run_id=RID), "input.consumed"),
    (InputLifecycleEvent.Abandoned(input_id=IID, reason="reset"), "input.abandoned"),
]
RUN_LIFECYCLE_EVENTS: list[tuple[AnyRunLifecycleEvent, str]] = [
    (RunLifecycleEvent.Started(run_id=RID), "run.started"),
    (RunLifecycleEvent.Completed(run_id=RID), "run.completed"),
    (
        RunLifecycleEvent.Failed(run_id=RID, error="boom", recoverable=False),
        "run.failed",
    ),
    (RunLifecycleEvent.Cancelled(run_id=RID), "run.cancelled"),
]


def _envelope(event: Any) -> RuntimeEventEnvelope:
    return RuntimeEventEnvelope(
        id="0190b5a0-0000-7000-8000-0000000000ee",
        timestamp=T0,
        runtime_id=RT,
        event=event,
    )


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


# ================================================================ ids (T-18)

ID_TYPES = [
    InputId,
    RunId,
    LogicalRuntimeId,
    IdempotencyKey,
    SupersessionKey,
    CorrelationId,
    BlobId,
    SessionId,
]


def test_every_id_type_is_listed_for_the_codec() -> None:
    """The codec decodes exactly these without a subclass check."""
    assert set(id_types()) == set(ID_TYPES)


@pytest.mark.parametrize("id_type", ID_TYPES, ids=lambda t: t.__name__)
def test_id_value_semantics(id_type: type[InputId]) -> None:
    """T-18: ids wrap text; str() is the text; equal and hashable by value;
    serialised as a bare string; immutable; only text is accepted."""
    a = id_type("abc")
    assert str(a) == "abc"
    assert a == id_type("abc")
    assert a != id_type("abd")
    assert hash(a) == hash(id_type("abc"))
    assert {a: 1}[id_type("abc")] == 1
    assert len({a, id_type("abc"), id_type("x")}) == 2
    assert encode(a) == b'"abc"'
    decoded = decode(b'"abc"', id_type)  # the decoder's own constructor
    assert decoded == a
    assert type(decoded) is id_type
    assert hash(decoded) == hash(a)
    assert {a: 1}[decoded] == 1
    with pytest.raises(AttributeError):
        setattr(decoded, "_text", "other")  # noqa: B010
    with pytest.raises(AttributeError):
        setattr(a, "_text", "other")  # noqa: B010 - mypy would reject the assignment
    with pytest.raises(TypeError):
        id_type(5)  # type: ignore[arg-type]
    with pytest.raises(msgspec.ValidationError):
        decode(b"5", id_type)


@pytest.mark.parametrize("id_type", ID_TYPES, ids=lambda t: t.__name__)
def test_new_ids_are_unique_time_ordered_uuid7(id_type: type[InputId]) -> None:
    """T-18: ``X.new()`` mints a fresh UUIDv7; later ids sort after earlier ones."""
    ids = [id_type.new() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert sorted(map(str, ids)) == [str(i) for i in ids]
    assert {uuid.UUID(str(i)).version for i in ids} == {7}


def test_ids_of_different_kinds_never_compare_equal() -> None:
    """T-18 / API.md: newtype ids cannot be mixed up."""
    assert InputId("x") != RunId("x")
    assert RunId("x") != LogicalRuntimeId("x")
    assert InputId("x") != "x"
    assert len({InputId("x"), RunId("x"), SessionId("x")}) == 3


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "must not be blank"),
        (" \u3000 ", "must not be blank"),
        ("a\tb", "contains control characters"),
        ("x" * (MAX_ID_LENGTH + 1), f"longer than {MAX_ID_LENGTH} characters"),
        ("x" * MAX_ID_LENGTH, None),
        ("order-42/ünïcödé 🦦", None),
        ("\x85 C1 controls are text", None),
    ],
)
def test_id_problem(text: str, problem: str | None) -> None:
    """Issue 12 item 2: the one rule for every id a caller hands over."""
    assert id_problem(text) == problem


def test_only_admission_refuses_a_malformed_id_the_store_reads_it_back() -> None:
    """A record stored before the id rules existed must still load: the
    rules live in the admission decoder, not in the codec's own."""
    inp = PromptInput(
        header=msgspec.structs.replace(
            InputHeader.new(), id=InputId("x" * (MAX_ID_LENGTH + 1))
        ),
        text="t",
    )
    data = codec.encode(inp)
    assert codec.decode(data, PromptInput) == inp
    with pytest.raises(
        msgspec.ValidationError, match=r"longer than 512 .* `\$\.header\.id`"
    ):
        codec.admission_decoder(PromptInput).decode(data)


# ================================================================ immutability and construction

FROZEN = [
    (PromptInput(header=_header(), text="x"), "text"),
    (INLINE_IMAGE, "data"),
    (_header(), "durability"),
    (InputVisibility(), "operator_eligible"),
    (InputOrigin.Flow(flow_id="f", step_index=1), "step_index"),
    (INLINE_IMAGE, "media_type"),
    (CONVENTIONS[1], "intent"),
    (FULL_METADATA, "model"),
    (DECISIONS[0], "apply_mode"),
    (PolicySnapshot(version=1, decision=DECISIONS[0]), "version"),
    (RECEIPT, "sequence"),
    (RunEvent.RunFailed(run_id=RID, error="e", recoverable=True), "recoverable"),
    (AcceptOutcome.Deduplicated(input_id=IID, existing_id=IID2), "existing_id"),
    (RejectReason.DurabilityViolation(detail="d"), "detail"),
    (RecoveryReport(), "inputs_recovered"),
    (InputLifecycleEvent.Accepted(input_id=IID), "input_id"),
    (_envelope(RuntimeEvent.InputLifecycle(data=INPUT_EVENTS[0][0])), "runtime_id"),
    (InputTerminalOutcome.Coalesced(aggregate_id=IID), "aggregate_id"),
    (InputAbandonReason.MaxAttemptsExhausted(attempts=3), "attempts"),
]


@pytest.mark.parametrize(
    ("value", "field"), FROZEN, ids=[f"{type(v).__name__}.{f}" for v, f in FROZEN]
)
def test_value_types_are_frozen(value: object, field: str) -> None:
    """API.md: value types are immutable; build a changed copy instead."""
    with pytest.raises(AttributeError):
        setattr(value, field, getattr(value, field))


POSITIONAL: list[tuple[type, tuple[object, ...]]] = [
    (PromptInput, (_header(), "x")),
    (InputHeader, (IID, T0, InputOrigin.Operator(), InputDurability.DURABLE)),
    (InputVisibility, (False, False)),
    (InputOrigin.External, ("webhook",)),
    (ContentBlock.Text, ("t",)),
    (ContentBlock.Image, ("image/png", ImageData.Inline(data="AA=="))),
    (RunBoundaryReceipt, (RID, RunApplyBoundary.IMMEDIATE, [])),
    (RunEvent.RunStarted, (RID,)),
    (AcceptOutcome.Deduplicated, (IID, IID2)),
    (RejectReason.DurabilityViolation, ("d",)),
    (RecoveryReport, (1, 2, 3)),
    (InputTerminalOutcome.Superseded, (IID,)),
]


@pytest.mark.parametrize(
    ("cls", "args"), POSITIONAL, ids=[c.__name__ for c, _ in POSITIONAL]
)
def test_value_types_are_keyword_constructed(
    cls: type, args: tuple[object, ...]
) -> None:
    """API.md / codec.Value: value types are built with keyword fields only."""
    with pytest.raises(TypeError):
        cls(*args)


def test_policy_decision_is_keyword_constructed() -> None:
    """API.md: ``PolicyDecision(apply_mode=..., ...)`` takes keywords only."""
    d = DECISIONS[0]
    untyped: Any = PolicyDecision
    with pytest.raises(TypeError):
        untyped(d.apply_mode, d.wake_mode, d.queue_mode, d.consume_point)


# ================================================================ decode errors

_PROMPT_JSON = encode(PromptInput(header=_header(), text="hi")).decode("utf-8")


@pytest.mark.parametrize(
    ("data", "target", "error"),
    [
        pytest.param(b'{"input_type":', Input, msgspec.DecodeError, id="truncated"),
        pytest.param(b"not json", Input, msgspec.DecodeError, id="garbage"),
        pytest.param(b"", InputState, msgspec.DecodeError, id="empty-state"),
        pytest.param(
            _PROMPT_JSON.replace('"prompt"', '"bogus"'),
            Input,
            msgspec.ValidationError,
            id="unknown-input-type",
        ),
        pytest.param(
            _PROMPT_JSON.replace('"input_type":"prompt",', ""),
            Input,
            msgspec.ValidationError,
            id="missing-tag",
        ),
        pytest.param(
            _PROMPT_JSON, PeerInput, msgspec.ValidationError, id="prompt-as-peer"
        ),
        pytest.param(
            _PROMPT_JSON.replace('"text":"hi"', '"text":5'),
            Input,
            msgspec.ValidationError,
            id="text-not-str",
        ),
        pytest.param(
            _PROMPT_JSON.replace(f'"id":"{IID}"', '"id":5'),
            Input,
            msgspec.ValidationError,
            id="id-not-str",
        ),
        pytest.param(
            _PROMPT_JSON.replace('"durability":"durable"', '"durability":"forever"'),
            Input,
            msgspec.ValidationError,
            id="unknown-durability",
        ),
        pytest.param(
            _PROMPT_JSON.replace('{"type":"operator"}', '{"type":"alien"}'),
            Input,
            msgspec.ValidationError,
            id="unknown-origin",
        ),
        pytest.param(
            _PROMPT_JSON.replace(',"text":"hi"', ""),
            Input,
            msgspec.ValidationError,
            id="missing-text",
        ),
        pytest.param(
            b'{"outcome_type":"maybe"}',
            AcceptOutcome,
            msgspec.ValidationError,
            id="unknown-outcome-type",
        ),
        pytest.param(
            b'{"reject_type":"not_ready","state":"sleepy"}',
            RejectReason,
            msgspec.ValidationError,
            id="unknown-state",
        ),
        pytest.param(
            b'{"event_type":"run_paused","run_id":"r"}',
            RunEvent,
            msgspec.ValidationError,
            id="unknown-event-type",
        ),
        pytest.param(
            b'{"convention_type":"gossip"}',
            PeerConvention,
            msgspec.ValidationError,
            id="unknown-convention",
        ),
        pytest.param(
            b'{"reason_type":"bored"}',
            InputAbandonReason,
            msgspec.ValidationError,
            id="unknown-abandon-reason",
        ),
        pytest.param(
            b'{"input_id":"x","current_state":"lost","created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}',
            InputState,
            msgspec.ValidationError,
            id="unknown-lifecycle-state",
        ),
        pytest.param(
            b'{"id":"e","timestamp":"2024-01-01T00:00:00Z","runtime_id":"rt","event":{"category":"topology"}}',
            RuntimeEventEnvelope,
            msgspec.ValidationError,
            id="unknown-event-category",
        ),
    ],
)
def test_malformed_or_mistagged_json_raises(
    data: bytes | str, target: type, error: type[Exception]
) -> None:
    """codec.decode: malformed JSON raises ``msgspec.DecodeError``; valid JSON
    of the wrong shape or with an unknown tag raises ``msgspec.ValidationError``."""
    with pytest.raises(error):
        decode(data, target)
    if target is InputState:
        with pytest.raises(error):
            InputState.from_json(data)


@pytest.mark.parametrize("snapshot", ["text", None, bytearray(b"x"), 7])
def test_session_delta_refuses_anything_but_bytes(snapshot: object) -> None:
    """S-4: the snapshot is opaque bytes; anything else is refused where it is
    built, naming the field and the type, before any store sees it."""
    with pytest.raises(TypeError, match="session_snapshot must be bytes, not "):
        SessionDelta(session_snapshot=snapshot)  # type: ignore[arg-type]
    assert SessionDelta(session_snapshot=b"x").session_snapshot == b"x"
