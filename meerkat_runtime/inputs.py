"""The six inputs and their parts (docs/behaviour.md section 1).

Theory of operation: every input is an immutable value with a header (id,
origin, durability, visibility, optional keys) and a kind-specific payload.
Three derived facts drive the runtime: ``kind_id()`` (nine ids for six
variants, T-3) selects the policy row and the supersession scope;
``handling_mode_hint()`` (T-4) may override the row; ``header.durability``
decides whether the input must be durable before it is acknowledged. JSON is
internally tagged by ``input_type``; absent optional fields are omitted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, Union, cast

import msgspec

from meerkat_runtime import codec
from meerkat_runtime.codec import Value
from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.ids import (
    BlobId,
    CorrelationId,
    IdempotencyKey,
    InputId,
    SupersessionKey,
)


class _Enum(enum.Enum):
    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class InputDurability(_Enum):
    """Whether an input must survive a restart (T-10)."""

    DURABLE = "durable"
    EPHEMERAL = "ephemeral"
    DERIVED = "derived"


class InputVisibility(Value, frozen=True, gc=False, kw_only=True, omit_defaults=False):
    transcript_eligible: bool = True
    operator_eligible: bool = True


# ---------------------------------------------------------------- origin (T-7)


class InputOrigin(Value, frozen=True, gc=False, kw_only=True, tag_field="type"):
    """Who submitted an input."""

    Operator: ClassVar[type[Operator]]
    Peer: ClassVar[type[PeerOrigin]]
    Flow: ClassVar[type[Flow]]
    System: ClassVar[type[System]]
    External: ClassVar[type[External]]


class Operator(InputOrigin, frozen=True, gc=False, kw_only=True, tag="operator"):
    pass


class PeerOrigin(InputOrigin, frozen=True, gc=False, kw_only=True, tag="peer"):
    peer_id: str
    runtime_id: str | None = None


class Flow(InputOrigin, frozen=True, gc=False, kw_only=True, tag="flow"):
    flow_id: str
    step_index: int


class System(InputOrigin, frozen=True, gc=False, kw_only=True, tag="system"):
    pass


class External(InputOrigin, frozen=True, gc=False, kw_only=True, tag="external"):
    source_name: str


InputOrigin.Operator = Operator
InputOrigin.Peer = PeerOrigin
InputOrigin.Flow = Flow
InputOrigin.System = System
InputOrigin.External = External
AnyInputOrigin = Operator | PeerOrigin | Flow | System | External


class InputHeader(Value, frozen=True, gc=False, kw_only=True):
    """What every input carries (T-6)."""

    id: InputId
    timestamp: datetime
    source: AnyInputOrigin
    durability: InputDurability
    # A factory, not a shared default: msgspec then writes it on every record,
    # as upstream requires (it has no serde default for visibility).
    visibility: InputVisibility = msgspec.field(default_factory=InputVisibility)
    idempotency_key: IdempotencyKey | None = None
    supersession_key: SupersessionKey | None = None
    correlation_id: CorrelationId | None = None

    @classmethod
    def new(
        cls,
        source: AnyInputOrigin | None = None,
        durability: InputDurability = InputDurability.DURABLE,
        **keys: Any,
    ) -> InputHeader:
        """A header with a fresh id and the current time."""
        return cls(
            id=InputId.new(),
            timestamp=datetime.now(UTC),
            source=source if source is not None else Operator(),
            durability=durability,
            **keys,
        )


# ---------------------------------------------------------------- content (T-19)

# A block is tagged by ``type``; an image's data, tagged by ``source``, is
# flattened into the block on the wire, as upstream writes it: ``{"type":
# "image", "media_type": "image/png", "source": "inline", "data": "..."}`` or
# ``{..., "source": "blob", "blob_id": "..."}``. In Python an image keeps its
# data as one value, ``ImageBlock(media_type=..., data=ImageData.Inline(...))``,
# so code that moves images to a blob store swaps one field.
#
# msgspec cannot flatten a union into a struct, so ``ImageBlock`` is a small
# frozen value class that the codec writes and reads through its hooks, and a
# field holding blocks is annotated ``list[AnyContentBlock]`` (the base): the
# codec hands each block to ``_block_from_wire``, which decodes its parts
# through structs with the decoder's own hook (so admission's id rules reach a
# blob id, and an error names the field). A text block stays a struct. An
# image written by an earlier version, its data nested under ``data``, is
# still read (PD-23) and written back flat.


class ImageData(Value, frozen=True, gc=False, kw_only=True, tag_field="source"):
    """Image bytes inline (base64 text) or moved to a blob store."""

    Inline: ClassVar[type[InlineImage]]
    Blob: ClassVar[type[BlobImage]]


class InlineImage(ImageData, frozen=True, gc=False, kw_only=True, tag="inline"):
    data: str  # base64


class BlobImage(ImageData, frozen=True, gc=False, kw_only=True, tag="blob"):
    blob_id: BlobId


ImageData.Inline = InlineImage
ImageData.Blob = BlobImage
AnyImageData = InlineImage | BlobImage


class ContentBlock:
    """Base of the blocks: ``ContentBlock.Text`` and ``ContentBlock.Image``."""

    __slots__ = ()

    Text: ClassVar[type[TextBlock]]
    Image: ClassVar[type[ImageBlock]]

    def to_json(self) -> bytes:
        return codec.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        return codec.decode(data, cls)


class TextBlock(
    Value,
    ContentBlock,
    frozen=True,
    gc=False,
    kw_only=True,
    tag="text",
    tag_field="type",
):
    text: str


class ImageBlock(ContentBlock):
    """An image: its media type and its data, inline or in a blob store."""

    __slots__ = ("data", "media_type")

    FIELDS: ClassVar[tuple[str, ...]] = ("media_type", "data")
    media_type: str
    data: AnyImageData

    def __init__(self, *, media_type: str, data: AnyImageData) -> None:
        object.__setattr__(self, "media_type", media_type)
        object.__setattr__(self, "data", data)

    def __eq__(self, other: object) -> bool:
        if type(other) is not ImageBlock:
            return NotImplemented
        return (self.media_type, self.data) == (other.media_type, other.data)

    def __hash__(self) -> int:
        return hash((ImageBlock, self.media_type, self.data))

    def __repr__(self) -> str:
        return f"ImageBlock(media_type={self.media_type!r}, data={self.data!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ImageBlock is immutable; build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ImageBlock is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_image, (self.media_type, self.data))


def _rebuild_image(media_type: str, data: AnyImageData) -> ImageBlock:
    return ImageBlock(media_type=media_type, data=data)


ContentBlock.Text = TextBlock
ContentBlock.Image = ImageBlock
AnyContentBlock = ContentBlock
"""Annotation for a field holding blocks (``list[AnyContentBlock]``)."""


# ---------------------------------------------------------------- the wire form


def _image_to_wire(block: ImageBlock) -> dict[str, object]:
    data: object = block.data
    head: dict[str, object] = {"type": "image", "media_type": block.media_type}
    if not isinstance(data, ImageData):
        # Not image data: written nested, so reading it back names the field.
        return {**head, "data": data}
    flat = msgspec.structs.asdict(data)
    return {**head, "source": type(data).__struct_config__.tag, **flat}


class _ImageHead(Value, frozen=True, gc=False, kw_only=True):
    """The block's own field, read beside its flattened data."""

    media_type: str


