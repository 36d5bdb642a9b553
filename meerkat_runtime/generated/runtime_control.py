# generated from spec/lifecycle.yaml — edit the spec, not this file.
# Regenerate with `make generate` (python -m codegen generate).
"""The runtime_control authority: The phase of one runtime (docs/behaviour.md
section 5): attach, runs, retire and drain, reset, stop, destroy, recycle,
recover. A run returns to the phase it started from (retired and attached are
remembered in pre_run_state; idle, recovering or none return to idle).

Theory of operation: the authority owns the phase and the fields; nothing else
may change them. ``apply(input)`` finds the one transition enabled in the
current phase (the spec's validator proves there is at most one), updates the
fields, and returns a ``RuntimeControlTransition`` whose effects the caller
carries out. An input that is illegal here raises ``RuntimeControlError`` and
changes nothing. It is sans-IO: no clock, no ids, no store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from meerkat_runtime.errors import MeerkatError
from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.ids import RunId


class RuntimeState(enum.Enum):
    """Phases of the runtime_control machine."""

    INITIALIZING = "initializing"
    """Created, not yet initialised (drivers start idle)."""
    IDLE = "idle"
    """Accepting input; no executor attached, no run."""
    ATTACHED = "attached"
    """Accepting input; an executor (runtime loop) is attached."""
    RUNNING = "running"
    """A run is in progress."""
    RECOVERING = "recovering"
    """Recovering or recycling; not accepting input."""
    RETIRED = "retired"
    """Refusing new input; queued work may still be drained."""
    STOPPED = "stopped"
    """Stopped; only destroy remains."""
    DESTROYED = "destroyed"
    """Gone for good."""

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"

    def can_accept_input(self) -> bool:
        return self in _CAN_ACCEPT_INPUT

    def can_process_queue(self) -> bool:
        return self in _CAN_PROCESS_QUEUE

    def is_idle_or_attached(self) -> bool:
        return self in _IS_IDLE_OR_ATTACHED


_TERMINAL = frozenset(
    {
        RuntimeState.STOPPED,
        RuntimeState.DESTROYED,
    }
)
_CAN_ACCEPT_INPUT = frozenset(
    {
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RUNNING,
    }
)
_CAN_PROCESS_QUEUE = frozenset(
    {
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RETIRED,
    }
)
_IS_IDLE_OR_ATTACHED = frozenset(
    {
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
    }
)
# The phases a handler's transitions fire from, when more than one: a set
# built once, not a tuple of enum lookups per call.
_FROM_0 = frozenset(
    {
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
    }
)
_FROM_1 = frozenset(
    {
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RUNNING,
    }
)
_FROM_2 = frozenset(
    {
        RuntimeState.INITIALIZING,
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RECOVERING,
        RuntimeState.RETIRED,
    }
)
_FROM_3 = frozenset(
    {
        RuntimeState.INITIALIZING,
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RUNNING,
        RuntimeState.RECOVERING,
        RuntimeState.RETIRED,
    }
)
_FROM_4 = frozenset(
    {
        RuntimeState.INITIALIZING,
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RUNNING,
        RuntimeState.RECOVERING,
        RuntimeState.RETIRED,
        RuntimeState.STOPPED,
    }
)
_FROM_5 = frozenset(
    {
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RETIRED,
    }
)
_FROM_6 = frozenset(
    {
        RuntimeState.IDLE,
        RuntimeState.ATTACHED,
        RuntimeState.RUNNING,
        RuntimeState.RECOVERING,
        RuntimeState.RETIRED,
        RuntimeState.STOPPED,
        RuntimeState.DESTROYED,
    }
)


# ---------------------------------------------------------------- inputs


class RuntimeControlInput(msgspec.Struct, frozen=True):
    """Base of the inputs of runtime_control; variants are nested names."""

    Initialize: ClassVar[type[Initialize]]
    AttachExecutor: ClassVar[type[AttachExecutor]]
    DetachExecutor: ClassVar[type[DetachExecutor]]
    BeginRun: ClassVar[type[BeginRun]]
    RunCompleted: ClassVar[type[RunCompleted]]
    RunFailed: ClassVar[type[RunFailed]]
    RunCancelled: ClassVar[type[RunCancelled]]
    RecoverRequested: ClassVar[type[RecoverRequested]]
    RecoverySucceeded: ClassVar[type[RecoverySucceeded]]
    RetireRequested: ClassVar[type[RetireRequested]]
    ResetRequested: ClassVar[type[ResetRequested]]
    StopRequested: ClassVar[type[StopRequested]]
    DestroyRequested: ClassVar[type[DestroyRequested]]
    ResumeRequested: ClassVar[type[ResumeRequested]]
    RecycleRequested: ClassVar[type[RecycleRequested]]
    RecycleSucceeded: ClassVar[type[RecycleSucceeded]]
    AdmissionAccepted: ClassVar[type[AdmissionAccepted]]
    WorkWaiting: ClassVar[type[WorkWaiting]]


class Initialize(RuntimeControlInput, frozen=True):
    pass


class AttachExecutor(RuntimeControlInput, frozen=True):
    pass


class DetachExecutor(RuntimeControlInput, frozen=True):
    pass


class BeginRun(RuntimeControlInput, frozen=True):
    run_id: RunId


class RunCompleted(RuntimeControlInput, frozen=True):
    run_id: RunId


class RunFailed(RuntimeControlInput, frozen=True):
    run_id: RunId


class RunCancelled(RuntimeControlInput, frozen=True):
    run_id: RunId


class RecoverRequested(RuntimeControlInput, frozen=True):
    pass


class RecoverySucceeded(RuntimeControlInput, frozen=True):
    pass


class RetireRequested(RuntimeControlInput, frozen=True):
    pass


class ResetRequested(RuntimeControlInput, frozen=True):
    pass


class StopRequested(RuntimeControlInput, frozen=True):
    pass


class DestroyRequested(RuntimeControlInput, frozen=True):
    pass


class ResumeRequested(RuntimeControlInput, frozen=True):
    pass


class RecycleRequested(RuntimeControlInput, frozen=True):
    pass


class RecycleSucceeded(RuntimeControlInput, frozen=True):
    pass


class AdmissionAccepted(RuntimeControlInput, frozen=True):
    handling_mode: HandlingMode
    wake_if_idle: bool


class WorkWaiting(RuntimeControlInput, frozen=True):
    pass


RuntimeControlInput.Initialize = Initialize
RuntimeControlInput.AttachExecutor = AttachExecutor
RuntimeControlInput.DetachExecutor = DetachExecutor
RuntimeControlInput.BeginRun = BeginRun
RuntimeControlInput.RunCompleted = RunCompleted
RuntimeControlInput.RunFailed = RunFailed
RuntimeControlInput.RunCancelled = RunCancelled
RuntimeControlInput.RecoverRequested = RecoverRequested
RuntimeControlInput.RecoverySucceeded = RecoverySucceeded
RuntimeControlInput.RetireRequested = RetireRequested
RuntimeControlInput.ResetRequested = ResetRequested
RuntimeControlInput.StopRequested = StopRequested
RuntimeControlInput.DestroyRequested = DestroyRequested
RuntimeControlInput.ResumeRequested = ResumeRequested
RuntimeControlInput.RecycleRequested = RecycleRequested
RuntimeControlInput.RecycleSucceeded = RecycleSucceeded
RuntimeControlInput.AdmissionAccepted = AdmissionAccepted
RuntimeControlInput.WorkWaiting = WorkWaiting


# ---------------------------------------------------------------- effects


class RuntimeControlEffect(msgspec.Struct, frozen=True):
    """Base of the effects a transition asks its caller to carry out."""

    SignalWake: ClassVar[type[SignalWake]]
    SignalImmediateProcess: ClassVar[type[SignalImmediateProcess]]
    WithdrawSignals: ClassVar[type[WithdrawSignals]]
    AnnouncePhaseChange: ClassVar[type[AnnouncePhaseChange]]


class SignalWake(RuntimeControlEffect, frozen=True):
    pass


class SignalImmediateProcess(RuntimeControlEffect, frozen=True):
    pass


class WithdrawSignals(RuntimeControlEffect, frozen=True):
    pass


class AnnouncePhaseChange(RuntimeControlEffect, frozen=True):
    pass


RuntimeControlEffect.SignalWake = SignalWake
RuntimeControlEffect.SignalImmediateProcess = SignalImmediateProcess
RuntimeControlEffect.WithdrawSignals = WithdrawSignals
RuntimeControlEffect.AnnouncePhaseChange = AnnouncePhaseChange


# ---------------------------------------------------------------- results


class RuntimeControlTransition(msgspec.Struct, frozen=True):
    """What one ``apply`` did: the spec's transition name, phases and effects."""

    name: str
    from_phase: RuntimeState
    next_phase: RuntimeState
    effects: tuple[RuntimeControlEffect, ...]


class RuntimeControlSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The authority's whole state, for persistence and checkpoints."""

    phase: RuntimeState
    current_run_id: RunId | None = None
    pre_run_state: RuntimeState | None = None


class RuntimeControlError(MeerkatError):
    """An input the machine refuses in its current phase; nothing changed.

    ``state`` is the phase, ``input`` the refused input and ``guards`` the
    guards that did not hold (empty when no transition exists at all).
    """

    TerminalState: ClassVar[type[RuntimeControlTerminalStateError]]
    InvalidTransition: ClassVar[type[RuntimeControlInvalidTransitionError]]
    GuardFailed: ClassVar[type[RuntimeControlGuardFailedError]]

    def __init__(
        self,
        state: RuntimeState,
        input: RuntimeControlInput,
        guards: tuple[str, ...] = (),
    ) -> None:
        self.state = state
        self.input = input
        self.guards = guards
        super().__init__(self.describe())

    def describe(self) -> str:
        return f"{type(self.input).__name__} is not allowed in {self.state.value}"


class RuntimeControlTerminalStateError(RuntimeControlError):
    def describe(self) -> str:
        name = type(self.input).__name__
        return f"{name} refused: {self.state.value} is terminal"


class RuntimeControlInvalidTransitionError(RuntimeControlError):
    def describe(self) -> str:
        name = type(self.input).__name__
        return f"invalid transition: {name} from {self.state.value}"


