"""PD-70: a run's boundary and its end in one commit.

Over a store that ``ends_runs_atomically`` the session loop writes a
successful run once (receipt, snapshot, consumed inputs, phase); a refusal
of that one write is a refused boundary (W-6a, PD-38: the run is withdrawn,
no attempt counted, no waiter answered) and the input runs again. A store
without it keeps the two writes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from meerkat_runtime import (
    InputLifecycleState,
    LogicalRuntimeId,
    MemoryBlobStore,
    RunResult,
    RuntimeSessionAdapter,
    RuntimeState,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.runs import BoundaryApplied, RunBoundaryReceipt, RunEvent
from meerkat_runtime.sessions.adapter import StoreBackoff
from meerkat_runtime.sessions.completion import Completed
from meerkat_runtime.sessions.executor import StopRuntimeExecutor
from meerkat_runtime.sessions.loop import BOUNDARY_NOT_RECORDED
from meerkat_runtime.testing.conformance import receipt_for
from meerkat_runtime.testing.faults import Fault, FaultyStore

from .executors import Step, ToyExecutor
from .helpers import held, outcome_of, prompt

RESULT = RunResult(text="ok")
FAST = StoreBackoff(initial=0.001, maximum=0.01)
RUN_WRITES = {
    "atomic_apply",
    "atomic_lifecycle_commit",
    "atomic_apply_and_lifecycle_commit",
}


class CountingStore(SqliteRuntimeStore):
    """SQLite, listing the run writes it is asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[str] = []

    async def atomic_apply(self, *args: object, **kwargs: object) -> None:
        self.calls.append("atomic_apply")
        await super().atomic_apply(*args, **kwargs)  # type: ignore[arg-type]

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        self.calls.append("atomic_lifecycle_commit")
        await super().atomic_lifecycle_commit(runtime_id, runtime_state, input_states)

    async def atomic_apply_and_lifecycle_commit(
        self, *args: object, **kwargs: object
    ) -> None:
        self.calls.append("atomic_apply_and_lifecycle_commit")
        await super().atomic_apply_and_lifecycle_commit(*args, **kwargs)  # type: ignore[arg-type]


def adapter_on(store: SqliteRuntimeStore | FaultyStore) -> RuntimeSessionAdapter:
    return RuntimeSessionAdapter.persistent(
        store, MemoryBlobStore(), retry_delay=0.001, store_backoff=FAST
    )


async def receipts(
    store: SqliteRuntimeStore | FaultyStore, rid: LogicalRuntimeId
) -> Counter[InputId]:
    found = await store.load_boundary_receipts(rid)
    return Counter(i for r in found for i in r.contributing_input_ids)


