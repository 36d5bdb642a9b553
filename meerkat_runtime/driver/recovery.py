"""Recovery of a runtime core: from its own memory, and from loaded states.

Theory of operation: ``recover`` (D-12) brings the inputs a live core holds
back to states a runtime can continue from. ``recover_loaded`` (D-11) adds
what only a store knew: the loaded states enter the ledger and their lanes,
applied inputs named by a committed receipt are consumed, the others run
again, and ``restore_phase`` brings the runtime back to the phase the store
remembers by the inputs the spec lists (``restore``). Both are synchronous
and do no IO: the persistent driver reads the store first (``to_recover``,
``receipts_to_check``) and hands over what it found, then writes what changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from meerkat_runtime.driver.journal import CoreState
from meerkat_runtime.errors import InternalError
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.generated.policy_table import ApplyMode, ConsumePoint, QueueMode
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.input_state import InputState, PolicySnapshot
from meerkat_runtime.inputs import InputDurability
from meerkat_runtime.ledger import Lane, lane_for
from meerkat_runtime.outcomes import RecoveryReport

_S = il.InputLifecycleState
_APPLIED = (_S.APPLIED, _S.APPLIED_PENDING_CONSUMPTION)
_PRIORITY = QueueMode.PRIORITY


class RecoveringCore(CoreState):
    """Recovery on top of the core's state and journal."""

    def recover(self) -> RecoveryReport:
        """D-12 with decision 24: unfinished inputs go back to their lanes."""
        self.tick()
        if self._control.phase() is RuntimeState.DESTROYED:
            return RecoveryReport()  # nothing left to recover (as upstream)
        if self._batch is not None:
            self._batch.ids = []  # rolled back below; the run itself goes on
        recovered = requeued = abandoned = 0
        front: dict[Lane, list[InputId]] = {Lane.QUEUE: [], Lane.STEER: []}
        for state in self._ledger.non_terminal():
            recovered += 1
            outcome = self._normalise(state)
            if outcome == "requeued":
                requeued += 1
                front[lane_for(state.policy)].append(state.input_id)
            elif outcome == "abandoned":
                abandoned += 1
        for lane, ids in front.items():
            if ids:
                self._lanes.push_front_in_order(ids, lane)
        if not self._lanes.is_empty():
            self._drive(rc.WorkWaiting())
        return RecoveryReport(
            inputs_recovered=recovered,
            inputs_abandoned=abandoned,
            inputs_requeued=requeued,
        )

    def _normalise(self, state: InputState) -> str:
        """Bring one recovered input to a state a runtime can continue from."""
        phase = state.current_state()
        if phase is _S.ACCEPTED:
            decision = state.policy.decision if state.policy else None
            if (
                decision
                and decision.apply_mode is ApplyMode.IGNORE
                and decision.consume_point is ConsumePoint.ON_ACCEPT
            ):
                self._apply(state, il.ConsumeOnAccept())
                return "kept"
            self._apply(state, il.QueueAccepted())
            return "requeued"
        if phase is _S.STAGED:
            return self._requeued(state, il.RollbackStaged())
        return "kept"

    # ---------------------------------------------------------------- loaded

    def to_recover(
        self, states: Iterable[InputState], persisted: RuntimeState | None
    ) -> list[InputState]:
        """The loaded states this core does not hold yet and that belong on
        disk (decision 13); refuses, changing nothing, a terminal runtime
        with unfinished inputs (decision 5: fail closed)."""
        fresh = [
            s
            for s in states
            if s.input_id not in self._ledger
            and s.durability is not InputDurability.EPHEMERAL
        ]
        # A live core's own unfinished inputs count too: restoring a stopped
        # or destroyed phase over them would leave them queued in a runtime
        # that can never run them, and write that back.
        live = sum(1 for s in fresh if not s.is_terminal())
        live += self._ledger.pending()
        if persisted is not None and persisted.is_terminal() and live:
            raise InternalError(
                f"store corruption: runtime {self.runtime_id} is stored "
                f"{persisted.value} but has {live} active inputs"
            )
        return fresh

    @staticmethod
    def receipts_to_check(
        fresh: Iterable[InputState],
    ) -> dict[tuple[RunId, int], list[InputId]]:
        """D-11 step 1: the unfinished applied inputs a committed receipt may
        name, grouped by that receipt's (run, sequence), so a restart reads
        and decodes each receipt once however many inputs it applied (an
        applied input carries a boundary only when a store stamped it)."""
        groups: dict[tuple[RunId, int], list[InputId]] = {}
        for state in fresh:
            if state.is_terminal() or state.current_state() not in _APPLIED:
                continue
            run_id, sequence = state.last_run_id(), state.last_boundary_sequence()
            if state.has_payload() and run_id is not None and sequence is not None:
                groups.setdefault((run_id, sequence), []).append(state.input_id)
        return groups

    def recover_loaded(
        self, fresh: list[InputState], named: set[InputId]
    ) -> tuple[RecoveryReport, list[InputState], list[InputState]]:
        """Ledger and lanes from ``to_recover``'s states; ``named`` holds the
        applied ones a committed receipt names. Returns the report, the
        unfinished inputs normalisation changed, and those it only counted."""
        counts = {"requeued": 0, "abandoned": 0}
        details: list[str] = []
        changed: list[InputState] = []
        recounted: list[InputState] = []
        # ``fresh`` is in arrival order (S-7). A priority input went to the
        # front of its lane when it arrived, so the later one is first (PD-9).
        lanes: dict[Lane, list[InputId]] = {Lane.QUEUE: [], Lane.STEER: []}
        fronts: dict[Lane, list[InputId]] = {Lane.QUEUE: [], Lane.STEER: []}
        for state in fresh:
            self._insert(state)
            policy = state.policy
            if (  # the common case: kept as it is
                state.current_state() is _S.QUEUED
                and policy is not None
                and state.has_payload()
            ):
                state.recovery_count += 1  # decision 18
                recounted.append(state)
                queued = fronts if policy.decision.queue_mode is _PRIORITY else lanes
                queued[lane_for(policy)].append(state.input_id)
                continue
            if not state.is_terminal():
                state.recovery_count += 1  # decision 18: before normalisation
                before = (state.lifecycle_snapshot(), state.policy)
                outcome = self._normalise_loaded(
                    state, state.input_id in named, details
                )
                counts[outcome] = counts.get(outcome, 0) + 1
                after = (state.lifecycle_snapshot(), state.policy)
                (recounted if after == before else changed).append(state)
            if state.current_state() is _S.QUEUED:
                policy = state.policy
                priority = (
                    policy is not None and policy.decision.queue_mode is _PRIORITY
                )
                (fronts if priority else lanes)[lane_for(policy)].append(state.input_id)
        for lane, ids in lanes.items():  # in the order of the loop, per lane
            self._lanes.push_all(ids, lane)
        for lane, ids in fronts.items():  # the last to arrive ends up first
            if ids:
                self._lanes.push_front_in_order(ids[::-1], lane)
        if not self._lanes.is_empty():
            self._drive(rc.WorkWaiting())
        report = RecoveryReport(
            inputs_recovered=len(changed) + len(recounted),  # the unfinished
            inputs_requeued=counts["requeued"],
            inputs_abandoned=counts["abandoned"],
            details=details,
        )
        return report, changed, recounted

    def _normalise_loaded(
        self, state: InputState, named: bool, details: list[str]
    ) -> str:
        """One loaded, unfinished input: consumed by receipt, queued again, or
        abandoned; its policy and lane come from its record (decision 4)."""
        if state.policy is None and state.persisted_input is not None:
            decision = self._policy.resolve(state.persisted_input, True)
            state.policy = PolicySnapshot(
                version=decision.policy_version, decision=decision
            )
        if not state.has_payload():
            self._apply(state, il.Abandon(InputAbandonReason.Cancelled()))
            self._emit_abandoned(state)
            details.append(
                f"input {state.input_id}: no stored payload to run; abandoned"
            )
            return "abandoned"
        phase = state.current_state()
        if phase in _APPLIED:
            # D-11 step 1: a committed receipt naming it means it was applied:
            # through pending consumption, from where the spec lets it be
            # consumed.
            sequence = state.last_boundary_sequence()
            if named and sequence is not None:
                if phase is _S.APPLIED:
                    self._apply(state, il.MarkAppliedPendingConsumption(sequence))
                self._apply(state, il.Consume())
                return "kept"
            return self._requeued(state, il.RecoverRequeue())
        if phase is _S.ACCEPTED:
            return self._requeued(state, il.QueueAccepted())
        if phase is _S.STAGED:
            return self._requeued(state, il.RollbackStaged())
        return "kept"

    @staticmethod
    def payload_needed(state: InputState) -> bool:
        """Whether ``recover_loaded`` needs this loaded state's payload in
        memory (PD-64): it rewrites every unfinished input it does not keep
        queued as it is, and resolves a missing policy from the payload."""
        if state.payload_loaded():
            return False
        phase = state.current_state()
        if phase is _S.QUEUED:  # the common case first: one comparison
            return state.policy is None
        return not phase.is_terminal()

    def _requeued(
        self, state: InputState, lifecycle_input: il.InputLifecycleInput
    ) -> str:
        return "requeued" if self._requeue(state, lifecycle_input) else "abandoned"

    def restore_phase(self, persisted: RuntimeState | None) -> None:
        """D-11 step 9: come back in the phase the store remembers, by the
        inputs the spec lists for it (``restore``)."""
        if persisted is None or self._control.phase() is persisted:
            return
        for control_input in rc.RESTORE_INPUTS.get(persisted, ()):
            self._drive(control_input)

    def stored_phase(self) -> RuntimeState:
        """The phase a store keeps for this runtime (the spec's ``stored_as``)."""
        return self._control.stored_phase()

    def begin_first_recovery(self) -> None:
        """A first recovery runs without a checkpoint: its undo is
        ``fresh_state`` (nothing was there before it)."""
        interleaved = self._open is not None or self._recovering
        assert not interleaved, "operations on one driver must not interleave"
        self._recovering = True
        self.tick()

    def end_first_recovery(self) -> None:
        self._recovering = False