class RuntimeControlGuardFailedError(RuntimeControlError):
    def describe(self) -> str:
        name = type(self.input).__name__
        failed = ", ".join(self.guards)
        return f"{name} from {self.state.value}: guard failed: {failed}"


RuntimeControlError.TerminalState = RuntimeControlTerminalStateError
RuntimeControlError.InvalidTransition = RuntimeControlInvalidTransitionError
RuntimeControlError.GuardFailed = RuntimeControlGuardFailedError


# ---------------------------------------------------------------- authority


class RuntimeControlAuthority:
    """The only code that changes a runtime_control phase or field."""

    __slots__ = (
        "_current_run_id",
        "_phase",
        "_pre_run_state",
    )

    def __init__(self) -> None:
        self._phase = RuntimeState.INITIALIZING
        self._current_run_id: RunId | None = None
        self._pre_run_state: RuntimeState | None = None

    @classmethod
    def restore(cls, snapshot: RuntimeControlSnapshot) -> RuntimeControlAuthority:
        """Rebuild an authority exactly from stored state (no transition)."""
        self = cls.__new__(cls)
        self._phase = snapshot.phase
        self._current_run_id = snapshot.current_run_id
        self._pre_run_state = snapshot.pre_run_state
        return self

    def copy(self) -> RuntimeControlAuthority:
        """An independent authority in the same state (for checkpoints)."""
        return type(self).restore(self.snapshot())

    def snapshot(self) -> RuntimeControlSnapshot:
        return RuntimeControlSnapshot(
            phase=self._phase,
            current_run_id=self._current_run_id,
            pre_run_state=self._pre_run_state,
        )

    def phase(self) -> RuntimeState:
        return self._phase

    def current_run_id(self) -> RunId | None:
        return self._current_run_id

    def pre_run_state(self) -> RuntimeState | None:
        return self._pre_run_state

    def __repr__(self) -> str:
        return f"RuntimeControlAuthority.restore({self.snapshot()!r})"

    def stored_phase(self) -> RuntimeState:
        """The phase a store keeps for the current one (the spec's ``stored_as``)."""
        phase = self._phase
        if phase is RuntimeState.ATTACHED:
            return RuntimeState.IDLE
        if phase is RuntimeState.RUNNING:
            return (
                RuntimeState.RETIRED
                if (self._pre_run_state is RuntimeState.RETIRED)
                else self._phase
            )
        return phase

    def can_accept(self, inp: RuntimeControlInput) -> bool:
        """Whether ``apply(inp)`` would succeed; changes nothing."""
        handler = _HANDLERS.get(type(inp))
        if handler is None:
            raise self._not_an_input(inp)
        try:
            handler(self, inp, False)
        except RuntimeControlError:
            return False
        return True

    def apply(self, inp: RuntimeControlInput) -> RuntimeControlTransition:
        """Fire the transition ``inp`` enables, or raise and change nothing."""
        handler = _HANDLERS.get(type(inp))
        if handler is None:
            raise self._not_an_input(inp)
        return handler(self, inp, True)  # type: ignore[no-any-return]

    def violated_invariants(self) -> tuple[str, ...]:
        """Names of the spec invariants the current state breaks (always none)."""
        checks = (
            (
                "running_implies_active_run",
                (
                    (self._phase is not RuntimeState.RUNNING)
                    or (self._current_run_id is not None)
                ),
            ),
            (
                "active_run_only_while_running_or_retired",
                (
                    (self._current_run_id is None)
                    or (self._phase in (RuntimeState.RUNNING, RuntimeState.RETIRED))
                ),
            ),
            (
                "pre_run_state_is_never_running",
                (self._pre_run_state is not RuntimeState.RUNNING),
            ),
            (
                "terminal_phases_hold_no_run",
                (
                    (self._phase not in (RuntimeState.STOPPED, RuntimeState.DESTROYED))
                    or (
                        (self._current_run_id is None) and (self._pre_run_state is None)
                    )
                ),
            ),
        )
        return tuple(name for name, ok in checks if not ok)

    def is_consistent(self) -> bool:
        """Whether every invariant holds and every bounded field is within its
        declared range (``FIELD_RANGES``): one cheap test for many stored
        records; ``violated_invariants`` says which invariant failed."""
        return (
            (
                (self._phase is not RuntimeState.RUNNING)
                or (self._current_run_id is not None)
            )
            and (
                (self._current_run_id is None)
                or (self._phase in (RuntimeState.RUNNING, RuntimeState.RETIRED))
            )
            and (self._pre_run_state is not RuntimeState.RUNNING)
            and (
                (self._phase not in (RuntimeState.STOPPED, RuntimeState.DESTROYED))
                or ((self._current_run_id is None) and (self._pre_run_state is None))
            )
        )

    @staticmethod
    def _not_an_input(inp: object) -> TypeError:
        return TypeError(f"not an input of runtime_control: {inp!r}")

    def _refuse(
        self, inp: RuntimeControlInput, guards: tuple[tuple[str, bool], ...] = ()
    ) -> RuntimeControlError:
        failed = tuple(name for name, ok in guards if not ok)
        if guards:
            return RuntimeControlGuardFailedError(self._phase, inp, failed)
        if self._phase in _TERMINAL:
            return RuntimeControlTerminalStateError(self._phase, inp)
        return RuntimeControlInvalidTransitionError(self._phase, inp)

    def _on_initialize(
        self, inp: Initialize, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.INITIALIZING:
            if not fire:
                return None
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition("initialize", phase, RuntimeState.IDLE, ())
        raise self._refuse(inp)

    def _on_attach_executor(
        self, inp: AttachExecutor, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.IDLE:
            if not fire:
                return None
            self._phase = RuntimeState.ATTACHED
            return RuntimeControlTransition(
                "attach_from_idle",
                phase,
                RuntimeState.ATTACHED,
                (AnnouncePhaseChange(),),
            )
        raise self._refuse(inp)

    def _on_detach_executor(
        self, inp: DetachExecutor, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.ATTACHED:
            if not fire:
                return None
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "detach_to_idle", phase, RuntimeState.IDLE, (AnnouncePhaseChange(),)
            )
        raise self._refuse(inp)

    def _on_begin_run(
        self, inp: BeginRun, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.IDLE:
            if self._current_run_id is None:
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = inp.run_id, self._phase
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_idle", phase, RuntimeState.RUNNING, ()
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        if phase is RuntimeState.ATTACHED:
            if self._current_run_id is None:
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = inp.run_id, self._phase
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_attached", phase, RuntimeState.RUNNING, ()
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        if phase is RuntimeState.RECOVERING:
            if self._current_run_id is None:
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = inp.run_id, self._phase
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_recovering", phase, RuntimeState.RUNNING, ()
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        if phase is RuntimeState.RETIRED:
            if self._current_run_id is None:
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = inp.run_id, self._phase
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_retired", phase, RuntimeState.RUNNING, ()
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        raise self._refuse(inp)

    def _on_run_completed(
        self, inp: RunCompleted, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.RUNNING:
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state not in (RuntimeState.ATTACHED, RuntimeState.RETIRED)
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.IDLE
                return RuntimeControlTransition(
                    "run_completed_to_idle", phase, RuntimeState.IDLE, ()
                )
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state is RuntimeState.ATTACHED
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.ATTACHED
                return RuntimeControlTransition(
                    "run_completed_to_attached", phase, RuntimeState.ATTACHED, ()
                )
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state is RuntimeState.RETIRED
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.RETIRED
                return RuntimeControlTransition(
                    "run_completed_to_retired", phase, RuntimeState.RETIRED, ()
                )
            raise self._refuse(
                inp,
                (
                    ("active_run_matches", (self._current_run_id == inp.run_id)),
                    (
                        "pre_run_state_is_idle",
                        (
                            self._pre_run_state
                            not in (RuntimeState.ATTACHED, RuntimeState.RETIRED)
                        ),
                    ),
                    (
                        "pre_run_state_is_attached",
                        (self._pre_run_state is RuntimeState.ATTACHED),
                    ),
                    (
                        "pre_run_state_is_retired",
                        (self._pre_run_state is RuntimeState.RETIRED),
                    ),
                ),
            )
        if phase is RuntimeState.RETIRED:
            if self._current_run_id == inp.run_id:
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.RETIRED
                return RuntimeControlTransition(
                    "run_completed_while_retired", phase, RuntimeState.RETIRED, ()
                )
            raise self._refuse(
                inp,
                (("active_run_matches", (self._current_run_id == inp.run_id)),),
            )
        raise self._refuse(inp)

    def _on_run_failed(
        self, inp: RunFailed, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.RUNNING:
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state not in (RuntimeState.ATTACHED, RuntimeState.RETIRED)
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.IDLE
                return RuntimeControlTransition(
                    "run_failed_to_idle", phase, RuntimeState.IDLE, ()
                )
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state is RuntimeState.ATTACHED
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.ATTACHED
                return RuntimeControlTransition(
                    "run_failed_to_attached", phase, RuntimeState.ATTACHED, ()
                )
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state is RuntimeState.RETIRED
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.RETIRED
                return RuntimeControlTransition(
                    "run_failed_to_retired", phase, RuntimeState.RETIRED, ()
                )
            raise self._refuse(
                inp,
                (
                    ("active_run_matches", (self._current_run_id == inp.run_id)),
                    (
                        "pre_run_state_is_idle",
                        (
                            self._pre_run_state
                            not in (RuntimeState.ATTACHED, RuntimeState.RETIRED)
                        ),
                    ),
                    (
                        "pre_run_state_is_attached",
                        (self._pre_run_state is RuntimeState.ATTACHED),
                    ),
                    (
                        "pre_run_state_is_retired",
                        (self._pre_run_state is RuntimeState.RETIRED),
                    ),
                ),
            )
        if phase is RuntimeState.RETIRED:
            if self._current_run_id == inp.run_id:
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.RETIRED
                return RuntimeControlTransition(
                    "run_failed_while_retired", phase, RuntimeState.RETIRED, ()
                )
            raise self._refuse(
                inp,
                (("active_run_matches", (self._current_run_id == inp.run_id)),),
            )
        raise self._refuse(inp)

    def _on_run_cancelled(
        self, inp: RunCancelled, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.RUNNING:
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state not in (RuntimeState.ATTACHED, RuntimeState.RETIRED)
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.IDLE
                return RuntimeControlTransition(
                    "run_cancelled_to_idle", phase, RuntimeState.IDLE, ()
                )
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state is RuntimeState.ATTACHED
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.ATTACHED
                return RuntimeControlTransition(
                    "run_cancelled_to_attached", phase, RuntimeState.ATTACHED, ()
                )
            if (self._current_run_id == inp.run_id) and (
                self._pre_run_state is RuntimeState.RETIRED
            ):
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.RETIRED
                return RuntimeControlTransition(
                    "run_cancelled_to_retired", phase, RuntimeState.RETIRED, ()
                )
            raise self._refuse(
                inp,
                (
                    ("active_run_matches", (self._current_run_id == inp.run_id)),
                    (
                        "pre_run_state_is_idle",
                        (
                            self._pre_run_state
                            not in (RuntimeState.ATTACHED, RuntimeState.RETIRED)
                        ),
                    ),
                    (
                        "pre_run_state_is_attached",
                        (self._pre_run_state is RuntimeState.ATTACHED),
                    ),
                    (
                        "pre_run_state_is_retired",
                        (self._pre_run_state is RuntimeState.RETIRED),
                    ),
                ),
            )
        if phase is RuntimeState.RETIRED:
            if self._current_run_id == inp.run_id:
                if not fire:
                    return None
                self._current_run_id, self._pre_run_state = None, None
                self._phase = RuntimeState.RETIRED
                return RuntimeControlTransition(
                    "run_cancelled_while_retired", phase, RuntimeState.RETIRED, ()
                )
            raise self._refuse(
                inp,
                (("active_run_matches", (self._current_run_id == inp.run_id)),),
            )
        raise self._refuse(inp)

    def _on_recover_requested(
        self, inp: RecoverRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_0:
            if not fire:
                return None
            self._pre_run_state = self._phase
            self._phase = RuntimeState.RECOVERING
            return RuntimeControlTransition(
                "recover_requested", phase, RuntimeState.RECOVERING, ()
            )
        if phase is RuntimeState.RUNNING:
            if not fire:
                return None
            self._current_run_id, self._pre_run_state = None, None
            self._phase = RuntimeState.RECOVERING
            return RuntimeControlTransition(
                "recover_requested_from_running", phase, RuntimeState.RECOVERING, ()
            )
        raise self._refuse(inp)

    def _on_recovery_succeeded(
        self, inp: RecoverySucceeded, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.RECOVERING:
            if not fire:
                return None
            self._current_run_id, self._pre_run_state = None, None
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "recovery_succeeded", phase, RuntimeState.IDLE, ()
            )
        raise self._refuse(inp)

    def _on_retire_requested(
        self, inp: RetireRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_1:
            if not fire:
                return None
            self._phase = RuntimeState.RETIRED
            return RuntimeControlTransition(
                "retire_requested",
                phase,
                RuntimeState.RETIRED,
                (AnnouncePhaseChange(),),
            )
        raise self._refuse(inp)

    def _on_reset_requested(
        self, inp: ResetRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_2:
            if not fire:
                return None
            self._current_run_id, self._pre_run_state = None, None
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "reset_requested",
                phase,
                RuntimeState.IDLE,
                (
                    WithdrawSignals(),
                    AnnouncePhaseChange(),
                ),
            )
        raise self._refuse(inp)

    def _on_stop_requested(
        self, inp: StopRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_3:
            if not fire:
                return None
            self._current_run_id, self._pre_run_state = None, None
            self._phase = RuntimeState.STOPPED
            return RuntimeControlTransition(
                "stop_requested", phase, RuntimeState.STOPPED, (AnnouncePhaseChange(),)
            )
        raise self._refuse(inp)

    def _on_destroy_requested(
        self, inp: DestroyRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_4:
            if not fire:
                return None
            self._current_run_id, self._pre_run_state = None, None
            self._phase = RuntimeState.DESTROYED
            return RuntimeControlTransition(
                "destroy_requested",
                phase,
                RuntimeState.DESTROYED,
                (AnnouncePhaseChange(),),
            )
        raise self._refuse(inp)

    def _on_resume_requested(
        self, inp: ResumeRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.RECOVERING:
            if not fire:
                return None
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "resume_requested", phase, RuntimeState.IDLE, ()
            )
        raise self._refuse(inp)

    def _on_recycle_requested(
        self, inp: RecycleRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_5:
            if self._current_run_id is None:
                if not fire:
                    return None
                self._pre_run_state = self._phase
                self._phase = RuntimeState.RECOVERING
                return RuntimeControlTransition(
                    "recycle_requested",
                    phase,
                    RuntimeState.RECOVERING,
                    (AnnouncePhaseChange(),),
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        raise self._refuse(inp)

    def _on_recycle_succeeded(
        self, inp: RecycleSucceeded, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase is RuntimeState.RECOVERING:
            if not fire:
                return None
            self._current_run_id, self._pre_run_state = None, None
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "recycle_succeeded", phase, RuntimeState.IDLE, (AnnouncePhaseChange(),)
            )
        raise self._refuse(inp)

    def _on_admission_accepted(
        self, inp: AdmissionAccepted, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_1:
            if inp.handling_mode is HandlingMode.STEER:
                if not fire:
                    return None
                return RuntimeControlTransition(
                    "admission_steer",
                    phase,
                    phase,
                    (
                        SignalWake(),
                        SignalImmediateProcess(),
                    ),
                )
            if (inp.handling_mode is HandlingMode.QUEUE) and inp.wake_if_idle:
                if not fire:
                    return None
                return RuntimeControlTransition(
                    "admission_queue_wake", phase, phase, (SignalWake(),)
                )
            if (inp.handling_mode is HandlingMode.QUEUE) and (not inp.wake_if_idle):
                if not fire:
                    return None
                return RuntimeControlTransition(
                    "admission_queue_quiet", phase, phase, ()
                )
            raise self._refuse(
                inp,
                (
                    ("admitted_to_steer", (inp.handling_mode is HandlingMode.STEER)),
                    ("admitted_to_queue", (inp.handling_mode is HandlingMode.QUEUE)),
                    ("asks_to_wake", inp.wake_if_idle),
                    ("asks_not_to_wake", (not inp.wake_if_idle)),
                ),
            )
        raise self._refuse(inp)

    def _on_work_waiting(
        self, inp: WorkWaiting, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in _FROM_6:
            if not fire:
                return None
            return RuntimeControlTransition(
                "work_waiting", phase, phase, (SignalWake(),)
            )
        raise self._refuse(inp)


# The handler returns None only when called with fire=False (can_accept).
_Handler = Callable[[RuntimeControlAuthority, Any, bool], Any]

_HANDLERS: dict[type[RuntimeControlInput], _Handler] = {
    Initialize: RuntimeControlAuthority._on_initialize,
    AttachExecutor: RuntimeControlAuthority._on_attach_executor,
    DetachExecutor: RuntimeControlAuthority._on_detach_executor,
    BeginRun: RuntimeControlAuthority._on_begin_run,
    RunCompleted: RuntimeControlAuthority._on_run_completed,
    RunFailed: RuntimeControlAuthority._on_run_failed,
    RunCancelled: RuntimeControlAuthority._on_run_cancelled,
    RecoverRequested: RuntimeControlAuthority._on_recover_requested,
    RecoverySucceeded: RuntimeControlAuthority._on_recovery_succeeded,
    RetireRequested: RuntimeControlAuthority._on_retire_requested,
    ResetRequested: RuntimeControlAuthority._on_reset_requested,
    StopRequested: RuntimeControlAuthority._on_stop_requested,
    DestroyRequested: RuntimeControlAuthority._on_destroy_requested,
    ResumeRequested: RuntimeControlAuthority._on_resume_requested,
    RecycleRequested: RuntimeControlAuthority._on_recycle_requested,
    RecycleSucceeded: RuntimeControlAuthority._on_recycle_succeeded,
    AdmissionAccepted: RuntimeControlAuthority._on_admission_accepted,
    WorkWaiting: RuntimeControlAuthority._on_work_waiting,
}

RESTORE_INPUTS: dict[RuntimeState, tuple[RuntimeControlInput, ...]] = {
    RuntimeState.RETIRED: (RetireRequested(),),
    RuntimeState.STOPPED: (StopRequested(),),
    RuntimeState.DESTROYED: (DestroyRequested(),),
}
"""The inputs that bring a recovered runtime back to a stored phase (the
spec's ``restore``); a stored phase not listed comes back as it is."""

TRANSITION_INPUTS: dict[str, type[RuntimeControlInput]] = {
    "initialize": Initialize,
    "attach_from_idle": AttachExecutor,
    "detach_to_idle": DetachExecutor,
    "begin_run_from_idle": BeginRun,
    "begin_run_from_attached": BeginRun,
    "begin_run_from_retired": BeginRun,
    "begin_run_from_recovering": BeginRun,
    "run_completed_to_idle": RunCompleted,
    "run_completed_to_attached": RunCompleted,
    "run_completed_to_retired": RunCompleted,
    "run_failed_to_idle": RunFailed,
    "run_failed_to_attached": RunFailed,
    "run_failed_to_retired": RunFailed,
    "run_cancelled_to_idle": RunCancelled,
    "run_cancelled_to_attached": RunCancelled,
    "run_cancelled_to_retired": RunCancelled,
    "run_completed_while_retired": RunCompleted,
    "run_failed_while_retired": RunFailed,
    "run_cancelled_while_retired": RunCancelled,
    "recover_requested": RecoverRequested,
    "recover_requested_from_running": RecoverRequested,
    "recovery_succeeded": RecoverySucceeded,
    "resume_requested": ResumeRequested,
    "recycle_requested": RecycleRequested,
    "recycle_succeeded": RecycleSucceeded,
    "retire_requested": RetireRequested,
    "reset_requested": ResetRequested,
    "stop_requested": StopRequested,
    "destroy_requested": DestroyRequested,
    "admission_steer": AdmissionAccepted,
    "admission_queue_wake": AdmissionAccepted,
    "admission_queue_quiet": AdmissionAccepted,
    "work_waiting": WorkWaiting,
}
"""The input that fires each transition, by the transition's name (the name
a stored history records), so that a history can be replayed."""

FIELD_RANGES: dict[str, tuple[int, int]] = {}
"""The declared range of each bounded integer field (inclusive)."""

TRANSITION_COUNT = 65
"""(phase, transition) pairs: a transition from three phases counts three."""
