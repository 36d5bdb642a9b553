"""``RuntimeCore``: the whole runtime logic, in memory, no IO.

Theory of operation: the core owns a runtime control authority (the phase),
a ledger of input states (each wrapping an input lifecycle authority), the
queue and steer lanes, the batch staged for the current run, an event buffer
and the post-admission signal (``journal.CoreState``), plus recovery
(``recovery``), withdrawal (``withdrawal``) and running a batch
(``running``), each a mixin of its own module; this module holds
admission, control and the queries. Every operation first checks that it
is legal in the current state and only then mutates (decision 6), so an
illegal call raises and leaves everything as it was. Lifecycle phases change only through the
generated authorities; signals and phase announcements only through the
effects of the runtime-control machine (``CoreState._drive``).

Both drivers hold one: the ephemeral driver calls it directly; the persistent
driver opens a checkpoint, calls it, writes what it touched, and restores
the checkpoint if the store refuses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meerkat_runtime.driver.journal import REASON_DESTROYED, REASON_RESET
from meerkat_runtime.driver.recovery import RecoveringCore
from meerkat_runtime.driver.running import RunningCore
from meerkat_runtime.driver.running import checked_receipt as checked_receipt
from meerkat_runtime.driver.validation import (
    DEFAULT_MAX_INPUT_BYTES,
    check_structure,
    durability_violation,
    peer_mode_violation,
)
from meerkat_runtime.driver.withdrawal import WithdrawingCore
from meerkat_runtime.errors import (
    DestroyedError,
    NotReadyError,
    PendingLimitError,
    ValidationFailedError,
)
from meerkat_runtime.events import (
    InputAccepted,
    InputCoalesced,
    InputDeduplicated,
    InputQueued,
    InputSuperseded,
    RuntimeEventEnvelope,
)
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.generated.policy_table import (
    ApplyMode,
    ConsumePoint,
    PolicyDecision,
    QueueMode,
    WakeMode,
)
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import HandlingMode, InputAbandonReason
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState, InputStateRecord, PolicySnapshot
from meerkat_runtime.inputs import Input
from meerkat_runtime.ledger import Lane, lane_for
from meerkat_runtime.outcomes import (
    Accepted,
    AcceptOutcome,
    Deduplicated,
    DestroyReport,
    DurabilityViolation,
    PeerHandlingModeInvalid,
    PostAdmissionSignal,
    Rejected,
    ResetReport,
    RetireReport,
)
from meerkat_runtime.policy import DefaultPolicyTable, PolicyTable

_QUEUED = il.InputLifecycleState.QUEUED

# PD-43: the unfinished inputs one runtime holds before accepts are refused
# (back-pressure). Each costs memory in every process that recovers the
# runtime, so an unbounded queue is an outage waiting for a restart.
DEFAULT_MAX_PENDING_INPUTS = 100_000

# The four admissions the machine can be told of, built once (inputs are
# immutable values): (steer requested, the policy wakes an idle runtime).
_ADMISSIONS = {
    (steer, wake): rc.AdmissionAccepted(
        handling_mode=HandlingMode.STEER if steer else HandlingMode.QUEUE,
        wake_if_idle=wake,
    )
    for steer in (False, True)
    for wake in (False, True)
}


class RuntimeControlCommand(enum.Enum):
    STOP = "stop"
    RESUME = "resume"

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


@dataclass(frozen=True, slots=True)
class DriverObservation:
    """Everything a caller can observe of a driver, for equality checks."""

    phase: RuntimeState
    control: rc.RuntimeControlSnapshot
    inputs: tuple[InputStateRecord, ...]
    queue: tuple[InputId, ...]
    steer: tuple[InputId, ...]
    batch: tuple[RunId, tuple[InputId, ...]] | None
    signal: PostAdmissionSignal
    events: int


class RuntimeCore(RecoveringCore, WithdrawingCore, RunningCore):
    """One runtime's in-memory state and operations (starts IDLE)."""

    def __init__(
        self,
        runtime_id: LogicalRuntimeId,
        *,
        policy_table: PolicyTable | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        max_pending_inputs: int = DEFAULT_MAX_PENDING_INPUTS,
        tracks_unsaved: bool = False,
    ) -> None:
        if not isinstance(max_pending_inputs, int) or max_pending_inputs < 1:
            raise ValueError(
                f"max_pending_inputs must be a positive int, not {max_pending_inputs!r}"
            )
        self.runtime_id = runtime_id
        self._policy: PolicyTable = policy_table or DefaultPolicyTable()
        self._max_input_bytes = max_input_bytes
        self._max_pending = max_pending_inputs
        self._tracks_unsaved = tracks_unsaved
        self.fresh_state()

    # ================================================================ accept

    def accept(self, inp: Input) -> AcceptOutcome:
        """The accept pipeline (A-1 .. A-18), synchronously."""
        inp = check_structure(inp, self._max_input_bytes)
        self.tick()
        phase = self._control.phase()
        if not phase.can_accept_input():
            raise NotReadyError(phase)
        detail = durability_violation(inp)
        if detail is not None:
            return Rejected(reason=DurabilityViolation(detail=detail))
        detail = peer_mode_violation(inp)
        if detail is not None:
            return Rejected(reason=PeerHandlingModeInvalid(detail=detail))
        existing = self._existing(inp)
        if existing is not None:
            self._emit_input(InputDeduplicated(input_id=inp.id(), existing_id=existing))
            return Deduplicated(input_id=inp.id(), existing_id=existing)
        decision = self._policy.resolve(inp, phase.is_idle_or_attached())
        if self._ledger.pending() >= self._max_pending and self._adds_pending(
            inp, decision
        ):
            raise PendingLimitError(self.runtime_id, self._max_pending)
        state = self._record(inp, decision)
        self._emit_input(InputAccepted(input_id=state.input_id))
        if (
            decision.apply_mode is ApplyMode.IGNORE
            and decision.consume_point is ConsumePoint.ON_ACCEPT
        ):
            self._apply(state, il.ConsumeOnAccept())  # consumed, never queued
        else:
            self._admit_queued(inp, state, decision)
        return Accepted(input_id=state.input_id, policy=decision, state=state.clone())

    def _adds_pending(self, inp: Input, decision: PolicyDecision) -> bool:
        """PD-43: whether accepting ``inp`` leaves one more unfinished input.
        Not when it is consumed at once, nor when it replaces a waiting
        input of its scope (the count stays as it is)."""
        if (
            decision.apply_mode is ApplyMode.IGNORE
            and decision.consume_point is ConsumePoint.ON_ACCEPT
        ):
            return False
        key = inp.header.supersession_key
        return (
            decision.queue_mode not in (QueueMode.SUPERSEDE, QueueMode.COALESCE)
            or key is None
            or self._find_in_scope(inp.kind_id(), key) is None
        )

    def _existing(self, inp: Input) -> InputId | None:
        """A-6: the input an idempotency key already names. An id accepted
        before is the same input again (a retry), not a second one (A-17)."""
        key = inp.header.idempotency_key
        if key is not None:
            found = self._ledger.id_for_key(key)
            if found is not None:
                return found
        return inp.id() if inp.id() in self._ledger else None

    def _record(self, inp: Input, decision: PolicyDecision) -> InputState:
        state = InputState.new_accepted(inp.id(), self._now)
        state.durability = inp.header.durability
        state.idempotency_key = inp.header.idempotency_key
        state.policy = PolicySnapshot(
            version=decision.policy_version, decision=decision
        )
        self._insert(state)
        return state

    def _admit_queued(
        self, inp: Input, state: InputState, decision: PolicyDecision
    ) -> None:
        state.persisted_input = inp  # type: ignore[assignment]
        self._apply(state, il.QueueAccepted())
        if decision.queue_mode in (QueueMode.SUPERSEDE, QueueMode.COALESCE):
            self._replace_older(inp, decision.queue_mode)
        self._ledger.scope_added(state)  # after: it does not replace itself
        lane = lane_for(state.policy)
        self._lanes.push(
            state.input_id, lane, front=decision.queue_mode is QueueMode.PRIORITY
        )
        self._emit_input(InputQueued(input_id=state.input_id))
        # the runtime-control machine decides the loop's signals.
        steer = inp.handling_mode_hint() is HandlingMode.STEER
        self._drive(_ADMISSIONS[steer, decision.wake_mode is WakeMode.WAKE_IF_IDLE])

    def _replace_older(self, inp: Input, mode: QueueMode) -> None:
        """Decision 1: the older input in the same scope (kind, key) leaves its
        lane at once and becomes superseded or coalesced into the new one."""
        key = inp.header.supersession_key
        if key is None:
            return
        older = self._find_in_scope(inp.kind_id(), key)
        if older is None:
            return
        self._lanes.remove(older.input_id, lane_for(older.policy))
        if mode is QueueMode.SUPERSEDE:
            self._apply(older, il.Supersede(superseded_by=inp.id()))
            self._emit_input(
                InputSuperseded(input_id=older.input_id, superseded_by=inp.id())
            )
        else:
            self._apply(older, il.Coalesce(aggregate_id=inp.id()))
            self._emit_input(
                InputCoalesced(input_id=older.input_id, aggregate_id=inp.id())
            )

    def _find_in_scope(self, kind: str, key: object) -> InputState | None:
        """PD-44: the oldest input of the scope still waiting in a lane
        (queued; a staged one is the run's), from the ledger's scope index."""
        for state in self._ledger.in_scope((kind, key)):
            if state.current_state() is _QUEUED:
                return state
        return None

    # ================================================================ runs
    # ================================================================ control

    def attach(self) -> None:
        """C-5: idle -> attached; raises RuntimeControlError otherwise."""
        self.tick()
        self._drive(rc.AttachExecutor())

    def detach(self) -> RuntimeState | None:
        """C-6: attached -> idle, returning the previous phase; else nothing."""
        self.tick()
        if self._control.phase() is not RuntimeState.ATTACHED:
            return None
        self._drive(rc.DetachExecutor())
        return RuntimeState.ATTACHED

    def retire(self) -> RetireReport:
        """C-8: refuse new input, keep queued work for draining."""
        self.tick()
        self._require(rc.RetireRequested())
        self._drive(rc.RetireRequested())
        return RetireReport(
            inputs_abandoned=0, inputs_pending_drain=len(self._ledger.active_ids())
        )

    def reset(self) -> ResetReport:
        """C-9 with decision 6: refused (untouched) while running."""
        self.tick()
        self._require(rc.ResetRequested())
        abandoned = self._abandon_all(REASON_RESET)
        self._drive(rc.ResetRequested())  # also withdraws the pending signals
        return ResetReport(inputs_abandoned=abandoned)

    def destroy(self) -> DestroyReport:
        """C-10; decision 12: a destroyed runtime forgets its idempotency keys."""
        self.tick()
        self._require(rc.DestroyRequested())
        self._drive(rc.DestroyRequested())
        abandoned = self._abandon_all(REASON_DESTROYED)
        self._forget_keys()
        return DestroyReport(inputs_abandoned=abandoned)

    def runtime_control(self, command: RuntimeControlCommand) -> None:
        """C-11 (stop: inputs abandoned as destroyed, L-13) and C-12 (resume)."""
        self.tick()
        if command is RuntimeControlCommand.RESUME:
            if self._control.can_accept(rc.ResumeRequested()):
                self._drive(rc.ResumeRequested())
            return
        self._require(rc.StopRequested())
        self._drive(rc.StopRequested())
        self._abandon_all(REASON_DESTROYED)

    def recycle(self) -> int:
        """C-14 with decision 7: back to idle and accepting, work preserved."""
        self.tick()
        self._require(rc.RecycleRequested())
        self._drive(rc.RecycleRequested())
        transferred = len(self._ledger.active_ids())
        self.recover()
        self._drive(rc.RecycleSucceeded())
        return transferred

    def _require(self, control_input: rc.RuntimeControlInput) -> None:
        """Decision 6: refuse before any mutation."""
        if not self._control.can_accept(control_input):
            phase = self._control.phase()
            if phase is RuntimeState.DESTROYED:
                raise DestroyedError()
            raise NotReadyError(phase)

    def _abandon_all(self, reason: InputAbandonReason) -> int:
        states = self._ledger.non_terminal()
        for state in states:
            self._apply(state, il.Abandon(reason))
            self._emit_abandoned(state)
        self._lanes.clear()
        self._batch = None
        return len(states)

    # ================================================================ queries

    def runtime_state(self) -> RuntimeState:
        return self._control.phase()

    def peek_input_state(self, input_id: InputId) -> InputState | None:
        """The live entry, for read-only use inside the runtime's own layers
        (waiter settlement on hot paths); never mutate it."""
        return self._ledger.get(input_id)

    def input_state(self, input_id: InputId) -> InputState | None:
        """A copy: changing it does not change the runtime."""
        state = self._ledger.get(input_id)
        return state.clone() if state is not None else None

    def active_input_ids(self) -> list[InputId]:
        return self._ledger.active_ids()

    def pending_inputs(self) -> int:
        """How many inputs are unfinished."""
        return self._ledger.pending()

    def queued_input_ids(self, lane: Lane = Lane.QUEUE) -> list[InputId]:
        return self._lanes.ids(lane)

    def is_idle(self) -> bool:
        return self._control.phase() is RuntimeState.IDLE

    def is_idle_or_attached(self) -> bool:
        return self._control.phase().is_idle_or_attached()

    def dequeue_next(self) -> tuple[InputId, Input] | None:
        """R-5: the next waiting input (steer lane first), without staging it."""
        input_id = self._lanes.take_next()
        return None if input_id is None else (input_id, self._payload(input_id))

    def dequeue_by_id(self, input_id: InputId) -> tuple[InputId, Input] | None:
        if not self._lanes.take(input_id):
            return None
        return input_id, self._payload(input_id)

    def payload(self, input_id: InputId) -> Input:
        """The stored input of a known id (what a run hands the executor)."""
        return self._payload(input_id)

    def abandon_pending(self, reason: InputAbandonReason) -> int:
        """C-15 with decision 8: abandon every unfinished input; they leave the
        lanes for good. Used when a retired runtime has nothing to drain it."""
        self.tick()
        return self._abandon_all(reason)

    def _payload(self, input_id: InputId) -> Input:
        state = self._state(input_id)
        payload = state.persisted_input
        if payload is None:
            # PD-64: a persistent driver may leave it in the store.
            assert state.stored_payload is not None, "a queued input has a payload"
            raise ValidationFailedError(
                f"input {input_id}: its payload is in the store, not in memory "
                "(await the driver's load_payloads first)"
            )
        return payload

    def input_kind(self, input_id: InputId) -> str:
        """The kind of a known input's payload (T-3), loaded or not."""
        key = self._state(input_id).payload_key()
        assert key is not None, "a queued input has a payload"
        return key.kind

    def payloads_in_store(self, ids: Iterable[InputId]) -> list[InputId]:
        """Those of ``ids`` whose payload is left in the store (PD-64)."""
        return [
            i
            for i in ids
            if (state := self._ledger.get(i)) is not None and not state.payload_loaded()
        ]

    def put_payloads(self, payloads: Mapping[InputId, Input]) -> None:
        """Hand the ledger the payloads a store kept (``payloads_in_store``)."""
        for input_id, payload in payloads.items():
            state = self._ledger.get(input_id)
            if state is not None and not state.payload_loaded():
                state.load_payload(payload)  # type: ignore[arg-type]

    def drain_events(self) -> list[RuntimeEventEnvelope]:
        events, self._events = self._events, []
        return events

    def take_wake_requested(self) -> bool:
        """A-16: reads the signal, leaving it for the next take."""
        return self._signal.should_wake()

    def take_process_requested(self) -> bool:
        """A-16: reads the immediate request and resets the signal to None
        whatever it held (a pending wake is consumed with it)."""
        requested = self._signal.should_process_immediately()
        self._signal = PostAdmissionSignal.NONE
        return requested

    def take_post_admission_signal(self) -> PostAdmissionSignal:
        signal, self._signal = self._signal, PostAdmissionSignal.NONE
        return signal

    def observe(self) -> DriverObservation:
        """Everything observable, as comparable values (tests, fuzzing)."""
        batch = self._batch
        return DriverObservation(
            phase=self._control.phase(),
            control=self._control.snapshot(),
            inputs=tuple(s.to_record() for s in self._ledger),
            queue=tuple(self._lanes.ids(Lane.QUEUE)),
            steer=tuple(self._lanes.ids(Lane.STEER)),
            batch=(batch.run_id, tuple(batch.ids)) if batch else None,
            signal=self._signal,
            events=len(self._events),
        )
