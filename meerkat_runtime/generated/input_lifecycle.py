# generated from spec/lifecycle.yaml — edit the spec, not this file.
# Regenerate with `make generate` (python -m codegen generate).
"""The input_lifecycle authority: The lifecycle of one input, from acceptance to a
terminal outcome (docs/behaviour.md section 4). A staged input that is rolled
back for the third time is abandoned (L-4, decision 3).

Theory of operation: the authority owns the phase and the fields; nothing else
may change them. ``apply(input)`` finds the one transition enabled in the
current phase (the spec's validator proves there is at most one), updates the
fields, and returns a ``InputLifecycleTransition`` whose effects the caller
carries out. An input that is illegal here raises ``InputLifecycleError`` and
changes nothing. It is sans-IO: no clock, no ids, no store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from meerkat_runtime.errors import MeerkatError
from meerkat_runtime.generated.spec_types import (
    AnyInputTerminalOutcome,
    InputAbandonReason,
    InputTerminalOutcome,
)
from meerkat_runtime.ids import InputId, RunId


class InputLifecycleState(enum.Enum):
    """Phases of the input_lifecycle machine."""

    ACCEPTED = "accepted"
    """Recorded in the ledger, not yet in a lane."""
    QUEUED = "queued"
    """Waiting in its lane for a run."""
    STAGED = "staged"
    """Taken into a run; not yet applied."""
    APPLIED = "applied"
    """Applied by the executor; boundary receipt not yet recorded."""
    APPLIED_PENDING_CONSUMPTION = "applied_pending_consumption"
    """Named by a boundary receipt; consumed when the run completes."""
    CONSUMED = "consumed"
    """Done; its effect is part of the session."""
    SUPERSEDED = "superseded"
    """Replaced by a newer input with the same supersession scope."""
    COALESCED = "coalesced"
    """Folded into a newer input with the same supersession scope."""
    ABANDONED = "abandoned"
    """Given up (reset, destroy, stop, retire, attempts exhausted)."""

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


_TERMINAL = frozenset(
    {
        InputLifecycleState.CONSUMED,
        InputLifecycleState.SUPERSEDED,
        InputLifecycleState.COALESCED,
        InputLifecycleState.ABANDONED,
    }
)
# The phases a handler's transitions fire from, when more than one: a set
# built once, not a tuple of enum lookups per call.
_FROM_0 = frozenset(
    {
        InputLifecycleState.ACCEPTED,
        InputLifecycleState.QUEUED,
        InputLifecycleState.STAGED,
        InputLifecycleState.APPLIED,
        InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
    }
)
_FROM_1 = frozenset(
    {
        InputLifecycleState.APPLIED,
        InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
    }
)
_FROM_2 = frozenset(
    {
        InputLifecycleState.QUEUED,
        InputLifecycleState.STAGED,
        InputLifecycleState.APPLIED,
        InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
        InputLifecycleState.CONSUMED,
        InputLifecycleState.SUPERSEDED,
        InputLifecycleState.COALESCED,
        InputLifecycleState.ABANDONED,
    }
)


# ---------------------------------------------------------------- inputs


class InputLifecycleInput(msgspec.Struct, frozen=True):
    """Base of the inputs of input_lifecycle; variants are nested names."""

    QueueAccepted: ClassVar[type[QueueAccepted]]
    StageForRun: ClassVar[type[StageForRun]]
    RollbackStaged: ClassVar[type[RollbackStaged]]
    MarkApplied: ClassVar[type[MarkApplied]]
    MarkAppliedPendingConsumption: ClassVar[type[MarkAppliedPendingConsumption]]
    Consume: ClassVar[type[Consume]]
    ConsumeOnAccept: ClassVar[type[ConsumeOnAccept]]
    Supersede: ClassVar[type[Supersede]]
    Coalesce: ClassVar[type[Coalesce]]
    Abandon: ClassVar[type[Abandon]]
    RecoverRequeue: ClassVar[type[RecoverRequeue]]
    StampReceipt: ClassVar[type[StampReceipt]]


class QueueAccepted(InputLifecycleInput, frozen=True):
    pass


class StageForRun(InputLifecycleInput, frozen=True):
    run_id: RunId


class RollbackStaged(InputLifecycleInput, frozen=True):
    pass


class MarkApplied(InputLifecycleInput, frozen=True):
    run_id: RunId


class MarkAppliedPendingConsumption(InputLifecycleInput, frozen=True):
    boundary_sequence: int


class Consume(InputLifecycleInput, frozen=True):
    pass


class ConsumeOnAccept(InputLifecycleInput, frozen=True):
    pass


class Supersede(InputLifecycleInput, frozen=True):
    superseded_by: InputId


class Coalesce(InputLifecycleInput, frozen=True):
    aggregate_id: InputId


class Abandon(InputLifecycleInput, frozen=True):
    reason: InputAbandonReason


class RecoverRequeue(InputLifecycleInput, frozen=True):
    pass


class StampReceipt(InputLifecycleInput, frozen=True):
    run_id: RunId
    boundary_sequence: int


InputLifecycleInput.QueueAccepted = QueueAccepted
InputLifecycleInput.StageForRun = StageForRun
InputLifecycleInput.RollbackStaged = RollbackStaged
InputLifecycleInput.MarkApplied = MarkApplied
InputLifecycleInput.MarkAppliedPendingConsumption = MarkAppliedPendingConsumption
InputLifecycleInput.Consume = Consume
InputLifecycleInput.ConsumeOnAccept = ConsumeOnAccept
InputLifecycleInput.Supersede = Supersede
InputLifecycleInput.Coalesce = Coalesce
InputLifecycleInput.Abandon = Abandon
InputLifecycleInput.RecoverRequeue = RecoverRequeue
InputLifecycleInput.StampReceipt = StampReceipt


# ---------------------------------------------------------------- effects


class InputLifecycleEffect(msgspec.Struct, frozen=True):
    """Base of the effects a transition asks its caller to carry out."""

    InputLifecycleNotice: ClassVar[type[InputLifecycleNotice]]
    RecordTerminalOutcome: ClassVar[type[RecordTerminalOutcome]]
    RecordRunAssociation: ClassVar[type[RecordRunAssociation]]
    RecordBoundarySequence: ClassVar[type[RecordBoundarySequence]]


class InputLifecycleNotice(InputLifecycleEffect, frozen=True):
    new_state: InputLifecycleState


class RecordTerminalOutcome(InputLifecycleEffect, frozen=True):
    outcome: AnyInputTerminalOutcome


class RecordRunAssociation(InputLifecycleEffect, frozen=True):
    run_id: RunId


class RecordBoundarySequence(InputLifecycleEffect, frozen=True):
    boundary_sequence: int


InputLifecycleEffect.InputLifecycleNotice = InputLifecycleNotice
InputLifecycleEffect.RecordTerminalOutcome = RecordTerminalOutcome
InputLifecycleEffect.RecordRunAssociation = RecordRunAssociation
InputLifecycleEffect.RecordBoundarySequence = RecordBoundarySequence


# ---------------------------------------------------------------- results


class InputLifecycleTransition(msgspec.Struct, frozen=True):
    """What one ``apply`` did: the spec's transition name, phases and effects."""

    name: str
    from_phase: InputLifecycleState
    next_phase: InputLifecycleState
    effects: tuple[InputLifecycleEffect, ...]


class InputLifecycleSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The authority's whole state, for persistence and checkpoints."""

    phase: InputLifecycleState
    terminal_outcome: AnyInputTerminalOutcome | None = None
    last_run_id: RunId | None = None
    last_boundary_sequence: int | None = None
    attempt_count: int = 0


class InputLifecycleError(MeerkatError):
    """An input the machine refuses in its current phase; nothing changed.

    ``state`` is the phase, ``input`` the refused input and ``guards`` the
    guards that did not hold (empty when no transition exists at all).
    """

    TerminalState: ClassVar[type[InputLifecycleTerminalStateError]]
    InvalidTransition: ClassVar[type[InputLifecycleInvalidTransitionError]]
    GuardFailed: ClassVar[type[InputLifecycleGuardFailedError]]

    def __init__(
        self,
        state: InputLifecycleState,
        input: InputLifecycleInput,
        guards: tuple[str, ...] = (),
    ) -> None:
        self.state = state
        self.input = input
        self.guards = guards
        super().__init__(self.describe())

    def describe(self) -> str:
        return f"{type(self.input).__name__} is not allowed in {self.state.value}"


class InputLifecycleTerminalStateError(InputLifecycleError):
    def describe(self) -> str:
        name = type(self.input).__name__
        return f"{name} refused: {self.state.value} is terminal"


