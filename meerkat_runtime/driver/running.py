"""Running: the part of ``RuntimeCore`` that carries a run from start to end.

It stages the head of a lane as the run's batch (R-6), marks inputs applied
at boundaries and consumes them (R-8, R-15), reacts to the executor's run
events (R-9 .. R-13, decision 21) and puts what a run left staged back at
the front of its lane (R-16, decision 2). It is a mixin over the core's
state and journal (``journal.CoreState``), apart from ``core`` so the
admission and control logic there and the run logic here each read whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from meerkat_runtime.driver.journal import Batch, CoreState
from meerkat_runtime.errors import (
    NotReadyError,
    ValidationFailedError,
)
from meerkat_runtime.events import (
    InputApplied,
    InputConsumed,
    InputStaged,
)
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.ledger import Lane, lane_for
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


class RunningCore(CoreState):
    """Run start, staging, boundaries, run events and rollback."""

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


def checked_receipt(receipt: object) -> RunBoundaryReceipt:
    """An executor's receipt with its fields' types checked (see
    ``receipt_problem``): refused before anything changes."""
    problem = receipt_problem(receipt)
    if problem is not None:
        raise ValidationFailedError(f"run event: malformed receipt: {problem}")
    assert isinstance(receipt, RunBoundaryReceipt)
    return receipt
