# generated from spec/lifecycle.yaml — edit the spec, not this file.
# Regenerate with `make generate` (python -m codegen generate).
"""Types shared by the lifecycle machines, declared under `types:` in the spec.

Enums use upstream's serde names as values; unions are tagged value structs
(keyword construction, JSON via meerkat_runtime.codec) whose variants are
reached as ``Union.Variant(...)``.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from meerkat_runtime.codec import Value
from meerkat_runtime.ids import InputId


class HandlingMode(enum.Enum):
    QUEUE = "queue"
    STEER = "steer"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class AdmissionEffect(enum.Enum):
    QUEUED = "queued"
    CONSUMED_ON_ACCEPT = "consumed_on_accept"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class InputAbandonReason(
    Value, frozen=True, gc=False, kw_only=True, tag_field="reason_type"
):
    """Base of the InputAbandonReason variants."""

    Retired: ClassVar[type[Retired]]
    Reset: ClassVar[type[Reset]]
    Destroyed: ClassVar[type[Destroyed]]
    Cancelled: ClassVar[type[Cancelled]]
    MaxAttemptsExhausted: ClassVar[type[MaxAttemptsExhausted]]


class Retired(InputAbandonReason, frozen=True, gc=False, kw_only=True, tag="retired"):
    pass


class Reset(InputAbandonReason, frozen=True, gc=False, kw_only=True, tag="reset"):
    pass


class Destroyed(
    InputAbandonReason, frozen=True, gc=False, kw_only=True, tag="destroyed"
):
    pass


class Cancelled(
    InputAbandonReason, frozen=True, gc=False, kw_only=True, tag="cancelled"
):
    pass


class MaxAttemptsExhausted(
    InputAbandonReason,
    frozen=True,
    gc=False,
    kw_only=True,
    tag="max_attempts_exhausted",
):
    attempts: int


InputAbandonReason.Retired = Retired
InputAbandonReason.Reset = Reset
InputAbandonReason.Destroyed = Destroyed
InputAbandonReason.Cancelled = Cancelled
InputAbandonReason.MaxAttemptsExhausted = MaxAttemptsExhausted

AnyInputAbandonReason = Retired | Reset | Destroyed | Cancelled | MaxAttemptsExhausted
"""Annotation for a field holding any InputAbandonReason (what msgspec decodes)."""


class InputTerminalOutcome(
    Value, frozen=True, gc=False, kw_only=True, tag_field="outcome_type"
):
    """Base of the InputTerminalOutcome variants."""

    Consumed: ClassVar[type[Consumed]]
    Superseded: ClassVar[type[Superseded]]
    Coalesced: ClassVar[type[Coalesced]]
    Abandoned: ClassVar[type[Abandoned]]


class Consumed(
    InputTerminalOutcome, frozen=True, gc=False, kw_only=True, tag="consumed"
):
    pass


class Superseded(
    InputTerminalOutcome, frozen=True, gc=False, kw_only=True, tag="superseded"
):
    superseded_by: InputId


class Coalesced(
    InputTerminalOutcome, frozen=True, gc=False, kw_only=True, tag="coalesced"
):
    aggregate_id: InputId


class Abandoned(
    InputTerminalOutcome, frozen=True, gc=False, kw_only=True, tag="abandoned"
):
    reason: AnyInputAbandonReason


InputTerminalOutcome.Consumed = Consumed
InputTerminalOutcome.Superseded = Superseded
InputTerminalOutcome.Coalesced = Coalesced
InputTerminalOutcome.Abandoned = Abandoned

AnyInputTerminalOutcome = Consumed | Superseded | Coalesced | Abandoned
"""Annotation for a field holding any InputTerminalOutcome (what msgspec decodes)."""