class InputLifecycleInvalidTransitionError(InputLifecycleError):
    def describe(self) -> str:
        name = type(self.input).__name__
        return f"invalid transition: {name} from {self.state.value}"


class InputLifecycleGuardFailedError(InputLifecycleError):
    def describe(self) -> str:
        name = type(self.input).__name__
        failed = ", ".join(self.guards)
        return f"{name} from {self.state.value}: guard failed: {failed}"


InputLifecycleError.TerminalState = InputLifecycleTerminalStateError
InputLifecycleError.InvalidTransition = InputLifecycleInvalidTransitionError
InputLifecycleError.GuardFailed = InputLifecycleGuardFailedError


# ---------------------------------------------------------------- authority


class InputLifecycleAuthority:
    """The only code that changes a input_lifecycle phase or field."""

    __slots__ = (
        "_attempt_count",
        "_last_boundary_sequence",
        "_last_run_id",
        "_phase",
        "_terminal_outcome",
    )

    def __init__(self) -> None:
        self._phase = InputLifecycleState.ACCEPTED
        self._terminal_outcome: AnyInputTerminalOutcome | None = None
        self._last_run_id: RunId | None = None
        self._last_boundary_sequence: int | None = None
        self._attempt_count: int = 0

    @classmethod
    def restore(cls, snapshot: InputLifecycleSnapshot) -> InputLifecycleAuthority:
        """Rebuild an authority exactly from stored state (no transition)."""
        self = cls.__new__(cls)
        self._phase = snapshot.phase
        self._terminal_outcome = snapshot.terminal_outcome
        self._last_run_id = snapshot.last_run_id
        self._last_boundary_sequence = snapshot.last_boundary_sequence
        self._attempt_count = snapshot.attempt_count
        return self

    def copy(self) -> InputLifecycleAuthority:
        """An independent authority in the same state (for checkpoints)."""
        return type(self).restore(self.snapshot())

    def snapshot(self) -> InputLifecycleSnapshot:
        return InputLifecycleSnapshot(
            phase=self._phase,
            terminal_outcome=self._terminal_outcome,
            last_run_id=self._last_run_id,
            last_boundary_sequence=self._last_boundary_sequence,
            attempt_count=self._attempt_count,
        )

    def phase(self) -> InputLifecycleState:
        return self._phase

    def terminal_outcome(self) -> AnyInputTerminalOutcome | None:
        return self._terminal_outcome

    def last_run_id(self) -> RunId | None:
        return self._last_run_id

    def last_boundary_sequence(self) -> int | None:
        return self._last_boundary_sequence

    def attempt_count(self) -> int:
        return self._attempt_count

    def __repr__(self) -> str:
        return f"InputLifecycleAuthority.restore({self.snapshot()!r})"

    def can_accept(self, inp: InputLifecycleInput) -> bool:
        """Whether ``apply(inp)`` would succeed; changes nothing."""
        handler = _HANDLERS.get(type(inp))
        if handler is None:
            raise self._not_an_input(inp)
        try:
            handler(self, inp, False)
        except InputLifecycleError:
            return False
        return True

    def apply(self, inp: InputLifecycleInput) -> InputLifecycleTransition:
        """Fire the transition ``inp`` enables, or raise and change nothing."""
        handler = _HANDLERS.get(type(inp))
        if handler is None:
            raise self._not_an_input(inp)
        return handler(self, inp, True)  # type: ignore[no-any-return]

    def violated_invariants(self) -> tuple[str, ...]:
        """Names of the spec invariants the current state breaks (always none)."""
        checks = (
            (
                "accepted_has_no_run_or_boundary_metadata",
                (
                    (self._phase is not InputLifecycleState.ACCEPTED)
                    or (
                        (self._last_run_id is None)
                        and (self._last_boundary_sequence is None)
                        and (self._attempt_count == 0)
                    )
                ),
            ),
            (
                "boundary_metadata_requires_a_run",
                (
                    (self._last_boundary_sequence is None)
                    or (self._last_run_id is not None)
                ),
            ),
            (
                "terminal_iff_outcome",
                (
                    (self._terminal_outcome is None)
                    == (
                        self._phase
                        not in (
                            InputLifecycleState.CONSUMED,
                            InputLifecycleState.SUPERSEDED,
                            InputLifecycleState.COALESCED,
                            InputLifecycleState.ABANDONED,
                        )
                    )
                ),
            ),
            (
                "in_run_has_run_id",
                (
                    (
                        self._phase
                        not in (
                            InputLifecycleState.STAGED,
                            InputLifecycleState.APPLIED,
                            InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
                        )
                    )
                    or (self._last_run_id is not None)
                ),
            ),
            ("staged_at_most_max_attempts", (self._attempt_count <= 3)),
        )
        return tuple(name for name, ok in checks if not ok)

    def is_consistent(self) -> bool:
        """Whether every invariant holds and every bounded field is within its
        declared range (``FIELD_RANGES``): one cheap test for many stored
        records; ``violated_invariants`` says which invariant failed."""
        return (
            (
                (self._phase is not InputLifecycleState.ACCEPTED)
                or (
                    (self._last_run_id is None)
                    and (self._last_boundary_sequence is None)
                    and (self._attempt_count == 0)
                )
            )
            and (
                (self._last_boundary_sequence is None)
                or (self._last_run_id is not None)
            )
            and (
                (self._terminal_outcome is None)
                == (
                    self._phase
                    not in (
                        InputLifecycleState.CONSUMED,
                        InputLifecycleState.SUPERSEDED,
                        InputLifecycleState.COALESCED,
                        InputLifecycleState.ABANDONED,
                    )
                )
            )
            and (
                (
                    self._phase
                    not in (
                        InputLifecycleState.STAGED,
                        InputLifecycleState.APPLIED,
                        InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
                    )
                )
                or (self._last_run_id is not None)
            )
            and (self._attempt_count <= 3)
            and (0 <= self._attempt_count <= 3)
        )

    @staticmethod
    def _not_an_input(inp: object) -> TypeError:
        return TypeError(f"not an input of input_lifecycle: {inp!r}")

    def _refuse(
        self, inp: InputLifecycleInput, guards: tuple[tuple[str, bool], ...] = ()
    ) -> InputLifecycleError:
        failed = tuple(name for name, ok in guards if not ok)
        if guards:
            return InputLifecycleGuardFailedError(self._phase, inp, failed)
        if self._phase in _TERMINAL:
            return InputLifecycleTerminalStateError(self._phase, inp)
        return InputLifecycleInvalidTransitionError(self._phase, inp)

    def _on_queue_accepted(
        self, inp: QueueAccepted, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.ACCEPTED:
            if not fire:
                return None
            self._phase = InputLifecycleState.QUEUED
            return InputLifecycleTransition(
                "queue_accepted",
                phase,
                InputLifecycleState.QUEUED,
                (InputLifecycleNotice(new_state=self._phase),),
            )
        raise self._refuse(inp)

    def _on_stage_for_run(
        self, inp: StageForRun, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.QUEUED:
            if not fire:
                return None
            self._last_run_id, self._attempt_count = (
                inp.run_id,
                (self._attempt_count + 1),
            )
            self._phase = InputLifecycleState.STAGED
            return InputLifecycleTransition(
                "stage_for_run",
                phase,
                InputLifecycleState.STAGED,
                (
                    InputLifecycleNotice(new_state=self._phase),
                    RecordRunAssociation(run_id=inp.run_id),
                ),
            )
        raise self._refuse(inp)

    def _on_rollback_staged(
        self, inp: RollbackStaged, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.STAGED:
            if self._attempt_count < 3:
                if not fire:
                    return None
                self._phase = InputLifecycleState.QUEUED
                return InputLifecycleTransition(
                    "rollback_staged",
                    phase,
                    InputLifecycleState.QUEUED,
                    (InputLifecycleNotice(new_state=self._phase),),
                )
            if self._attempt_count >= 3:
                if not fire:
                    return None
                self._terminal_outcome = InputTerminalOutcome.Abandoned(
                    reason=InputAbandonReason.MaxAttemptsExhausted(
                        attempts=self._attempt_count
                    )
                )
                self._phase = InputLifecycleState.ABANDONED
                return InputLifecycleTransition(
                    "rollback_staged_exhausted",
                    phase,
                    InputLifecycleState.ABANDONED,
                    (
                        InputLifecycleNotice(new_state=self._phase),
                        RecordTerminalOutcome(
                            outcome=InputTerminalOutcome.Abandoned(
                                reason=InputAbandonReason.MaxAttemptsExhausted(
                                    attempts=self._attempt_count
                                )
                            )
                        ),
                    ),
                )
            raise self._refuse(
                inp,
                (
                    ("attempts_remain", (self._attempt_count < 3)),
                    ("attempts_exhausted", (self._attempt_count >= 3)),
                ),
            )
        raise self._refuse(inp)

    def _on_mark_applied(
        self, inp: MarkApplied, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.STAGED:
            if self._last_run_id == inp.run_id:
                if not fire:
                    return None
                self._phase = InputLifecycleState.APPLIED
                return InputLifecycleTransition(
                    "mark_applied",
                    phase,
                    InputLifecycleState.APPLIED,
                    (InputLifecycleNotice(new_state=self._phase),),
                )
            raise self._refuse(
                inp,
                (("matches_last_run", (self._last_run_id == inp.run_id)),),
            )
        raise self._refuse(inp)

    def _on_mark_applied_pending_consumption(
        self, inp: MarkAppliedPendingConsumption, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.APPLIED:
            if not fire:
                return None
            self._last_boundary_sequence = inp.boundary_sequence
            self._phase = InputLifecycleState.APPLIED_PENDING_CONSUMPTION
            return InputLifecycleTransition(
                "mark_applied_pending_consumption",
                phase,
                InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
                (
                    InputLifecycleNotice(new_state=self._phase),
                    RecordBoundarySequence(boundary_sequence=inp.boundary_sequence),
                ),
            )
        raise self._refuse(inp)

    def _on_consume(self, inp: Consume, fire: bool) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.APPLIED_PENDING_CONSUMPTION:
            if not fire:
                return None
            self._terminal_outcome = InputTerminalOutcome.Consumed()
            self._phase = InputLifecycleState.CONSUMED
            return InputLifecycleTransition(
                "consume",
                phase,
                InputLifecycleState.CONSUMED,
                (
                    InputLifecycleNotice(new_state=self._phase),
                    RecordTerminalOutcome(outcome=InputTerminalOutcome.Consumed()),
                ),
            )
        raise self._refuse(inp)

    def _on_consume_on_accept(
        self, inp: ConsumeOnAccept, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.ACCEPTED:
            if not fire:
                return None
            self._terminal_outcome = InputTerminalOutcome.Consumed()
            self._phase = InputLifecycleState.CONSUMED
            return InputLifecycleTransition(
                "consume_on_accept",
                phase,
                InputLifecycleState.CONSUMED,
                (
                    InputLifecycleNotice(new_state=self._phase),
                    RecordTerminalOutcome(outcome=InputTerminalOutcome.Consumed()),
                ),
            )
        raise self._refuse(inp)

    def _on_supersede(
        self, inp: Supersede, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.QUEUED:
            if not fire:
                return None
            self._terminal_outcome = InputTerminalOutcome.Superseded(
                superseded_by=inp.superseded_by
            )
            self._phase = InputLifecycleState.SUPERSEDED
            return InputLifecycleTransition(
                "supersede",
                phase,
                InputLifecycleState.SUPERSEDED,
                (
                    InputLifecycleNotice(new_state=self._phase),
                    RecordTerminalOutcome(
                        outcome=InputTerminalOutcome.Superseded(
                            superseded_by=inp.superseded_by
                        )
                    ),
                ),
            )
        raise self._refuse(inp)

    def _on_coalesce(
        self, inp: Coalesce, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase is InputLifecycleState.QUEUED:
            if not fire:
                return None
            self._terminal_outcome = InputTerminalOutcome.Coalesced(
                aggregate_id=inp.aggregate_id
            )
            self._phase = InputLifecycleState.COALESCED
            return InputLifecycleTransition(
                "coalesce",
                phase,
                InputLifecycleState.COALESCED,
                (
                    InputLifecycleNotice(new_state=self._phase),
                    RecordTerminalOutcome(
                        outcome=InputTerminalOutcome.Coalesced(
                            aggregate_id=inp.aggregate_id
                        )
                    ),
                ),
            )
        raise self._refuse(inp)

    def _on_abandon(self, inp: Abandon, fire: bool) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase in _FROM_0:
            if not fire:
                return None
            self._terminal_outcome = InputTerminalOutcome.Abandoned(reason=inp.reason)
            self._phase = InputLifecycleState.ABANDONED
            return InputLifecycleTransition(
                "abandon",
                phase,
                InputLifecycleState.ABANDONED,
                (
                    InputLifecycleNotice(new_state=self._phase),
                    RecordTerminalOutcome(
                        outcome=InputTerminalOutcome.Abandoned(reason=inp.reason)
                    ),
                ),
            )
        raise self._refuse(inp)

    def _on_recover_requeue(
        self, inp: RecoverRequeue, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase in _FROM_1:
            if self._attempt_count < 3:
                if not fire:
                    return None
                self._phase = InputLifecycleState.QUEUED
                return InputLifecycleTransition(
                    "recover_requeue",
                    phase,
                    InputLifecycleState.QUEUED,
                    (InputLifecycleNotice(new_state=self._phase),),
                )
            if self._attempt_count >= 3:
                if not fire:
                    return None
                self._terminal_outcome = InputTerminalOutcome.Abandoned(
                    reason=InputAbandonReason.MaxAttemptsExhausted(
                        attempts=self._attempt_count
                    )
                )
                self._phase = InputLifecycleState.ABANDONED
                return InputLifecycleTransition(
                    "recover_requeue_exhausted",
                    phase,
                    InputLifecycleState.ABANDONED,
                    (
                        InputLifecycleNotice(new_state=self._phase),
                        RecordTerminalOutcome(
                            outcome=InputTerminalOutcome.Abandoned(
                                reason=InputAbandonReason.MaxAttemptsExhausted(
                                    attempts=self._attempt_count
                                )
                            )
                        ),
                    ),
                )
            raise self._refuse(
                inp,
                (
                    ("attempts_remain", (self._attempt_count < 3)),
                    ("attempts_exhausted", (self._attempt_count >= 3)),
                ),
            )
        raise self._refuse(inp)

    def _on_stamp_receipt(
        self, inp: StampReceipt, fire: bool
    ) -> InputLifecycleTransition | None:
        phase = self._phase
        if phase in _FROM_2:
            if not fire:
                return None
            self._last_run_id, self._last_boundary_sequence = (
                inp.run_id,
                inp.boundary_sequence,
            )
            return InputLifecycleTransition(
                "stamp_receipt",
                phase,
                phase,
                (RecordBoundarySequence(boundary_sequence=inp.boundary_sequence),),
            )
        raise self._refuse(inp)


# The handler returns None only when called with fire=False (can_accept).
_Handler = Callable[[InputLifecycleAuthority, Any, bool], Any]

_HANDLERS: dict[type[InputLifecycleInput], _Handler] = {
    QueueAccepted: InputLifecycleAuthority._on_queue_accepted,
    StageForRun: InputLifecycleAuthority._on_stage_for_run,
    RollbackStaged: InputLifecycleAuthority._on_rollback_staged,
    MarkApplied: InputLifecycleAuthority._on_mark_applied,
    MarkAppliedPendingConsumption: InputLifecycleAuthority._on_mark_applied_pending_consumption,
    Consume: InputLifecycleAuthority._on_consume,
    ConsumeOnAccept: InputLifecycleAuthority._on_consume_on_accept,
    Supersede: InputLifecycleAuthority._on_supersede,
    Coalesce: InputLifecycleAuthority._on_coalesce,
    Abandon: InputLifecycleAuthority._on_abandon,
    RecoverRequeue: InputLifecycleAuthority._on_recover_requeue,
    StampReceipt: InputLifecycleAuthority._on_stamp_receipt,
}

TRANSITION_INPUTS: dict[str, type[InputLifecycleInput]] = {
    "queue_accepted": QueueAccepted,
    "stage_for_run": StageForRun,
    "rollback_staged": RollbackStaged,
    "rollback_staged_exhausted": RollbackStaged,
    "mark_applied": MarkApplied,
    "mark_applied_pending_consumption": MarkAppliedPendingConsumption,
    "consume": Consume,
    "consume_on_accept": ConsumeOnAccept,
    "supersede": Supersede,
    "coalesce": Coalesce,
    "recover_requeue": RecoverRequeue,
    "recover_requeue_exhausted": RecoverRequeue,
    "stamp_receipt": StampReceipt,
    "abandon": Abandon,
}
"""The input that fires each transition, by the transition's name (the name
a stored history records), so that a history can be replayed."""

FIELD_RANGES: dict[str, tuple[int, int]] = {
    "attempt_count": (0, 3),
}
"""The declared range of each bounded integer field (inclusive)."""

TRANSITION_COUNT = 27
"""(phase, transition) pairs: a transition from three phases counts three."""
