"""A store fault never costs user input (issue 12, item 10).

Rules: W-6a (boundary not recorded), W-6b (run end not recorded), W-7,
decision 3 (only the executor's failures count against an input's
attempts), decision 9 (no waiter answered early), decision 14 (memory equals
the store), PD-38 (a run the store could not record is withdrawn), PD-39
(the store backoff). The store is SQLite behind a ``FaultyStore``; an outage
is ``Fault.FAIL`` armed for several writes, a store broken for good is
``Fault.REFUSE`` (a non-retryable ``WriteFailed``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from meerkat_runtime import (
    FileBlobStore,
    InputId,
    InputLifecycleState,
    LogicalRuntimeId,
    RunResult,
    RuntimeSessionAdapter,
    RuntimeStore,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.sessions.adapter import StoreBackoff
from meerkat_runtime.sessions.completion import Completed, RuntimeTerminated
from meerkat_runtime.sessions.executor import StopRuntimeExecutor
from meerkat_runtime.sessions.loop import BOUNDARY_NOT_RECORDED
from meerkat_runtime.testing.faults import Fault, FaultyStore

from .executors import Step, ToyExecutor
from .helpers import TIMEOUT, held, outcome_of, prompt

RESULT = RunResult(text="ok")
FAST = StoreBackoff(initial=0.001, maximum=0.01)
LOOP_EXITED = RuntimeTerminated(reason="runtime loop exited")


class Disk:
    """One SQLite file and blob folder; each adapter opens its own store."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "runtime.db"
        self.blobs = tmp_path / "blobs"
        self.sid = SessionId.new()
        self.rid = LogicalRuntimeId(str(self.sid))

    def store(self) -> FaultyStore:
        return FaultyStore(SqliteRuntimeStore(self.db))

    def adapter(
        self, store: RuntimeStore, backoff: StoreBackoff = FAST
    ) -> RuntimeSessionAdapter:
        return RuntimeSessionAdapter.persistent(
            store, FileBlobStore(self.blobs), retry_delay=0.001, store_backoff=backoff
        )

    async def receipts(self, store: RuntimeStore) -> Counter[InputId]:
        receipts = await store.load_boundary_receipts(self.rid)
        return Counter(i for r in receipts for i in r.contributing_input_ids)


def stops(executor: ToyExecutor) -> list[str]:
    return [c.reason for c in executor.controls if isinstance(c, StopRuntimeExecutor)]


