# generated from spec/lifecycle.yaml — edit the spec, not this file.
# Regenerate with `make generate` (python -m codegen generate).
"""The runtime_control authority: The phase of one runtime (BEHAVIOUR.md section
5): attach, runs, retire and drain, reset, stop, destroy, recycle, recover. A
run returns to the phase it started from (retired and attached are remembered
in pre_run_state; idle, recovering or none return to idle).

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
from meerkat_runtime.generated.spec_types import AdmissionEffect, HandlingMode
from meerkat_runtime.ids import InputId, RunId


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
    ExternalToolDeltaReceived: ClassVar[type[ExternalToolDeltaReceived]]
    SubmitWork: ClassVar[type[SubmitWork]]
    AdmissionAccepted: ClassVar[type[AdmissionAccepted]]
    AdmissionRejected: ClassVar[type[AdmissionRejected]]
    AdmissionDeduplicated: ClassVar[type[AdmissionDeduplicated]]


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


class ExternalToolDeltaReceived(RuntimeControlInput, frozen=True):
    pass


class SubmitWork(RuntimeControlInput, frozen=True):
    work_id: InputId
    content_shape: str
    handling_mode: HandlingMode
    request_id: str | None
    reservation_key: str | None


class AdmissionAccepted(RuntimeControlInput, frozen=True):
    work_id: InputId
    content_shape: str
    handling_mode: HandlingMode
    request_id: str | None
    reservation_key: str | None
    admission_effect: AdmissionEffect


class AdmissionRejected(RuntimeControlInput, frozen=True):
    work_id: InputId
    reason: str


class AdmissionDeduplicated(RuntimeControlInput, frozen=True):
    work_id: InputId
    existing_work_id: InputId


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
RuntimeControlInput.ExternalToolDeltaReceived = ExternalToolDeltaReceived
RuntimeControlInput.SubmitWork = SubmitWork
RuntimeControlInput.AdmissionAccepted = AdmissionAccepted
RuntimeControlInput.AdmissionRejected = AdmissionRejected
RuntimeControlInput.AdmissionDeduplicated = AdmissionDeduplicated


# ---------------------------------------------------------------- effects


class RuntimeControlEffect(msgspec.Struct, frozen=True):
    """Base of the effects a transition asks its caller to carry out."""

    ResolveAdmission: ClassVar[type[ResolveAdmission]]
    SubmitAdmittedIngressEffect: ClassVar[type[SubmitAdmittedIngressEffect]]
    SubmitRunPrimitive: ClassVar[type[SubmitRunPrimitive]]
    SignalWake: ClassVar[type[SignalWake]]
    SignalImmediateProcess: ClassVar[type[SignalImmediateProcess]]
    EmitRuntimeNotice: ClassVar[type[EmitRuntimeNotice]]
    ResolveCompletionAsTerminated: ClassVar[type[ResolveCompletionAsTerminated]]
    ApplyControlPlaneCommand: ClassVar[type[ApplyControlPlaneCommand]]
    InitiateRecycle: ClassVar[type[InitiateRecycle]]


class ResolveAdmission(RuntimeControlEffect, frozen=True):
    work_id: InputId


class SubmitAdmittedIngressEffect(RuntimeControlEffect, frozen=True):
    work_id: InputId
    content_shape: str
    handling_mode: HandlingMode
    request_id: str | None
    reservation_key: str | None
    admission_effect: AdmissionEffect


class SubmitRunPrimitive(RuntimeControlEffect, frozen=True):
    run_id: RunId


class SignalWake(RuntimeControlEffect, frozen=True):
    pass


class SignalImmediateProcess(RuntimeControlEffect, frozen=True):
    pass


class EmitRuntimeNotice(RuntimeControlEffect, frozen=True):
    kind: str
    detail: str


class ResolveCompletionAsTerminated(RuntimeControlEffect, frozen=True):
    reason: str


class ApplyControlPlaneCommand(RuntimeControlEffect, frozen=True):
    command: str


class InitiateRecycle(RuntimeControlEffect, frozen=True):
    pass


RuntimeControlEffect.ResolveAdmission = ResolveAdmission
RuntimeControlEffect.SubmitAdmittedIngressEffect = SubmitAdmittedIngressEffect
RuntimeControlEffect.SubmitRunPrimitive = SubmitRunPrimitive
RuntimeControlEffect.SignalWake = SignalWake
RuntimeControlEffect.SignalImmediateProcess = SignalImmediateProcess
RuntimeControlEffect.EmitRuntimeNotice = EmitRuntimeNotice
RuntimeControlEffect.ResolveCompletionAsTerminated = ResolveCompletionAsTerminated
RuntimeControlEffect.ApplyControlPlaneCommand = ApplyControlPlaneCommand
RuntimeControlEffect.InitiateRecycle = InitiateRecycle


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
    wake_pending: bool = False
    process_pending: bool = False


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
        "_process_pending",
        "_wake_pending",
    )

    def __init__(self) -> None:
        self._phase = RuntimeState.INITIALIZING
        self._current_run_id: RunId | None = None
        self._pre_run_state: RuntimeState | None = None
        self._wake_pending: bool = False
        self._process_pending: bool = False

    @classmethod
    def restore(cls, snapshot: RuntimeControlSnapshot) -> RuntimeControlAuthority:
        """Rebuild an authority exactly from stored state (no transition)."""
        self = cls.__new__(cls)
        self._phase = snapshot.phase
        self._current_run_id = snapshot.current_run_id
        self._pre_run_state = snapshot.pre_run_state
        self._wake_pending = snapshot.wake_pending
        self._process_pending = snapshot.process_pending
        return self

    def copy(self) -> RuntimeControlAuthority:
        """An independent authority in the same state (for checkpoints)."""
        return type(self).restore(self.snapshot())

    def snapshot(self) -> RuntimeControlSnapshot:
        return RuntimeControlSnapshot(
            phase=self._phase,
            current_run_id=self._current_run_id,
            pre_run_state=self._pre_run_state,
            wake_pending=self._wake_pending,
            process_pending=self._process_pending,
        )

    def phase(self) -> RuntimeState:
        return self._phase

    def current_run_id(self) -> RunId | None:
        return self._current_run_id

    def pre_run_state(self) -> RuntimeState | None:
        return self._pre_run_state

    def wake_pending(self) -> bool:
        return self._wake_pending

    def process_pending(self) -> bool:
        return self._process_pending

    def __repr__(self) -> str:
        return f"RuntimeControlAuthority.restore({self.snapshot()!r})"

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
                "attach_from_idle", phase, RuntimeState.ATTACHED, ()
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
                "detach_to_idle", phase, RuntimeState.IDLE, ()
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
                (
                    self._current_run_id,
                    self._pre_run_state,
                    self._wake_pending,
                    self._process_pending,
                ) = inp.run_id, self._phase, False, False
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_idle",
                    phase,
                    RuntimeState.RUNNING,
                    (SubmitRunPrimitive(run_id=inp.run_id),),
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        if phase is RuntimeState.ATTACHED:
            if self._current_run_id is None:
                if not fire:
                    return None
                (
                    self._current_run_id,
                    self._pre_run_state,
                    self._wake_pending,
                    self._process_pending,
                ) = inp.run_id, self._phase, False, False
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_attached",
                    phase,
                    RuntimeState.RUNNING,
                    (SubmitRunPrimitive(run_id=inp.run_id),),
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        if phase is RuntimeState.RECOVERING:
            if self._current_run_id is None:
                if not fire:
                    return None
                (
                    self._current_run_id,
                    self._pre_run_state,
                    self._wake_pending,
                    self._process_pending,
                ) = inp.run_id, self._phase, False, False
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_recovering",
                    phase,
                    RuntimeState.RUNNING,
                    (SubmitRunPrimitive(run_id=inp.run_id),),
                )
            raise self._refuse(
                inp,
                (("no_active_run", (self._current_run_id is None)),),
            )
        if phase is RuntimeState.RETIRED:
            if self._current_run_id is None:
                if not fire:
                    return None
                (
                    self._current_run_id,
                    self._pre_run_state,
                    self._wake_pending,
                    self._process_pending,
                ) = inp.run_id, self._phase, False, False
                self._phase = RuntimeState.RUNNING
                return RuntimeControlTransition(
                    "begin_run_from_retired",
                    phase,
                    RuntimeState.RUNNING,
                    (SubmitRunPrimitive(run_id=inp.run_id),),
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
        if phase in (RuntimeState.IDLE, RuntimeState.ATTACHED):
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
            (
                self._current_run_id,
                self._pre_run_state,
                self._wake_pending,
                self._process_pending,
            ) = None, None, False, False
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "recovery_succeeded", phase, RuntimeState.IDLE, ()
            )
        raise self._refuse(inp)

    def _on_retire_requested(
        self, inp: RetireRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (RuntimeState.IDLE, RuntimeState.ATTACHED, RuntimeState.RUNNING):
            if not fire:
                return None
            self._phase = RuntimeState.RETIRED
            return RuntimeControlTransition(
                "retire_requested",
                phase,
                RuntimeState.RETIRED,
                (ApplyControlPlaneCommand(command="retire"),),
            )
        raise self._refuse(inp)

    def _on_reset_requested(
        self, inp: ResetRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (
            RuntimeState.INITIALIZING,
            RuntimeState.IDLE,
            RuntimeState.ATTACHED,
            RuntimeState.RECOVERING,
            RuntimeState.RETIRED,
        ):
            if not fire:
                return None
            (
                self._current_run_id,
                self._pre_run_state,
                self._wake_pending,
                self._process_pending,
            ) = None, None, False, False
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "reset_requested",
                phase,
                RuntimeState.IDLE,
                (
                    ApplyControlPlaneCommand(command="reset"),
                    ResolveCompletionAsTerminated(reason="reset"),
                ),
            )
        raise self._refuse(inp)

    def _on_stop_requested(
        self, inp: StopRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (
            RuntimeState.INITIALIZING,
            RuntimeState.IDLE,
            RuntimeState.ATTACHED,
            RuntimeState.RUNNING,
            RuntimeState.RECOVERING,
            RuntimeState.RETIRED,
        ):
            if not fire:
                return None
            (
                self._current_run_id,
                self._pre_run_state,
                self._wake_pending,
                self._process_pending,
            ) = None, None, False, False
            self._phase = RuntimeState.STOPPED
            return RuntimeControlTransition(
                "stop_requested",
                phase,
                RuntimeState.STOPPED,
                (
                    ApplyControlPlaneCommand(command="stop"),
                    ResolveCompletionAsTerminated(reason="stopped"),
                ),
            )
        raise self._refuse(inp)

    def _on_destroy_requested(
        self, inp: DestroyRequested, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (
            RuntimeState.INITIALIZING,
            RuntimeState.IDLE,
            RuntimeState.ATTACHED,
            RuntimeState.RUNNING,
            RuntimeState.RECOVERING,
            RuntimeState.RETIRED,
            RuntimeState.STOPPED,
        ):
            if not fire:
                return None
            (
                self._current_run_id,
                self._pre_run_state,
                self._wake_pending,
                self._process_pending,
            ) = None, None, False, False
            self._phase = RuntimeState.DESTROYED
            return RuntimeControlTransition(
                "destroy_requested",
                phase,
                RuntimeState.DESTROYED,
                (
                    ApplyControlPlaneCommand(command="destroy"),
                    ResolveCompletionAsTerminated(reason="destroyed"),
                ),
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
        if phase in (RuntimeState.IDLE, RuntimeState.ATTACHED, RuntimeState.RETIRED):
            if self._current_run_id is None:
                if not fire:
                    return None
                self._pre_run_state = self._phase
                self._phase = RuntimeState.RECOVERING
                return RuntimeControlTransition(
                    "recycle_requested",
                    phase,
                    RuntimeState.RECOVERING,
                    (InitiateRecycle(),),
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
            (
                self._current_run_id,
                self._pre_run_state,
                self._wake_pending,
                self._process_pending,
            ) = None, None, False, False
            self._phase = RuntimeState.IDLE
            return RuntimeControlTransition(
                "recycle_succeeded",
                phase,
                RuntimeState.IDLE,
                (EmitRuntimeNotice(kind="recycle", detail="succeeded"),),
            )
        raise self._refuse(inp)

    def _on_external_tool_delta_received(
        self, inp: ExternalToolDeltaReceived, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (
            RuntimeState.IDLE,
            RuntimeState.ATTACHED,
            RuntimeState.RUNNING,
            RuntimeState.RECOVERING,
            RuntimeState.RETIRED,
        ):
            if not fire:
                return None
            return RuntimeControlTransition(
                "external_tool_delta_received",
                phase,
                phase,
                (EmitRuntimeNotice(kind="external_tool_delta", detail=""),),
            )
        raise self._refuse(inp)

    def _on_submit_work(
        self, inp: SubmitWork, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (RuntimeState.IDLE, RuntimeState.ATTACHED, RuntimeState.RUNNING):
            if not fire:
                return None
            return RuntimeControlTransition(
                "submit_work", phase, phase, (ResolveAdmission(work_id=inp.work_id),)
            )
        raise self._refuse(inp)

    def _on_admission_accepted(
        self, inp: AdmissionAccepted, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (RuntimeState.IDLE, RuntimeState.ATTACHED):
            if inp.handling_mode is HandlingMode.QUEUE:
                if not fire:
                    return None
                self._wake_pending = True
                return RuntimeControlTransition(
                    "admission_accepted_idle_queue",
                    phase,
                    phase,
                    (
                        SubmitAdmittedIngressEffect(
                            work_id=inp.work_id,
                            content_shape=inp.content_shape,
                            handling_mode=inp.handling_mode,
                            request_id=inp.request_id,
                            reservation_key=inp.reservation_key,
                            admission_effect=inp.admission_effect,
                        ),
                        SignalWake(),
                    ),
                )
            if inp.handling_mode is HandlingMode.STEER:
                if not fire:
                    return None
                self._wake_pending, self._process_pending = True, True
                return RuntimeControlTransition(
                    "admission_accepted_steer",
                    phase,
                    phase,
                    (
                        SubmitAdmittedIngressEffect(
                            work_id=inp.work_id,
                            content_shape=inp.content_shape,
                            handling_mode=inp.handling_mode,
                            request_id=inp.request_id,
                            reservation_key=inp.reservation_key,
                            admission_effect=inp.admission_effect,
                        ),
                        SignalWake(),
                        SignalImmediateProcess(),
                    ),
                )
            raise self._refuse(
                inp,
                (
                    (
                        "handling_mode_is_queue",
                        (inp.handling_mode is HandlingMode.QUEUE),
                    ),
                    (
                        "handling_mode_is_steer",
                        (inp.handling_mode is HandlingMode.STEER),
                    ),
                ),
            )
        if phase is RuntimeState.RUNNING:
            if inp.handling_mode is HandlingMode.QUEUE:
                if not fire:
                    return None
                return RuntimeControlTransition(
                    "admission_accepted_running_queue",
                    phase,
                    phase,
                    (
                        SubmitAdmittedIngressEffect(
                            work_id=inp.work_id,
                            content_shape=inp.content_shape,
                            handling_mode=inp.handling_mode,
                            request_id=inp.request_id,
                            reservation_key=inp.reservation_key,
                            admission_effect=inp.admission_effect,
                        ),
                    ),
                )
            if inp.handling_mode is HandlingMode.STEER:
                if not fire:
                    return None
                self._wake_pending, self._process_pending = True, True
                return RuntimeControlTransition(
                    "admission_accepted_steer",
                    phase,
                    phase,
                    (
                        SubmitAdmittedIngressEffect(
                            work_id=inp.work_id,
                            content_shape=inp.content_shape,
                            handling_mode=inp.handling_mode,
                            request_id=inp.request_id,
                            reservation_key=inp.reservation_key,
                            admission_effect=inp.admission_effect,
                        ),
                        SignalWake(),
                        SignalImmediateProcess(),
                    ),
                )
            raise self._refuse(
                inp,
                (
                    (
                        "handling_mode_is_queue",
                        (inp.handling_mode is HandlingMode.QUEUE),
                    ),
                    (
                        "handling_mode_is_steer",
                        (inp.handling_mode is HandlingMode.STEER),
                    ),
                ),
            )
        raise self._refuse(inp)

    def _on_admission_rejected(
        self, inp: AdmissionRejected, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (RuntimeState.IDLE, RuntimeState.ATTACHED, RuntimeState.RUNNING):
            if not fire:
                return None
            return RuntimeControlTransition(
                "admission_rejected",
                phase,
                phase,
                (EmitRuntimeNotice(kind="admission_rejected", detail=inp.reason),),
            )
        raise self._refuse(inp)

    def _on_admission_deduplicated(
        self, inp: AdmissionDeduplicated, fire: bool
    ) -> RuntimeControlTransition | None:
        phase = self._phase
        if phase in (RuntimeState.IDLE, RuntimeState.ATTACHED, RuntimeState.RUNNING):
            if not fire:
                return None
            return RuntimeControlTransition(
                "admission_deduplicated",
                phase,
                phase,
                (EmitRuntimeNotice(kind="admission_deduplicated", detail=""),),
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
    ExternalToolDeltaReceived: RuntimeControlAuthority._on_external_tool_delta_received,
    SubmitWork: RuntimeControlAuthority._on_submit_work,
    AdmissionAccepted: RuntimeControlAuthority._on_admission_accepted,
    AdmissionRejected: RuntimeControlAuthority._on_admission_rejected,
    AdmissionDeduplicated: RuntimeControlAuthority._on_admission_deduplicated,
}

TRANSITION_COUNT = 69
"""(phase, transition) pairs: a transition from three phases counts three."""
