"""Value types are frozen and keyword-constructed, and malformed or mistagged
JSON is refused with an error that says what is wrong.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from meerkat_runtime import (
    AcceptOutcome,
    ContentBlock,
    ImageData,
    Input,
    InputAbandonReason,
    InputDurability,
    InputHeader,
    InputLifecycleEvent,
    InputOrigin,
    InputState,
    InputTerminalOutcome,
    InputVisibility,
    PeerConvention,
    PeerInput,
    PolicyDecision,
    PolicySnapshot,
    PromptInput,
    RecoveryReport,
    RejectReason,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunEvent,
    RuntimeEvent,
    RuntimeEventEnvelope,
    SessionDelta,
)
from meerkat_runtime.codec import decode, encode
from tests.values.codec import (
    CONVENTIONS,
    DECISIONS,
    FULL_METADATA,
    IID,
    IID2,
    INLINE_IMAGE,
    INPUT_EVENTS,
    RECEIPT,
    RID,
    T0,
    _envelope,
    _header,
)

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