class _NestedImage(Value, frozen=True, gc=False, kw_only=True):
    """An image as schema 2 wrote it: the data nested under ``data``."""

    media_type: str
    data: AnyImageData


def _block_from_wire(raw: object, convert: codec.Converter) -> ContentBlock:
    if not isinstance(raw, dict):
        raise TypeError("expected a content block, an object tagged by `type`")
    tag = raw.get("type")
    try:
        if tag == "text":
            return convert(raw, TextBlock)
        if tag == "image":
            return _image_from_wire(raw, convert)
    except msgspec.ValidationError as exc:  # re-raised so msgspec adds the path
        raise ValueError(str(exc)) from None
    raise ValueError(f"unknown content block type {tag!r}; expected 'image' or 'text'")


def _image_from_wire(raw: dict[str, Any], convert: codec.Converter) -> ImageBlock:
    if "source" not in raw and isinstance(raw.get("data"), dict):
        nested = convert(raw, _NestedImage)
        return ImageBlock(media_type=nested.media_type, data=nested.data)
    head = convert(raw, _ImageHead)  # the other keys are the data's
    source = raw.get("source")
    variant = _IMAGE_SOURCES.get(source) if isinstance(source, str) else None
    if variant is None:
        raise _inside_data(
            f"expected `source` to be one of {sorted(_IMAGE_SOURCES)}, got {source!r}"
        )
    try:
        # By its concrete type: converting into a union costs several times more.
        data = convert(raw, variant)
    except msgspec.ValidationError as exc:
        raise _inside_data(str(exc)) from None
    return ImageBlock(media_type=head.media_type, data=data)


