"""Helpers the value-type tests share: headers, the wire form of a value and a
round trip through ``encode``/``decode`` and ``to_json``/``from_json``.

Every value type round-trips (a union base class decodes into its variants)
using upstream's tag names and shapes (an image's data flattened into its
block); ``tests/values/test_wire.py`` and the golden documents of
``tests/fixtures/wire/`` pin the rest of upstream's shapes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from meerkat_runtime import (
    BlobId,
    ContentBlock,
    CorrelationId,
    DefaultPolicyTable,
    HandlingMode,
    IdempotencyKey,
    ImageData,
    InputDurability,
    InputHeader,
    InputId,
    InputLifecycleEvent,
    InputOrigin,
    InputVisibility,
    LogicalRuntimeId,
    PeerConvention,
    ResponseProgressPhase,
    ResponseTerminalStatus,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunId,
    RuntimeEventEnvelope,
    RuntimeTurnMetadata,
    SupersessionKey,
)
from meerkat_runtime.codec import Value, decode, encode
from meerkat_runtime.events import AnyInputLifecycleEvent
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


RECEIPT = RunBoundaryReceipt(
    run_id=RID,
    boundary=RunApplyBoundary.RUN_CHECKPOINT,
    contributing_input_ids=[IID, IID2],
    conversation_digest="sha256:abc",
    message_count=7,
    sequence=2,
)


def _envelope(event: Any) -> RuntimeEventEnvelope:
    return RuntimeEventEnvelope(
        id="0190b5a0-0000-7000-8000-0000000000ee",
        timestamp=T0,
        runtime_id=RT,
        event=event,
    )