def test_an_outage_longer_than_the_attempts_abandons_nothing(tmp_path: Path) -> None:
    """The store refuses five boundary commits in a row (more than the three
    attempts an input has), then heals. Each time the executor is told to
    stop with W-6a's reason, the input goes back to Queued with no attempt
    counted (in memory and on disk) and its waiter stays pending; once the
    store answers, the input completes exactly once."""
    disk = Disk(tmp_path)
    refusals = 5

    async def main() -> None:
        store = disk.store()
        adapter = disk.adapter(store)
        try:
            executor = ToyExecutor([Step.OK] * refusals + [Step.HOLD], result=RESULT)
            await adapter.register_session(disk.sid)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(disk.sid, p)
            assert handle is not None
            store.arm(Fault.FAIL, "atomic_apply", times=refusals)
            await adapter.register_session_with_executor(disk.sid, executor)
            await held(executor.held)  # the run after the outage, in flight
            assert store.fired == [(Fault.FAIL, "atomic_apply")] * refusals
            assert not handle.done()
            assert await disk.receipts(store) == Counter()
            stored = await store.load_input_state(disk.rid, p.id())
            assert stored is not None
            assert stored.current_state() is InputLifecycleState.QUEUED
            assert stored.attempt_count() == 0
            state = await adapter.input_state(disk.sid, p.id())
            assert state is not None
            assert state.attempt_count() == 1  # the run in flight, only
            refused_runs = [call.run_id for call in executor.calls[:refusals]]
            assert len(stops(executor)) == refusals
            for reason, run_id in zip(stops(executor), refused_runs, strict=True):
                rule = BOUNDARY_NOT_RECORDED.format(run_id=run_id)
                assert reason.startswith(f"{rule}: Internal error: ")
                assert "Store unavailable: injected failure in atomic_apply" in reason
            executor.release.set()
            assert await outcome_of(handle) == Completed(run_result=RESULT)
            assert await disk.receipts(store) == Counter({p.id(): 1})
            stored = await store.load_input_state(disk.rid, p.id())
            assert stored is not None
            assert stored.current_state() is InputLifecycleState.CONSUMED
            assert stored.attempt_count() == 1
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_a_withdrawal_the_store_refuses_too_waits_for_the_store(
    tmp_path: Path,
) -> None:
    """W-6a when the store is down for the withdrawal's write as well: the
    withdrawal is tried again with the backoff until the store answers;
    meanwhile no other run starts and the input is still Queued on disk.
    Then the input runs again and completes once."""
    disk = Disk(tmp_path)

    async def main() -> None:
        store = disk.store()
        adapter = disk.adapter(store)
        try:
            executor = ToyExecutor([Step.OK, Step.HOLD], result=RESULT)
            await adapter.register_session(disk.sid)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(disk.sid, p)
            store.arm(Fault.FAIL, "atomic_apply")
            await adapter.register_session_with_executor(disk.sid, executor)
            await held(executor.held)
            # The first boundary went; now every write refuses three times:
            # the second boundary and then the withdrawal's writes.
            executor.script = [Step.OK]
            assert store.fired == [(Fault.FAIL, "atomic_apply")]
            store.arm(Fault.FAIL, None, times=3)
            executor.release.set()
            assert await outcome_of(handle) == Completed(run_result=RESULT)
            assert [f for f, _ in store.fired] == [Fault.FAIL] * 4
            assert [m for _, m in store.fired[1:]] == [
                "atomic_apply",
                "atomic_lifecycle_commit",
                "atomic_lifecycle_commit",
            ]
            assert len(executor.calls) == 3
            assert await disk.receipts(store) == Counter({p.id(): 1})
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("method", ["atomic_apply", "atomic_lifecycle_commit"])
def test_a_store_refusing_for_good_ends_the_loop_and_loses_nothing(
    tmp_path: Path, method: str
) -> None:
    """A non-retryable refusal of the boundary (W-6a) or of the run's end
    (W-6b): the executor is told, the loop ends (the waiter hears "runtime
    loop exited") and nothing more is written: on disk the input is still
    Queued with no attempt counted (boundary) or applied with its receipt
    (end). A new adapter on the same file recovers it and completes it,
    running it at most once more; one receipt in all."""
    disk = Disk(tmp_path)

    async def main() -> None:
        store = disk.store()
        adapter = disk.adapter(store)
        p = prompt()
        try:
            executor = ToyExecutor(result=RESULT)
            await adapter.register_session(disk.sid)
            _, handle = await adapter.accept_input_with_completion(disk.sid, p)
            store.arm(Fault.REFUSE, method)
            await adapter.register_session_with_executor(disk.sid, executor)
            assert await outcome_of(handle) == LOOP_EXITED
            (reason,) = stops(executor)
            assert "Store write failed: injected refusal" in reason
            stored = await store.load_input_state(disk.rid, p.id())
            assert stored is not None
            if method == "atomic_apply":
                assert stored.current_state() is InputLifecycleState.QUEUED
                assert stored.attempt_count() == 0
                assert await disk.receipts(store) == Counter()
            else:
                phase = stored.current_state()
                assert phase is InputLifecycleState.APPLIED_PENDING_CONSUMPTION
        finally:
            await adapter.close()
            await store.close()

        store = disk.store()
        adapter = disk.adapter(store)
        try:
            again = ToyExecutor(result=RESULT)
            await adapter.register_session_with_executor(disk.sid, again)
            handle = await adapter.completion_for(disk.sid, p.id())
            if handle is not None:  # else recovery consumed it by its receipt
                await outcome_of(handle)
            stored = await store.load_input_state(disk.rid, p.id())
            assert stored is not None
            assert stored.current_state() is InputLifecycleState.CONSUMED
            assert await disk.receipts(store) == Counter({p.id(): 1})
            assert len(again.calls) == (1 if method == "atomic_apply" else 0)
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_stop_does_not_wait_out_the_store_backoff(tmp_path: Path) -> None:
    """PD-39: the loop's pauses for the store end when a Stop arrives. With a
    backoff of an hour, a Stop sent after a refused boundary is carried out
    at once (the bound below is only the suite's hang guard)."""
    disk = Disk(tmp_path)

    async def main() -> None:
        store = disk.store()
        hour = StoreBackoff(initial=3600.0, maximum=3600.0)
        adapter = disk.adapter(store, backoff=hour)
        try:
            executor = ToyExecutor(result=RESULT)
            await adapter.register_session(disk.sid)
            _, handle = await adapter.accept_input_with_completion(disk.sid, prompt())
            store.arm(Fault.FAIL, "atomic_apply")
            await adapter.register_session_with_executor(disk.sid, executor)

            async def told() -> None:
                while not stops(executor):
                    await asyncio.sleep(0)

            await asyncio.wait_for(told(), TIMEOUT)
            stop = StopRuntimeExecutor(reason="operator")
            await asyncio.wait_for(
                adapter.stop_runtime_executor(disk.sid, stop), TIMEOUT
            )
            assert await outcome_of(handle) == RuntimeTerminated(
                reason="runtime stopped"
            )
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_store_backoff_doubles_up_to_its_maximum() -> None:
    backoff = StoreBackoff(initial=0.05, maximum=5.0)
    pauses = [backoff.pause(n) for n in range(10)]
    assert pauses[:4] == [0.05, 0.1, 0.2, 0.4]
    assert pauses[-1] == 5.0
    assert backoff.pause(10_000) == 5.0  # no overflow after a long outage
    assert StoreBackoff() == backoff  # the documented default


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_store_backoff_refuses_nonsense(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match=r"StoreBackoff needs 0 < initial <= maximum"):
        StoreBackoff(initial=initial, maximum=maximum)
