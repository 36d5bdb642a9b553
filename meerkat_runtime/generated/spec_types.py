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
from meerkat_runtime.tagging import ExternallyTagged


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


class InputAbandonReason(ExternallyTagged, legacy_tag_field="reason_type"):
    """Base of the InputAbandonReason variants (externally tagged)."""

    __slots__ = ()

    Retired: ClassVar[type[Retired]]
    Reset: ClassVar[type[Reset]]
    Destroyed: ClassVar[type[Destroyed]]
    Cancelled: ClassVar[type[Cancelled]]
    MaxAttemptsExhausted: ClassVar[type[MaxAttemptsExhausted]]


class Retired(InputAbandonReason, tag="retired"):
    __slots__ = ()


class Reset(InputAbandonReason, tag="reset"):
    __slots__ = ()


class Destroyed(InputAbandonReason, tag="destroyed"):
    __slots__ = ()


class Cancelled(InputAbandonReason, tag="cancelled"):
    __slots__ = ()


class MaxAttemptsExhausted(InputAbandonReason, tag="max_attempts_exhausted"):
    __slots__ = ("attempts",)

    attempts: int


InputAbandonReason.Retired = Retired
InputAbandonReason.Reset = Reset
InputAbandonReason.Destroyed = Destroyed
InputAbandonReason.Cancelled = Cancelled
InputAbandonReason.MaxAttemptsExhausted = MaxAttemptsExhausted

AnyInputAbandonReason = Retired | Reset | Destroyed | Cancelled | MaxAttemptsExhausted
"""Any InputAbandonReason, for typed code (decoded fields name the union class)."""


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
    reason: InputAbandonReason


InputTerminalOutcome.Consumed = Consumed
InputTerminalOutcome.Superseded = Superseded
InputTerminalOutcome.Coalesced = Coalesced
InputTerminalOutcome.Abandoned = Abandoned

AnyInputTerminalOutcome = Consumed | Superseded | Coalesced | Abandoned
"""Annotation for a field holding any InputTerminalOutcome (what msgspec decodes)."""