def test_a_successful_run_is_one_write_of_everything(tmp_path: Path) -> None:
    """The run's one write holds the receipt, the consumed input and the
    phase back to idle: no applied-but-not-consumed state ever reaches the
    store, and ``atomic_apply`` is never called."""

    async def main() -> None:
        store = CountingStore(tmp_path / "one.db")
        adapter = adapter_on(store)
        sid = SessionId.new()
        rid = LogicalRuntimeId(str(sid))
        try:
            await adapter.register_session_with_executor(
                sid, ToyExecutor([Step.OK], result=RESULT)
            )
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(sid, p)
            assert await outcome_of(handle) == Completed(run_result=RESULT)
            runs = [c for c in store.calls if c in RUN_WRITES]
            assert runs == ["atomic_apply_and_lifecycle_commit"]
            stored = await store.load_input_state(rid, p.id())
            assert stored is not None
            assert stored.current_state() is InputLifecycleState.CONSUMED
            assert await receipts(store, rid) == Counter({p.id(): 1})
            assert await store.load_runtime_state(rid) in (
                RuntimeState.IDLE,
                RuntimeState.ATTACHED,
            )
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("one_commit_runs", [False, True])
def test_a_refused_run_end_withdraws_the_run_and_it_runs_again(
    tmp_path: Path, one_commit_runs: bool
) -> None:
    """W-6a both ways: the boundary's write (two-write path) or the run's
    one write refused twice; each time the executor is told, nothing is
    on disk, the input stays queued with no attempt counted; then the run
    goes through and the waiter learns it once."""
    method = "atomic_apply_and_lifecycle_commit" if one_commit_runs else "atomic_apply"

    async def main() -> None:
        store = FaultyStore(
            SqliteRuntimeStore(tmp_path / "refused.db"), one_commit_runs=one_commit_runs
        )
        adapter = adapter_on(store)
        sid = SessionId.new()
        rid = LogicalRuntimeId(str(sid))
        try:
            executor = ToyExecutor([Step.OK, Step.OK, Step.HOLD], result=RESULT)
            await adapter.register_session(sid)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(sid, p)
            assert handle is not None
            store.arm(Fault.FAIL, method, times=2)
            await adapter.register_session_with_executor(sid, executor)
            await held(executor.held)
            assert store.fired == [(Fault.FAIL, method)] * 2
            assert not handle.done()
            assert await receipts(store, rid) == Counter()
            stored = await store.load_input_state(rid, p.id())
            assert stored is not None
            assert stored.current_state() is InputLifecycleState.QUEUED
            assert stored.attempt_count() == 0
            reasons = [
                c.reason
                for c in executor.controls
                if isinstance(c, StopRuntimeExecutor)
            ]
            for reason, call in zip(reasons, executor.calls[:2], strict=True):
                assert reason.startswith(
                    BOUNDARY_NOT_RECORDED.format(run_id=call.run_id)
                )
                assert f"injected failure in {method}" in reason
            executor.release.set()
            assert await outcome_of(handle) == Completed(run_result=RESULT)
            assert await receipts(store, rid) == Counter({p.id(): 1})
            stored = await store.load_input_state(rid, p.id())
            assert stored is not None
            assert stored.current_state() is InputLifecycleState.CONSUMED
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def staged_run(driver: PersistentRuntimeDriver, ids: list[InputId]) -> BoundaryApplied:
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_batch(ids, run_id)
    receipt: RunBoundaryReceipt = receipt_for(run_id, ids)
    return RunEvent.BoundaryApplied(
        run_id=run_id, receipt=receipt, session_snapshot=b"snap"
    )


def test_a_driver_over_a_store_without_it_refuses_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """``on_run_end`` only over a store that says it can: otherwise a
    ``ValidationFailed`` naming the store, and the run is as it was."""

    async def main() -> None:
        store = FaultyStore(SqliteRuntimeStore(tmp_path / "two.db"))
        try:
            rid = LogicalRuntimeId("two-writes")
            driver = PersistentRuntimeDriver(rid, store, MemoryBlobStore())
            await driver.recover()
            p = prompt()
            await driver.accept_input(p)
            boundary = staged_run(driver, [p.id()])
            assert not driver.ends_runs_in_one_commit()
            with pytest.raises(ValidationFailedError, match="FaultyStore"):
                await driver.on_run_end(boundary)
            state = driver.input_state(p.id())
            assert state is not None
            assert state.current_state() is InputLifecycleState.STAGED
            assert await store.load_boundary_receipts(rid) == []
        finally:
            await store.close()

    asyncio.run(main())


def test_a_crash_after_the_one_write_recovers_the_run_as_ended(tmp_path: Path) -> None:
    """Decision 14 across a crash: the one write committed, the process died
    before memory learned it; a new driver finds the input consumed, the
    receipt and the snapshot stored, and nothing left to run."""
    path = tmp_path / "crash.db"
    rid = LogicalRuntimeId("crash")

    async def main() -> None:
        store = FaultyStore(SqliteRuntimeStore(path), one_commit_runs=True)
        try:
            driver = PersistentRuntimeDriver(rid, store, MemoryBlobStore())
            await driver.recover()
            p = prompt()
            await driver.accept_input(p)
            boundary = staged_run(driver, [p.id()])
            store.arm(Fault.CRASH_AFTER, "atomic_apply_and_lifecycle_commit")
            with pytest.raises(BaseException, match="crash after"):
                await driver.on_run_end(boundary)
        finally:
            await store.close()
        again = SqliteRuntimeStore(path)
        try:
            fresh = PersistentRuntimeDriver(rid, again, MemoryBlobStore())
            await fresh.recover()
            state = fresh.input_state(p.id())
            assert state is not None
            assert state.current_state() is InputLifecycleState.CONSUMED
            assert fresh.queued_input_ids() == []
            assert await again.load_session_snapshot(rid) == b"snap"
            assert await receipts(again, rid) == Counter({p.id(): 1})
        finally:
            await again.close()

    asyncio.run(main())
