"""Cancel-safe stores (decision 14 under cancellation, without a task per
write): a caller cancelled while its write is in flight learns how the write
ended, so the driver's memory follows the store. A write that committed is
kept (the store raises ``CommittedThenCancelled``, a ``CancelledError``; the
driver keeps memory and its caller stays cancelled); one that never ran or
failed leaves nothing. The generic path, for stores that
do not declare ``cancel_safe_writes``, is tests/driver/test_cancelled_write.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from meerkat_runtime import LogicalRuntimeId, PromptInput, RuntimeState
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.outcomes import Accepted, Deduplicated
from meerkat_runtime.store import InMemoryRuntimeStore, SqliteRuntimeStore
from meerkat_runtime.store.base import CommittedThenCancelled, RuntimeStoreError
from meerkat_runtime.store.sqlite_writer import SOLO_STREAK
from meerkat_runtime.testing.conformance import poisoned, rich_state

RID = LogicalRuntimeId("c")
T = TypeVar("T")


def run(body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await body()

    asyncio.run(main())


async def started(store: SqliteRuntimeStore) -> PersistentRuntimeDriver:
    driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
    await driver.recover()
    return driver


async def cancelled_in_the_writer(
    store: SqliteRuntimeStore, call: Coroutine[Any, Any, T]
) -> tuple[asyncio.Task[T], int]:
    """Start ``call`` while the writer thread cannot commit, cancel it once
    the writer holds its request, then let the writer go on. Returns the
    task and how many requests the store counted in flight meanwhile."""
    with store.writer.paused():  # (also on failure: the writer goes on after)
        task = asyncio.ensure_future(call)
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.01)
        in_flight = store.writer.in_flight()
    return task, in_flight


def test_stores_declare_cancel_safe_writes() -> None:
    assert SqliteRuntimeStore.cancel_safe_writes
    assert InMemoryRuntimeStore.cancel_safe_writes


def test_cancelled_while_the_writer_thread_commits_keeps_the_input(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "c.db") as store:
            driver = await started(store)  # one write: still through the thread
            inp = PromptInput.new("in flight")
            task, _ = await cancelled_in_the_writer(store, driver.accept_input(inp))
            with pytest.raises(asyncio.CancelledError):  # the caller stays cancelled
                await task
            assert await store.load_input_state(RID, inp.id()) is not None
            assert driver.input_state(inp.id()) is not None
            assert isinstance(await driver.accept_input(inp), Deduplicated)

    run(body)


def test_cancelled_while_the_writer_thread_fails_raises_plain_cancel(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "c.db") as store:
            bad = poisoned(rich_state(1))  # fails in the writer thread
            task, _ = await cancelled_in_the_writer(
                store, store.atomic_lifecycle_commit(RID, RuntimeState.IDLE, [bad])
            )
            with pytest.raises(asyncio.CancelledError) as raised:
                await task
            assert not isinstance(raised.value, CommittedThenCancelled)
            assert await store.load_input_states(RID) == []

    run(body)


def test_cancelled_before_an_inline_commit_leaves_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "c.db") as store:
            driver = await started(store)
            for i in range(SOLO_STREAK):
                await driver.accept_input(PromptInput.new(f"warm {i}"))
            while store.writer.holding_connection():  # it answers, then lets go
                await asyncio.sleep(0.001)
            assert store.writer.next_write_inline()
            inp = PromptInput.new("cancelled at the yield")
            task = asyncio.ensure_future(driver.accept_input(inp))
            await asyncio.sleep(0)  # the accept now waits at the store's one yield
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as raised:
                await task
            assert not isinstance(raised.value, CommittedThenCancelled)
            assert await store.load_input_state(RID, inp.id()) is None
            assert driver.input_state(inp.id()) is None
            assert isinstance(await driver.accept_input(inp), Accepted)

    run(body)


def test_memory_store_cancelled_while_waiting_for_its_lock_leaves_nothing() -> None:
    async def body() -> None:
        store = InMemoryRuntimeStore()
        driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
        await driver.recover()
        inp = PromptInput.new("waits for the lock")
        async with store.writes_paused():
            task = asyncio.ensure_future(driver.accept_input(inp))
            await asyncio.sleep(0)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.load_input_state(RID, inp.id()) is None
        assert driver.input_state(inp.id()) is None

    run(body)


class CancelOnAnswer(SqliteRuntimeStore):
    """Cancels a chosen task the moment its write is answered, before the
    task resumes: the answer is in its future, the cancellation wins."""

    victim: asyncio.Task[object] | None = None

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writer.hooks.answered = self._cancel_victim

    def _cancel_victim(self) -> None:  # called right after the answer is set
        if self.victim is not None:
            self.victim.cancel()
            self.victim = None


def test_cancelled_after_the_answer_arrived_keeps_the_input(tmp_path: Path) -> None:
    async def body() -> None:
        async with CancelOnAnswer(tmp_path / "c.db") as store:
            driver = await started(store)
            inp = PromptInput.new("answered, then cancelled")
            task: asyncio.Task[object] = asyncio.ensure_future(driver.accept_input(inp))
            store.victim = task
            with pytest.raises(asyncio.CancelledError):
                await task
            assert store.victim is None  # the cancellation did happen
            assert await store.load_input_state(RID, inp.id()) is not None
            assert driver.input_state(inp.id()) is not None

    run(body)


def test_a_cancelled_request_counts_as_in_flight_until_answered(
    tmp_path: Path,
) -> None:
    """While the writer still holds a cancelled caller's request, no lone
    caller may take the inline path (it would find the store busy, or be
    queued behind a close and wait for ever)."""

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "c.db") as store:
            task, in_flight = await cancelled_in_the_writer(
                store, store.persist_input_state(RID, rich_state(1))
            )
            assert in_flight == 1
            with pytest.raises(CommittedThenCancelled):
                await task
            assert store.writer.in_flight() == 0

    run(body)


def test_a_write_at_its_yield_when_the_store_closes_fails_at_once(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "c.db")
        for _ in range(SOLO_STREAK):
            await store.persist_input_state(RID, rich_state(1))
            while store.writer.holding_connection():
                await asyncio.sleep(0.001)
        write = asyncio.ensure_future(store.persist_input_state(RID, rich_state(1)))
        closing = asyncio.ensure_future(store.close())  # runs during the yield
        done, _ = await asyncio.wait({write}, timeout=5)
        assert done, "the write waited for a writer that had stopped"
        with pytest.raises(RuntimeStoreError, match="closed"):
            write.result()
        await closing

    run(body)


def test_a_cancelled_read_of_a_memory_database_is_a_plain_cancel() -> None:
    """``":memory:"`` reads go through the writer; a cancelled one must not
    claim to have committed (a driver would keep unwritten changes)."""

    async def body() -> None:
        async with SqliteRuntimeStore(":memory:") as store:
            task, _ = await cancelled_in_the_writer(store, store.load_input_states(RID))
            with pytest.raises(asyncio.CancelledError) as raised:
                await task
            assert not isinstance(raised.value, CommittedThenCancelled)

    run(body)
