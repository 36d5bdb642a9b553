"""Admission checks on a caller's input, before anything is recorded.

Theory of operation: ``check_structure`` is the edge where untrusted values
enter, so their types are checked here, once. msgspec structs do not check
types when built in Python, so a caller can hand over anything; this walks
the input and raises ``ValidationFailed`` naming the first bad field. ``durability_violation`` and
``peer_mode_violation`` are upstream's two *rejections* (A-2, A-3): legal
values the runtime refuses, answered with ``AcceptOutcome.Rejected``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.ids import CorrelationId, IdempotencyKey, InputId, SupersessionKey
from meerkat_runtime.inputs import (
    INPUT_TYPES,
    ContinuationInput,
    External,
    ExternalEventInput,
    FlowStepInput,
    ImageBlock,
    InlineImage,
    Input,
    InputDurability,
    InputHeader,
    InputOrigin,
    InputVisibility,
    OperationInput,
    Operator,
    PeerConvention,
    PeerInput,
    PeerOrigin,
    PeerResponseProgress,
    PromptInput,
    RuntimeTurnMetadata,
    TextBlock,
)

DEFAULT_MAX_INPUT_BYTES = 1024 * 1024
MAX_KEY_LENGTH = 512
MAX_JSON_DEPTH = 64


class _Budget:
    """Counts text bytes against the size limit, naming the field that overflows."""

    __slots__ = ("left",)

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, field: str, text: str) -> None:
        # ASCII text (the common case) is one byte a character; anything else
        # is measured exactly, so budgets shared by several fields add up.
        size = (
            len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        )
        self.left -= size
        if self.left < 0:
            raise ValidationFailedError(f"{field}: input exceeds the size limit")


def _expect(
    field: str, value: object, kind: type | tuple[type, ...], what: str
) -> None:
    if not isinstance(value, kind):
        raise ValidationFailedError(
            f"{field}: expected {what}, got {type(value).__name__}"
        )


def _text(field: str, value: object, budget: _Budget) -> None:
    _expect(field, value, str, "text")
    assert isinstance(value, str)
    budget.spend(field, value)


def check_structure(inp: object, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Input:
    """The input itself if it is well formed; else ``ValidationFailed``."""
    if type(inp) not in INPUT_TYPES:
        kinds = ", ".join(t.__name__ for t in INPUT_TYPES)
        raise ValidationFailedError(
            f"input: unknown kind {type(inp).__name__} (expected one of {kinds})"
        )
    assert isinstance(inp, Input)
    _check_header(inp.header)
    budget = _Budget(max_bytes)
    _CHECKS[type(inp)](inp, budget)
    return inp


def _check_header(header: object) -> None:
    _expect("header", header, InputHeader, "InputHeader")
    assert isinstance(header, InputHeader)
    _expect("header.id", header.id, InputId, "InputId")
    if not str(header.id):
        raise ValidationFailedError("header.id: must not be empty")
    _expect("header.timestamp", header.timestamp, datetime, "datetime")
    _expect("header.source", header.source, InputOrigin, "InputOrigin")
    _check_origin(header.source)
    _expect("header.durability", header.durability, InputDurability, "InputDurability")
    _expect("header.visibility", header.visibility, InputVisibility, "InputVisibility")
    _check_key("header.idempotency_key", header.idempotency_key, IdempotencyKey)
    _check_key("header.supersession_key", header.supersession_key, SupersessionKey)
    if header.correlation_id is not None:
        _expect(
            "header.correlation_id",
            header.correlation_id,
            CorrelationId,
            "CorrelationId",
        )


def _check_origin(origin: InputOrigin) -> None:
    if isinstance(origin, PeerOrigin):
        _expect("header.source.peer_id", origin.peer_id, str, "text")
    elif isinstance(origin, External):
        _expect("header.source.source_name", origin.source_name, str, "text")
    elif type(origin) is InputOrigin:
        raise ValidationFailedError(
            "header.source: use a variant such as InputOrigin.Operator()"
        )


def _check_key(field: str, key: object, kind: type) -> None:
    """Keys are caller-chosen text: non-blank, bounded, no control characters."""
    if key is None:
        return
    _expect(field, key, kind, kind.__name__)
    text = str(key)
    if not text.strip():
        raise ValidationFailedError(f"{field}: must not be blank")
    if len(text) > MAX_KEY_LENGTH:
        raise ValidationFailedError(f"{field}: longer than {MAX_KEY_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValidationFailedError(f"{field}: contains control characters")


def _check_blocks(blocks: object, budget: _Budget) -> None:
    if blocks is None:
        return
    _expect("blocks", blocks, list, "a list of ContentBlock")
    assert isinstance(blocks, list)
    for index, block in enumerate(blocks):
        field = f"blocks[{index}]"
        if isinstance(block, TextBlock):
            _text(f"{field}.text", block.text, budget)
        elif isinstance(block, ImageBlock):
            _expect(f"{field}.media_type", block.media_type, str, "text")
            if isinstance(block.data, InlineImage):
                _text(f"{field}.data", block.data.data, budget)
        else:
            raise ValidationFailedError(
                f"{field}: expected a ContentBlock, got {type(block).__name__}"
            )


def _check_metadata(metadata: object) -> None:
    if metadata is not None:
        _expect("turn_metadata", metadata, RuntimeTurnMetadata, "RuntimeTurnMetadata")
        assert isinstance(metadata, RuntimeTurnMetadata)
        _check_mode(
            "turn_metadata.handling_mode", metadata.handling_mode, optional=True
        )


def _check_mode(field: str, mode: object, optional: bool) -> None:
    if mode is None and optional:
        return
    _expect(field, mode, HandlingMode, "HandlingMode")


def _check_prompt(inp: Any, budget: _Budget) -> None:
    _text("text", inp.text, budget)
    _check_blocks(inp.blocks, budget)
    _check_metadata(inp.turn_metadata)


def _check_peer(inp: Any, budget: _Budget) -> None:
    _text("body", inp.body, budget)
    if inp.convention is not None:
        _expect("convention", inp.convention, PeerConvention, "PeerConvention")
    _check_blocks(inp.blocks, budget)
    _check_mode("handling_mode", inp.handling_mode, optional=True)


def _check_flow_step(inp: Any, budget: _Budget) -> None:
    _text("step_id", inp.step_id, budget)
    _text("instructions", inp.instructions, budget)
    _check_blocks(inp.blocks, budget)
    _check_metadata(inp.turn_metadata)


def _check_json(field: str, value: object, budget: _Budget, depth: int = 0) -> None:
    """A JSON value exactly: it must come back equal after a round trip, so
    no sets, bytes, tuples, non-text keys, NaN or infinities."""
    if depth > MAX_JSON_DEPTH:
        raise ValidationFailedError(
            f"{field}: nested deeper than {MAX_JSON_DEPTH} levels"
        )
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        budget.spend(
            field, "0" * len(str(value)) if abs(value) < 10**18 else str(value)
        )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationFailedError(f"{field}: {value} is not a JSON number")
        budget.spend(field, "0" * 24)
        return
    if isinstance(value, str):
        budget.spend(field, value)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(f"{field}[{index}]", item, budget, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationFailedError(f"{field}: key {key!r} is not text")
            budget.spend(field, key)
            _check_json(f"{field}.{key}", item, budget, depth + 1)
        return
    raise ValidationFailedError(f"{field}: {type(value).__name__} is not a JSON value")


def _check_external(inp: Any, budget: _Budget) -> None:
    _text("event_type", inp.event_type, budget)
    _check_json("payload", inp.payload, budget)
    if inp.render_metadata is not None:
        _check_json("render_metadata", inp.render_metadata, budget)
    _check_blocks(inp.blocks, budget)
    _check_mode("handling_mode", inp.handling_mode, optional=False)


def _check_continuation(inp: Any, budget: _Budget) -> None:
    _text("reason", inp.reason, budget)
    _check_mode("handling_mode", inp.handling_mode, optional=False)
    if inp.request_id is not None:
        _text("request_id", inp.request_id, budget)


def _check_operation(inp: Any, budget: _Budget) -> None:
    _text("operation_id", inp.operation_id, budget)
    _check_json("event", inp.event, budget)


_CHECKS = {
    PromptInput: _check_prompt,
    PeerInput: _check_peer,
    FlowStepInput: _check_flow_step,
    ExternalEventInput: _check_external,
    ContinuationInput: _check_continuation,
    OperationInput: _check_operation,
}


# ---------------------------------------------------------------- rejections


_EXTERNAL_ORIGINS = (Operator, PeerOrigin, External)
_DERIVED_FORBIDDEN = (PromptInput, FlowStepInput)


def durability_violation(inp: Input) -> str | None:
    """T-10..T-13: only ``derived`` is ever refused. Decision 11: the kind in
    the message is the plain kind id (``peer_message``, not doubled)."""
    if inp.header.durability is not InputDurability.DERIVED:
        return None
    if isinstance(inp.header.source, _EXTERNAL_ORIGINS):
        return "External ingress cannot submit derived inputs"
    if isinstance(inp, _DERIVED_FORBIDDEN):
        return f"Derived durability forbidden for {inp.kind_id()}"
    if (
        isinstance(inp, PeerInput)
        and inp.convention is not None
        and not isinstance(inp.convention, PeerResponseProgress)
    ):
        return f"Derived durability forbidden for {inp.kind_id()}"
    return None


def peer_mode_violation(inp: Input) -> str | None:
    """T-14: only a ResponseProgress peer may not carry a handling mode."""
    if (
        isinstance(inp, PeerInput)
        and inp.handling_mode is not None
        and isinstance(inp.convention, PeerResponseProgress)
    ):
        return "handling_mode is forbidden on ResponseProgress peer inputs"
    return None
