"""``RuntimeCore``: the whole runtime logic, in memory, no IO.

Theory of operation: the core owns a runtime control authority (the phase),
a ledger of input states (each wrapping an input lifecycle authority), the
queue and steer lanes, the batch staged for the current run, an event buffer
and the post-admission signal (``journal.CoreState``), plus recovery
(``recovery``). Every operation first checks that it is legal in the current
state and only then mutates (decision 6), so an illegal call raises and
leaves everything as it was. Lifecycle phases change only through the
generated authorities; signals and phase announcements only through the
effects of the runtime-control machine (``CoreState._drive``).

Both drivers hold one: the ephemeral driver calls it directly; the persistent
driver opens a checkpoint, calls it, writes what it touched, and restores
the checkpoint if the store refuses.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from meerkat_runtime.driver.journal import REASON_DESTROYED, REASON_RESET, Batch
from meerkat_runtime.driver.recovery import RecoveringCore
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
    InputApplied,
    InputCoalesced,
    InputConsumed,
    InputDeduplicated,
    InputQueued,
    InputStaged,
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
from meerkat_runtime.runs import (
    BoundaryApplied,
    RunBoundaryReceipt,
    RunCancelled,
    RunCompleted,
    RunEvent,
    RunFailed,
    RunStarted,
    receipt_problem,
)

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


class RuntimeCore(RecoveringCore, WithdrawingCore):
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

    def start_run(self, run_id: RunId) -> None:
        """C-7: BeginRun only; raises RuntimeControlError if not allowed."""
        self._drive(rc.BeginRun(run_id))

    def complete_run(self) -> RunId:
        """C-7: end the current run without touching inputs (a failed staging)."""
        run_id = self._control.current_run_id()
        if run_id is None:
            raise NotReadyError(self._control.phase())
        if self._batch is not None and self._batch.ids:
            raise ValidationFailedError(
                f"run {run_id} has staged inputs: send a run event instead"
            )
        self._drive(rc.RunCompleted(run_id))
        return run_id

    def stage_input(self, input_id: InputId, run_id: RunId) -> None:
        self.stage_batch([input_id], run_id)

    def stage_batch(self, ids: Sequence[InputId], run_id: RunId) -> None:
        """R-6: stage the head of the active lane for the current run."""
        self.tick()
        ids = list(ids)
        self._check_stage(ids, run_id)
        lane = self._lanes.pop_prefix(len(ids))
        before: dict[InputId, InputState] = {}
        for input_id in ids:
            state = self._state(input_id)
            before[input_id] = state.clone()  # PD-38: what withdraw_run restores
            self._apply(state, il.StageForRun(run_id))
            self._emit_input(InputStaged(input_id=input_id, run_id=run_id))
        self._batch = Batch(run_id, ids, lane, before)

    def _check_stage(self, ids: list[InputId], run_id: RunId) -> None:
        if self._control.current_run_id() != run_id:
            raise ValidationFailedError(f"stage: run {run_id} is not the current run")
        if self._batch is not None:
            raise ValidationFailedError(
                f"stage: run {run_id} has already staged its batch"
            )
        if not ids:
            raise ValidationFailedError("stage: no input ids")
        for input_id in ids:
            state = self._ledger.get(input_id)
            if (
                state is None
                or state.current_state() is not il.InputLifecycleState.QUEUED
            ):
                raise ValidationFailedError(f"stage: input {input_id} is not queued")
        if not self._lanes.is_prefix(ids):
            lane = self._lanes.active_lane().value
            raise ValidationFailedError(
                f"stage: ids must be the head of the {lane} lane"
            )

    def apply_input(self, input_id: InputId, run_id: RunId) -> None:
        """R-8: mark one staged input applied at boundary 0 (manual path)."""
        self.tick()
        state = self._staged_for(input_id, run_id)
        self._apply(state, il.MarkApplied(run_id))
        self._apply(state, il.MarkAppliedPendingConsumption(0))
        self._emit_input(InputApplied(input_id=input_id, run_id=run_id))

    def rollback_staged(self, ids: Sequence[InputId]) -> None:
        """R-16: put staged inputs back at the front of their lane, in order."""
        self.tick()
        staged = [
            s
            for s in map(self._ledger.get, ids)
            if s and s.current_state() is il.InputLifecycleState.STAGED
        ]
        self._rollback(staged)
        if self._batch is not None:
            # The batch record stays (possibly empty) until the run ends: a run
            # stages once, even after its inputs were rolled back.
            rolled_back = {s.input_id for s in staged}
            self._batch.ids = [i for i in self._batch.ids if i not in rolled_back]

    def consume_inputs(self, ids: Sequence[InputId], run_id: RunId) -> None:
        """R-15: consume the listed inputs applied by ``run_id``."""
        self.tick()
        for input_id in ids:
            state = self._ledger.get(input_id)
            if state is not None and self._applied_by(state, run_id):
                self._apply(state, il.Consume())
                self._emit_input(InputConsumed(input_id=input_id, run_id=run_id))

    def run_event(self, event: RunEvent) -> None:
        """R-9 .. R-13; decision 21: an event for a run that is not current raises."""
        self.tick()
        if isinstance(event, RunStarted):
            return
        if not isinstance(
            event, BoundaryApplied | RunCompleted | RunFailed | RunCancelled
        ):
            raise ValidationFailedError(
                f"run event: unknown event {type(event).__name__}"
            )
        if self._control.current_run_id() != event.run_id:
            raise ValidationFailedError(
                f"run event: run {event.run_id} is not the current run"
            )
        if isinstance(event, BoundaryApplied):
            self._boundary_applied(event)
        elif isinstance(event, RunCompleted):
            self._run_completed(event)
        else:
            self._run_failed(event)

    def _boundary_applied(self, event: BoundaryApplied) -> None:
        receipt = checked_receipt(event.receipt)
        if receipt.run_id != event.run_id:
            raise ValidationFailedError(
                f"run event: the receipt is for run {receipt.run_id}, not {event.run_id}"
            )
        if len(set(receipt.contributing_input_ids)) != len(
            receipt.contributing_input_ids
        ):
            raise ValidationFailedError("run event: the receipt names an input twice")
        states = [
            self._staged_for(i, event.run_id) for i in receipt.contributing_input_ids
        ]
        for state in states:
            self._apply(state, il.MarkApplied(event.run_id))
            self._apply(state, il.MarkAppliedPendingConsumption(receipt.sequence))
            self._emit_input(InputApplied(input_id=state.input_id, run_id=event.run_id))

    def _run_completed(self, event: RunCompleted) -> None:
        self.consume_inputs(event.consumed_input_ids, event.run_id)
        self._end_batch()
        self._drive(rc.RunCompleted(event.run_id))

    def _run_failed(self, event: RunFailed | RunCancelled) -> None:
        # The run's error goes into the history of every input it puts back.
        self._end_batch(event.error if isinstance(event, RunFailed) else None)
        if not self._lanes.is_empty():
            self._drive(rc.WorkWaiting())  # the inputs put back wait
        if isinstance(event, RunFailed):
            self._drive(rc.RunFailed(event.run_id))
        else:
            self._drive(rc.RunCancelled(event.run_id))

    def _end_batch(self, error: str | None = None) -> None:
        """Inputs of the batch still staged (not applied) go back to the front
        of their lane in their original order (decision 2)."""
        if self._batch is None:
            return
        staged = [
            s
            for s in map(self._state, self._batch.ids)
            if s.current_state() is il.InputLifecycleState.STAGED
        ]
        self._batch = None
        self._rollback(staged, error)

    def _rollback(self, staged: list[InputState], error: str | None = None) -> None:
        requeued: dict[Lane, list[InputId]] = {Lane.QUEUE: [], Lane.STEER: []}
        for state in staged:
            if self._requeue(state, il.RollbackStaged(), error):
                requeued[lane_for(state.policy)].append(state.input_id)
        for lane, ids in requeued.items():
            if ids:
                self._lanes.push_front_in_order(ids, lane)

    def _staged_for(self, input_id: InputId, run_id: RunId) -> InputState:
        state = self._ledger.get(input_id)
        if state is None:
            raise ValidationFailedError(f"input {input_id} is unknown")
        if (
            state.current_state() is not il.InputLifecycleState.STAGED
            or state.last_run_id() != run_id
        ):
            raise ValidationFailedError(
                f"input {input_id} is not staged for run {run_id}"
            )
        return state

    @staticmethod
    def _applied_by(state: InputState, run_id: RunId) -> bool:
        return (
            state.current_state() is il.InputLifecycleState.APPLIED_PENDING_CONSUMPTION
            and state.last_run_id() == run_id
        )

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
        payload = self._state(input_id).persisted_input
        assert payload is not None, "a queued input always keeps its payload"
        return payload

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


def checked_receipt(receipt: object) -> RunBoundaryReceipt:
    """An executor's receipt with its fields' types checked (see
    ``receipt_problem``): refused before anything changes."""
    problem = receipt_problem(receipt)
    if problem is not None:
        raise ValidationFailedError(f"run event: malformed receipt: {problem}")
    assert isinstance(receipt, RunBoundaryReceipt)
    return receipt
