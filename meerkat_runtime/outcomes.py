"""What the driver answers: accept outcomes, reject reasons, reports, signals.

``AcceptOutcome`` is tagged by ``outcome_type`` and ``RejectReason`` by
``reject_type`` (A-19). Reports count what an operation did (decision 24 for
recovery). ``PostAdmissionSignal`` tells the runtime loop whether to wake.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import msgspec

from meerkat_runtime.codec import Value
from meerkat_runtime.generated.policy_table import PolicyDecision
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId
from meerkat_runtime.input_state import InputState


class RejectReason(Value, frozen=True, gc=False, kw_only=True, tag_field="reject_type"):
    NotReady: ClassVar[type[ReasonNotReady]]
    DurabilityViolation: ClassVar[type[DurabilityViolation]]
    PeerHandlingModeInvalid: ClassVar[type[PeerHandlingModeInvalid]]


class ReasonNotReady(
    RejectReason, frozen=True, gc=False, kw_only=True, tag="not_ready"
):
    state: RuntimeState

    def __str__(self) -> str:
        return f"runtime not accepting input while in state: {self.state.value}"


class DurabilityViolation(
    RejectReason, frozen=True, gc=False, kw_only=True, tag="durability_violation"
):
    detail: str

    def __str__(self) -> str:
        return self.detail


class PeerHandlingModeInvalid(
    RejectReason, frozen=True, gc=False, kw_only=True, tag="peer_handling_mode_invalid"
):
    detail: str

    def __str__(self) -> str:
        return self.detail


RejectReason.NotReady = ReasonNotReady
RejectReason.DurabilityViolation = DurabilityViolation
RejectReason.PeerHandlingModeInvalid = PeerHandlingModeInvalid
AnyRejectReason = ReasonNotReady | DurabilityViolation | PeerHandlingModeInvalid


class AcceptOutcome(
    Value, frozen=True, gc=False, kw_only=True, tag_field="outcome_type"
):
    Accepted: ClassVar[type[Accepted]]
    Deduplicated: ClassVar[type[Deduplicated]]
    Rejected: ClassVar[type[Rejected]]
    Submitted: ClassVar[type[Submitted]]

    def is_accepted(self) -> bool:
        return isinstance(self, Accepted)

    def is_deduplicated(self) -> bool:
        return isinstance(self, Deduplicated)

    def is_rejected(self) -> bool:
        return isinstance(self, Rejected)

    def is_submitted(self) -> bool:
        return isinstance(self, Submitted)


class Accepted(AcceptOutcome, frozen=True, gc=False, kw_only=True, tag="accepted"):
    input_id: InputId
    policy: PolicyDecision
    state: InputState  # a copy of the ledger state after admission


class Deduplicated(
    AcceptOutcome, frozen=True, gc=False, kw_only=True, tag="deduplicated"
):
    input_id: InputId
    existing_id: InputId


class Rejected(AcceptOutcome, frozen=True, gc=False, kw_only=True, tag="rejected"):
    reason: AnyRejectReason


class Submitted(AcceptOutcome, frozen=True, gc=False, kw_only=True, tag="submitted"):
    """PD-58: durably in the runtime's inbox, for its owner to admit; the
    policy is decided then, so there is none to report yet."""

    input_id: InputId


AcceptOutcome.Accepted = Accepted
AcceptOutcome.Deduplicated = Deduplicated
AcceptOutcome.Rejected = Rejected
AcceptOutcome.Submitted = Submitted
AnyAcceptOutcome = Accepted | Deduplicated | Rejected
"""What an accept answers (a submission may also answer ``Submitted``)."""


# CP-11: the counts are always written, ``details`` only when it has entries.
# msgspec omits a default-valued field only when the value is the default
# object itself or an empty collection from a collection factory; a count
# made by the ``int`` factory is neither, so it is always written.
_COUNT = msgspec.field(default_factory=int)


class RecoveryReport(Value, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """Decision 24: recovered = non-terminal inputs loaded; requeued = put back
    in a lane; abandoned = given up by recovery."""

    inputs_recovered: int = _COUNT
    inputs_abandoned: int = _COUNT
    inputs_requeued: int = _COUNT
    details: list[str] = msgspec.field(default_factory=list)


class RetireReport(Value, frozen=True, gc=False, kw_only=True, omit_defaults=False):
    inputs_abandoned: int = 0
    inputs_pending_drain: int = 0


class ResetReport(Value, frozen=True, gc=False, kw_only=True, omit_defaults=False):
    inputs_abandoned: int = 0


class DestroyReport(Value, frozen=True, gc=False, kw_only=True, omit_defaults=False):
    inputs_abandoned: int = 0


class RecycleReport(Value, frozen=True, gc=False, kw_only=True, omit_defaults=False):
    inputs_transferred: int = 0


_SIGNAL_RANK = {"none": 0, "wake_loop": 1, "request_immediate_processing": 2}


class PostAdmissionSignal(enum.Enum):
    """What the runtime loop should do after admissions (A-16); ordered."""

    NONE = "none"
    WAKE_LOOP = "wake_loop"
    REQUEST_IMMEDIATE = "request_immediate_processing"

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def should_wake(self) -> bool:
        return self is not PostAdmissionSignal.NONE

    def should_process_immediately(self) -> bool:
        return self is PostAdmissionSignal.REQUEST_IMMEDIATE

    def raised_to(self, other: PostAdmissionSignal) -> PostAdmissionSignal:
        """The stronger of the two signals."""
        return other if _SIGNAL_RANK[other.value] > _SIGNAL_RANK[self.value] else self
