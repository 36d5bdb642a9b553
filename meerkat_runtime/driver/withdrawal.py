"""Withdrawing a run the store could not record (W-6a, PD-38).

Theory of operation: when staging a batch the core keeps a copy of each
input as it was (``Batch.before``). If the store then refuses the run's
boundary, the run is withdrawn: each input still staged is put back exactly
as that copy, at the front of its lane, and the run ends. No attempt is
counted, since the executor did not fail; and as staging is written only
when a lifecycle commit happens during the run (PD-6), the copies are
usually what the store already holds, so memory and store agree again.
"""

from __future__ import annotations

from meerkat_runtime.driver.journal import Batch, CoreState
from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.ledger import Lane, lane_for

_APPLIED = (
    il.InputLifecycleState.APPLIED,
    il.InputLifecycleState.APPLIED_PENDING_CONSUMPTION,
)


class WithdrawingCore(CoreState):
    """``withdraw_run`` on top of the core's state and journal."""

    def withdraw_run(self, run_id: RunId) -> None:
        """W-6a with PD-38: end the current run as if it had never staged its
        batch. Its staged inputs go back to the front of their lanes exactly
        as they were before staging (no attempt counted): the run ended
        because the store could not record it, not because the executor
        failed. Refused, changing nothing, once its boundary was recorded:
        applied inputs are the run's to complete."""
        self.tick()
        batch = self._batch
        if self._control.current_run_id() != run_id or not self._control.can_accept(
            rc.RunCancelled(run_id)
        ):
            raise ValidationFailedError(
                f"withdraw: run {run_id} is not the current run"
            )
        staged = self._withdrawable(batch) if batch is not None else []
        returned: dict[Lane, list[InputId]] = {Lane.QUEUE: [], Lane.STEER: []}
        for earlier in staged:
            # A copy: the batch's own must stay as it was, should the store
            # refuse this too and the withdrawal be tried again.
            self._put_back(earlier.clone())
            returned[lane_for(earlier.policy)].append(earlier.input_id)
        self._batch = None
        for lane, ids in returned.items():
            if ids:
                self._lanes.push_front_in_order(ids, lane)
        if not self._lanes.is_empty():
            self._drive(rc.WorkWaiting())
        self._drive(rc.RunCancelled(run_id))

    def _withdrawable(self, batch: Batch) -> list[InputState]:
        """The pre-staging copies of the batch's inputs still staged; raises
        if the run applied any."""
        earlier: list[InputState] = []
        for input_id in batch.ids:
            phase = self._state(input_id).current_state()
            if phase in _APPLIED:
                raise ValidationFailedError(
                    f"withdraw: run {batch.run_id} applied input {input_id}; "
                    "complete the run instead"
                )
            if phase is il.InputLifecycleState.STAGED:
                earlier.append(batch.before[input_id])
        return earlier

    def _put_back(self, earlier: InputState) -> None:
        """Replace a ledger entry by an earlier copy of it, journaled like
        ``_apply`` (undone with its checkpoint, or owed to the store)."""
        checkpoint = self._open
        if checkpoint is not None:
            if earlier.input_id not in checkpoint.touched:
                checkpoint.touched[earlier.input_id] = self._state(
                    earlier.input_id
                ).clone()
        elif self._tracks_unsaved and not self._recovering:
            self._unsaved[earlier.input_id] = None
        self._ledger.replace(earlier)
