"""The run-end part of the store conformance suite (PD-70): a store that
``ends_runs_atomically`` writes a run's boundary and its end in one
all-or-nothing commit, checking the receipt as ``atomic_apply`` does; a
store that does not say so refuses the call and writes nothing.

``StoreConformance`` composes it with the other contract groups.
"""

from __future__ import annotations

import pytest

from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import RunId
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.base import (
    RuntimeStore,
    RuntimeStoreError,
    SessionDelta,
    ends_runs_atomically,
)
from meerkat_runtime.testing.conformance_support import (
    A,
    ConformanceHooks,
    poisoned,
    receipt_for,
    rich_state,
)

SNAPSHOT = SessionDelta(session_snapshot=b"after the run")


class RunEndConformance(ConformanceHooks):
    """``atomic_apply_and_lifecycle_commit``: all or nothing."""

    def test_a_run_end_writes_receipt_snapshot_phase_and_states_at_once(
        self,
    ) -> None:
        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            consumed = [rich_state(5, run_id), rich_state(5, run_id)]
            receipt = receipt_for(run_id, [s.input_id for s in consumed])
            await store.persist_runtime_state(A, RuntimeState.RUNNING)
            write = store.atomic_apply_and_lifecycle_commit(
                A, SNAPSHOT, receipt, RuntimeState.IDLE, consumed
            )
            if not ends_runs_atomically(store):
                with pytest.raises(NotImplementedError):
                    await write
                assert await store.load_runtime_state(A) is RuntimeState.RUNNING
                assert await store.load_boundary_receipts(A) == []
                return
            await write
            assert await store.load_boundary_receipt(A, run_id, 0) == receipt
            assert await store.load_session_snapshot(A) == b"after the run"
            assert await store.load_runtime_state(A) is RuntimeState.IDLE
            loaded = await store.load_input_states(A)
            assert [s.input_id for s in loaded] == [s.input_id for s in consumed]
            assert all(
                s.current_state() is il.InputLifecycleState.CONSUMED for s in loaded
            )

        self.run(body)

    def test_a_run_end_is_all_or_nothing(self) -> None:
        """A state that cannot be encoded fails the whole commit: no
        receipt, no snapshot, the phase and the stored states as before."""

        async def body(store: RuntimeStore) -> None:
            if not ends_runs_atomically(store):
                return  # the previous test pinned the refusal
            run_id = RunId.new()
            queued = rich_state(2, run_id)
            await store.atomic_lifecycle_commit(A, RuntimeState.RUNNING, [queued])
            before = self.raw_rows(store, records.INPUTS, A)
            done = rich_state(5, run_id)
            receipt = receipt_for(run_id, [queued.input_id, done.input_id])
            with pytest.raises(RuntimeStoreError):
                await store.atomic_apply_and_lifecycle_commit(
                    A, SNAPSHOT, receipt, RuntimeState.IDLE, [done, poisoned(done)]
                )
            assert await store.load_boundary_receipt(A, run_id, 0) is None
            assert await store.load_session_snapshot(A) is None
            assert await store.load_runtime_state(A) is RuntimeState.RUNNING
            assert self.raw_rows(store, records.INPUTS, A) == before

        self.run(body)

    def test_a_run_end_keeps_the_same_receipt_and_refuses_another(self) -> None:
        """Decision 16, as in ``atomic_apply``: the receipt the session layer
        already committed is accepted and the rest written; a different
        receipt under the same run and sequence is a ``Conflict`` and
        nothing is written."""

        async def body(store: RuntimeStore) -> None:
            if not ends_runs_atomically(store):
                return  # the first test pinned the refusal
            run_id = RunId.new()
            first = rich_state(5, run_id)
            receipt = receipt_for(run_id, [first.input_id])
            await store.atomic_apply(A, None, receipt, [])
            await store.atomic_apply_and_lifecycle_commit(
                A, None, receipt, RuntimeState.IDLE, [first]
            )
            assert await store.load_runtime_state(A) is RuntimeState.IDLE
            other = RunBoundaryReceipt(
                run_id=run_id,
                boundary=RunApplyBoundary.RUN_START,
                contributing_input_ids=[],
                message_count=7,
                sequence=0,
            )
            second = rich_state(5, run_id)
            with pytest.raises(RuntimeStoreError.Conflict):
                await store.atomic_apply_and_lifecycle_commit(
                    A, SNAPSHOT, other, RuntimeState.RETIRED, [second]
                )
            assert await store.load_boundary_receipt(A, run_id, 0) == receipt
            assert await store.load_runtime_state(A) is RuntimeState.IDLE
            assert await store.load_session_snapshot(A) is None
            loaded = await store.load_input_states(A)
            assert [s.input_id for s in loaded] == [first.input_id]

        self.run(body)