_IMAGE_SOURCES: dict[str, type[AnyImageData]] = {
    "inline": InlineImage,
    "blob": BlobImage,
}


def _inside_data(error: str) -> ValueError:
    """An error in the flattened data, at the path the caller built it
    (``data.blob_id``, not the wire's ``blob_id``)."""
    problem, at, path = error.partition(" - at `$")
    return ValueError(f"{problem} - at `$.data{path[:-1] if at else ''}`")


def _image_only(raw: object, convert: codec.Converter) -> ImageBlock:
    block = _block_from_wire(raw, convert)
    if not isinstance(block, ImageBlock):
        raise ValueError("expected an image block")
    return block


codec.register_flattened(ContentBlock, _block_from_wire)
codec.register_flattened(ImageBlock, _image_only, _image_to_wire)


# ---------------------------------------------------------------- peers (T-2)


class ResponseProgressPhase(_Enum):
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    PARTIAL_RESULT = "partial_result"


class ResponseTerminalStatus(_Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PeerConvention(
    Value, frozen=True, gc=False, kw_only=True, tag_field="convention_type"
):
    Message: ClassVar[type[PeerMessage]]
    Request: ClassVar[type[PeerRequest]]
    ResponseProgress: ClassVar[type[PeerResponseProgress]]
    ResponseTerminal: ClassVar[type[PeerResponseTerminal]]


class PeerMessage(PeerConvention, frozen=True, gc=False, kw_only=True, tag="message"):
    pass


class PeerRequest(PeerConvention, frozen=True, gc=False, kw_only=True, tag="request"):
    request_id: str
    intent: str


class PeerResponseProgress(
    PeerConvention, frozen=True, gc=False, kw_only=True, tag="response_progress"
):
    request_id: str
    phase: ResponseProgressPhase


class PeerResponseTerminal(
    PeerConvention, frozen=True, gc=False, kw_only=True, tag="response_terminal"
):
    request_id: str
    status: ResponseTerminalStatus


PeerConvention.Message = PeerMessage
PeerConvention.Request = PeerRequest
PeerConvention.ResponseProgress = PeerResponseProgress
PeerConvention.ResponseTerminal = PeerResponseTerminal
AnyPeerConvention = (
    PeerMessage | PeerRequest | PeerResponseProgress | PeerResponseTerminal
)


class RuntimeTurnMetadata(Value, frozen=True, gc=False, kw_only=True):
    """Per-turn hints a caller attaches to a prompt or flow step (W-9)."""

    handling_mode: HandlingMode | None = None
    keep_alive: bool | None = None
    model: str | None = None
    provider: str | None = None
    provider_params: Any = None
    render_metadata: Any = None
    flow_tool_overlay: Any = None
    skill_references: list[str] | None = None
    additional_instructions: list[str] | None = None
    # Set by the runtime on a run's merged metadata (W-9): "resume_pending"
    # when every input of the run is a continuation, else "content_turn".
    execution_kind: str | None = None


# ---------------------------------------------------------------- the six inputs


def _queue() -> HandlingMode:
    """The default handling mode of an external event or a continuation. A
    factory rather than a plain default so that it is always written, even
    when it is the default (T-1): a plain default would be omitted."""
    return HandlingMode.QUEUE


class Input(Value, frozen=True, gc=False, kw_only=True, tag_field="input_type"):
    """Base of the six inputs (T-1)."""

    header: InputHeader

    def id(self) -> InputId:
        return self.header.id

    def kind_id(self) -> str:
        """The policy/supersession kind (T-3)."""
        raise NotImplementedError

    def handling_mode_hint(self) -> HandlingMode | None:
        """Upstream's ``Input::handling_mode()`` (T-4)."""
        return None

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Reads T-1's legacy tags too, as the variant each stands for."""
        variants = [v for v in (*INPUT_TYPES, *_LEGACY_TAGS) if issubclass(v, cls)]
        readable: Any = Union[tuple(variants)]  # noqa: UP007 - from a runtime tuple
        decoded: AnyInput = codec.decode(data, readable)
        return cast(Self, canonical_input(decoded))


class PromptInput(Input, frozen=True, gc=False, kw_only=True, tag="prompt"):
    text: str
    blocks: list[AnyContentBlock] | None = None
    turn_metadata: RuntimeTurnMetadata | None = None

    def kind_id(self) -> str:
        return "prompt"

    def handling_mode_hint(self) -> HandlingMode | None:
        return self.turn_metadata.handling_mode if self.turn_metadata else None

    @classmethod
    def new(cls, text: str, **fields: Any) -> PromptInput:
        """A durable operator prompt with a fresh header (T-8)."""
        return cls(header=InputHeader.new(), text=text, **fields)


_PEER_KINDS: dict[type[PeerConvention], str] = {
    PeerMessage: "peer_message",
    PeerRequest: "peer_request",
    PeerResponseProgress: "peer_response_progress",
    PeerResponseTerminal: "peer_response_terminal",
}


class PeerInput(Input, frozen=True, gc=False, kw_only=True, tag="peer"):
    body: str
    convention: AnyPeerConvention | None = None
    blocks: list[AnyContentBlock] | None = None
    handling_mode: HandlingMode | None = None

    def kind_id(self) -> str:
        # A peer without a convention is a plain message (T-3).
        return _PEER_KINDS[type(self.convention)] if self.convention else "peer_message"

    def handling_mode_hint(self) -> HandlingMode | None:
        return self.handling_mode


class FlowStepInput(Input, frozen=True, gc=False, kw_only=True, tag="flow_step"):
    step_id: str
    instructions: str
    blocks: list[AnyContentBlock] | None = None
    turn_metadata: RuntimeTurnMetadata | None = None

    def kind_id(self) -> str:
        return "flow_step"

    def handling_mode_hint(self) -> HandlingMode | None:
        return self.turn_metadata.handling_mode if self.turn_metadata else None


class ExternalEventInput(
    Input, frozen=True, gc=False, kw_only=True, tag="external_event"
):
    event_type: str
    payload: Any
    blocks: list[AnyContentBlock] | None = None
    handling_mode: HandlingMode = msgspec.field(default_factory=_queue)
    render_metadata: Any = None

    def kind_id(self) -> str:
        return "external_event"

    def handling_mode_hint(self) -> HandlingMode | None:
        return self.handling_mode


class ContinuationInput(Input, frozen=True, gc=False, kw_only=True, tag="continuation"):
    reason: str
    handling_mode: HandlingMode = msgspec.field(default_factory=_queue)
    request_id: str | None = None

    def kind_id(self) -> str:
        return "continuation"

    def handling_mode_hint(self) -> HandlingMode | None:
        return self.handling_mode

    @classmethod
    def detached_background_op_completed(cls) -> ContinuationInput:
        """T-8: the system's wake-up after a background operation finished."""
        header = InputHeader.new(
            source=System(),
            durability=InputDurability.DERIVED,
            visibility=InputVisibility(
                transcript_eligible=False, operator_eligible=False
            ),
        )
        return cls(
            header=header,
            reason="detached_background_op_completed",
            handling_mode=HandlingMode.STEER,
        )


class OperationInput(Input, frozen=True, gc=False, kw_only=True, tag="operation"):
    operation_id: str
    event: Any  # an operation lifecycle event, any JSON value

    def kind_id(self) -> str:
        return "operation"


AnyInput = (
    PromptInput
    | PeerInput
    | FlowStepInput
    | ExternalEventInput
    | ContinuationInput
    | OperationInput
)
"""Annotation for a field holding any input (what msgspec decodes)."""


# T-1's legacy tags, accepted on read only: a record holding one decodes to
# one of these, which ``canonical_input`` turns into the variant it names,
# so it is written back under the current tag.
class _SystemGeneratedInput(
    ContinuationInput, frozen=True, gc=False, kw_only=True, tag="system_generated"
):
    pass


class _ProjectedInput(
    OperationInput, frozen=True, gc=False, kw_only=True, tag="projected"
):
    pass


_LEGACY_TAGS: dict[type[Input], type[Input]] = {
    _SystemGeneratedInput: ContinuationInput,
    _ProjectedInput: OperationInput,
}

ReadableInput = AnyInput | _SystemGeneratedInput | _ProjectedInput
"""Annotation for a stored input: any input, under a current or legacy tag."""


def canonical_input(inp: AnyInput | None) -> AnyInput | None:
    """``inp``, or the current variant a legacy-tagged input stands for."""
    current = None if inp is None else _LEGACY_TAGS.get(type(inp))
    if inp is None or current is None:
        return inp
    canonical: AnyInput = current(**msgspec.structs.asdict(inp))  # type: ignore[assignment]
    return canonical


INPUT_TYPES: tuple[type[Input], ...] = (
    PromptInput,
    PeerInput,
    FlowStepInput,
    ExternalEventInput,
    ContinuationInput,
    OperationInput,
)


def content_blocks(inp: Input) -> list[AnyContentBlock] | None:
    """The blocks of an input that can carry them (T-20)."""
    if isinstance(inp, PromptInput | PeerInput | FlowStepInput | ExternalEventInput):
        return inp.blocks
    return None


# ------------------------------------------------------------ payload keys
# PD-64: an input whose payload is left in the store keeps only what the
# ledger needs of it: its kind (lanes batch prompts alone, C-20; scopes are
# per kind) and its supersession key.


@dataclass(frozen=True, slots=True)
class PayloadKey:
    """The kind (T-3) and supersession key of a payload not held in memory."""

    kind: str
    supersession_key: SupersessionKey | None = None

    @staticmethod
    def of(inp: Input) -> PayloadKey:
        return payload_key(inp.kind_id(), inp.header.supersession_key)


# One shared key per kind for the inputs without a supersession key (most).
_UNKEYED: dict[str, PayloadKey] = {}


def payload_key(kind: str, supersession_key: SupersessionKey | None) -> PayloadKey:
    if supersession_key is not None:
        return PayloadKey(kind, supersession_key)
    key = _UNKEYED.get(kind)
    if key is None:
        key = _UNKEYED[kind] = PayloadKey(kind)
    return key


class _StoredConvention(msgspec.Struct, frozen=True, gc=False):
    convention_type: str


class _StoredHeader(msgspec.Struct, frozen=True, gc=False):
    supersession_key: SupersessionKey | None = None


# The kind of each stored tag, legacy ones included (T-1), and of a peer
# input by its convention's tag; ``kind_id`` of the decoded input agrees.
_TAG_KINDS = {
    "prompt": "prompt",
    "flow_step": "flow_step",
    "external_event": "external_event",
    "continuation": "continuation",
    "system_generated": "continuation",
    "operation": "operation",
    "projected": "operation",
}
_CONVENTION_KINDS = {
    str(convention.__struct_config__.tag): kind
    for convention, kind in _PEER_KINDS.items()
}


class StoredPayload(msgspec.Struct, frozen=True, gc=False):
    """A stored payload read for its key only: the decoder skips the rest
    (checking only that it is well-formed JSON)."""

    input_type: str
    header: _StoredHeader
    convention: _StoredConvention | None = None

    def key(self) -> PayloadKey:
        """Its ``PayloadKey``; an unknown tag raises ``ValueError``."""
        if self.input_type == "peer":
            convention = self.convention
            kind = (
                "peer_message"
                if convention is None
                else _CONVENTION_KINDS.get(convention.convention_type)
            )
        else:
            kind = _TAG_KINDS.get(self.input_type)
        if kind is None:
            raise ValueError(
                f"not an input type this store writes: {self.input_type!r}"
            )
        return payload_key(kind, self.header.supersession_key)
