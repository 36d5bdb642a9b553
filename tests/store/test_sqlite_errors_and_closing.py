"""The SQLite store at its edges: merged statements, rows or states it cannot
write, hand-overs between threads, close racing writes and readers, and files
or records it must refuse.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    LogicalRuntimeId,
    MemoryBlobStore,
    PersistentRuntimeDriver,
    RunId,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.store import (
    SqliteRuntimeStore,
    sqlite_schema,
    sqlite_writer,
)
from meerkat_runtime.store.base import (
    ReadFailedError,
    RuntimeStoreError,
    SessionDelta,
    StoreInternalError,
)
from meerkat_runtime.store.sqlite_boundary import is_busy
from meerkat_runtime.store.sqlite_schema import SCHEMA_VERSION
from meerkat_runtime.store.sqlite_writer import SOLO_STREAK
from meerkat_runtime.store.verify import verify
from meerkat_runtime.testing.conformance import receipt_for
from tests.store.sqlite import (
    A,
    group_sizes,
    queued_state,
    run,
)


def test_merged_statement_sizes_add_up_and_stay_few() -> None:
    """Every row lands in exactly one statement; at most eight statement
    shapes exist, so they all stay in sqlite3's statement cache."""
    shapes: set[int] = set()
    for count in range(0, 1200):
        sizes = sqlite_writer.merged_sizes(count)
        assert sum(sizes) == count
        assert all(0 < size <= sqlite_schema.MERGED_ROWS for size in sizes)
        shapes.update(sizes)
    assert len(shapes) <= 8


async def _piled_up(
    path: Path, writes: list[Coroutine[Any, Any, None]]
) -> list[object]:
    """Run ``writes`` at once while another connection holds the write lock,
    so they reach the writer thread as one group."""
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.2, blocker.execute, "COMMIT")
        return list(await asyncio.gather(*writes, return_exceptions=True))
    finally:
        blocker.close()


def test_a_row_sqlite_cannot_bind_fails_alone_in_a_merged_group(tmp_path: Path) -> None:
    """Review finding: a value that fails while the merged statement is
    bound (a runtime id with a lone surrogate is not UTF-8) must not fail the
    group: the rows run one by one and only that caller fails."""
    path = tmp_path / "bind.db"
    odd = LogicalRuntimeId("odd \udc80 runtime")

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            sizes = group_sizes(store)
            good = [queued_state(f"g{i}") for i in range(10)]
            writes = [store.persist_input_state(A, s) for s in good]
            writes.insert(5, store.persist_input_state(odd, queued_state("odd")))
            results = await _piled_up(path, writes)
            assert max(sizes) > 1
            assert [i for i, r in enumerate(results) if r is not None] == [5]
            assert isinstance(results[5], RuntimeStoreError)
            stored = {s.input_id for s in await store.load_input_states(A)}
            assert stored == {s.input_id for s in good}

    run(body)


def test_a_state_that_cannot_be_encoded_fails_as_a_store_write(
    tmp_path: Path,
) -> None:
    """Review finding: ``persist_input_state`` encodes on the caller; any
    encoding failure is still a ``RuntimeStoreError``, and nothing is written."""

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "enc.db") as store:
            state = queued_state()
            state.reconstruction_source = "not UTF-8 \udc80"
            with pytest.raises(RuntimeStoreError):
                await store.persist_input_state(A, state)
            assert await store.load_input_states(A) == []

    run(body)


def test_writes_queued_in_one_loop_turn_reach_the_writer_as_one_group(
    tmp_path: Path,
) -> None:
    """Issue 18: 64 sessions queueing in one turn of the event loop are one
    commit group, with no other connection holding them back: the writer
    is handed the turn's requests together, not the first few as they come
    (which split the sessions into groups that each paid a flush)."""

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "turn.db") as store:
            sizes = group_sizes(store)
            states = [queued_state(f"t{i}") for i in range(64)]
            await asyncio.gather(*(store.persist_input_state(A, s) for s in states))
            assert sizes == [64]
            assert len(await store.load_input_states(A)) == 64

    run(body)


def test_close_while_another_thread_commits_inline_does_not_crash(
    tmp_path: Path,
) -> None:
    """Review finding: the writer thread closed the write connection while a
    lone caller on another thread's event loop was committing on it inline,
    and the process died of a segmentation fault. Now every write either
    commits or is refused as closed, and the process lives."""
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("close_race_child.py")),
            str(tmp_path / "race.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = done.stdout.strip().split(" | ")
    assert len(outcomes) == 5
    assert all(o == "committed" or "closed" in o for o in outcomes), outcomes


def close_before_queueing(store: SqliteRuntimeStore) -> None:
    """The next write's queueing comes just after another thread's close()
    (between the write's open check and its queueing)."""

    def close_now() -> None:
        store.writer.hooks.queued = None
        store.writer.stop()
        store.writer.join()

    store.writer.hooks.queued = close_now


def test_a_write_queued_as_the_store_closes_is_refused_not_left_waiting(
    tmp_path: Path,
) -> None:
    """Review finding: a write that passed the open check just before
    close() was queued after the writer's last look at the queue, and
    waited for ever (cancelling it did not help). It is refused as closed."""

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "late.db")
        close_before_queueing(store)
        write = asyncio.ensure_future(store.persist_runtime_state(A, RuntimeState.IDLE))
        await asyncio.wait({write}, timeout=5)
        assert write.done()
        with pytest.raises(StoreInternalError, match="closed"):
            write.result()
        await store.close()

    run(body)


def test_a_newer_file_is_refused_at_once_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: the refusal's text holds the path, and a path saying
    "locked" made the open-retry loop take it for a busy file and retry for
    5 s. It is refused on the first attempt (no retry pause)."""
    path = tmp_path / "unlocked-busy.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    def no_retry(seconds: float) -> None:
        raise AssertionError(f"retried opening after a {seconds} s pause")

    monkeypatch.setattr(time, "sleep", no_retry)  # what the retry loop calls
    with pytest.raises(sqlite_schema.SchemaTooNewError, match="newer"):
        SqliteRuntimeStore(path)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("runtime_input_states", "state_json"),
        ("runtime_boundary_receipts", "receipt_json"),
        ("runtime_session_snapshots", "session_snapshot"),
        ("runtime_states", "runtime_state_json"),
    ],
)
def test_a_record_stored_as_text_is_a_read_failure_on_every_path(
    tmp_path: Path, table: str, column: str
) -> None:
    """S-10 and the corrupt-data rule: a column holding text instead of bytes
    (foreign or damaged data) is ``ReadFailed`` naming the table wherever it
    is read, never a bare TypeError; recovery fails closed."""
    path = tmp_path / "text.db"

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            state = queued_state()
            run_id = state.last_run_id() or RunId.new()
            await store.atomic_lifecycle_commit(A, RuntimeState.RETIRED, [state])
            await store.atomic_apply(
                A, SessionDelta(session_snapshot=b"{}"), receipt_for(run_id, []), []
            )
        conn = sqlite3.connect(path)
        conn.execute(f"UPDATE {table} SET {column} = CAST({column} AS TEXT)")
        conn.commit()
        conn.close()
        async with SqliteRuntimeStore(path) as store:
            reads: dict[str, list[Callable[[], Awaitable[object]]]] = {
                "runtime_input_states": [
                    lambda: store.load_input_states(A),
                    lambda: store.load_input_state(A, state.input_id),
                    lambda: verify(store, A),
                ],
                "runtime_boundary_receipts": [
                    lambda: store.load_boundary_receipt(A, run_id, 0),
                    lambda: store.load_boundary_receipts(A),
                    lambda: verify(store, A),
                ],
                "runtime_session_snapshots": [lambda: store.load_session_snapshot(A)],
                "runtime_states": [lambda: store.load_runtime_state(A)],
            }
            for read in reads[table]:
                with pytest.raises(ReadFailedError, match=f"{table}.*stored as str"):
                    await read()
            if table in ("runtime_input_states", "runtime_states"):
                driver = PersistentRuntimeDriver(A, store, MemoryBlobStore())
                with pytest.raises(RuntimeDriverError.Internal, match=table):
                    await driver.recover()
                assert driver.runtime_state() is RuntimeState.IDLE
                assert driver.queued_input_ids() == []

    run(body)


def test_a_damaged_file_whose_path_says_locked_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second review: whether to retry opening was read from the error's text,
    which holds the path; now from SQLite's result code. A version-1 file
    without its tables fails to migrate on the first attempt, under a
    directory called "locked" too."""
    path = tmp_path / "locked" / "runtime.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    def no_retry(seconds: float) -> None:
        raise AssertionError(f"retried opening after a {seconds} s pause")

    monkeypatch.setattr(time, "sleep", no_retry)
    with pytest.raises(StoreInternalError, match="no such table"):
        SqliteRuntimeStore(path)


def close_before_inline(store: SqliteRuntimeStore) -> None:
    """The next inline commit, just before it takes the connection, first
    lets another thread close the store (as a GIL switch may)."""

    def close_in_another_thread() -> None:
        store.writer.hooks.before_inline = None
        closer = threading.Thread(target=lambda: asyncio.run(store.close()))
        closer.start()
        closer.join()

    store.writer.hooks.before_inline = close_in_another_thread


def test_an_inline_commit_racing_close_is_refused_as_closed(tmp_path: Path) -> None:
    """Second review: a lone caller that passed the open check while another
    thread closed the store committed on the closed connection and got a bare
    sqlite3.ProgrammingError; it gets the store's "closed" error."""

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "inline-close.db")
        for _ in range(SOLO_STREAK + 2):  # alone long enough to commit inline
            await store.persist_runtime_state(A, RuntimeState.IDLE)
        close_before_inline(store)
        with pytest.raises(StoreInternalError, match="closed"):
            await store.persist_runtime_state(A, RuntimeState.RETIRED)
        await store.close()

    run(body)


def test_close_again_after_a_cancelled_close_finishes_it(tmp_path: Path) -> None:
    """Review suspicion: a close() cancelled while waiting for the writer left
    the reader connections open, and a second close() returned at once."""

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "reclose.db")
        await store.persist_runtime_state(A, RuntimeState.IDLE)
        assert await store.load_runtime_state(A) is RuntimeState.IDLE  # a reader
        assert store.readers.open_connections() == 1
        first = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.wait({first})
        await store.close()
        assert store.readers.open_connections() == 0
        assert not store.writer.running()

    run(body)


def test_a_close_after_one_cancelled_among_the_readers_waits_for_them(
    tmp_path: Path,
) -> None:
    """Final review: cancelled while closing a busy reader connection, a first
    close() had already emptied the list, and a second returned at once with
    the reader still open. The second waits until it is closed."""

    in_query, go_on = threading.Event(), threading.Event()
    # Released each time a close() is about to wait for the reader.
    closes_waiting = threading.Semaphore(0)

    def hold() -> None:  # a reader in the middle of a query
        in_query.set()
        go_on.wait(30)

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "readers.db")
        await store.persist_input_state(A, queued_state())
        store.readers.hooks.chunk = hold
        store.readers.hooks.close_wait = closes_waiting.release
        load = asyncio.ensure_future(store.load_input_states(A))
        await asyncio.to_thread(in_query.wait, 30)
        try:
            first = asyncio.ensure_future(store.close())
            assert await asyncio.to_thread(closes_waiting.acquire, True, 30)
            first.cancel()
            await asyncio.wait({first})
            second = asyncio.ensure_future(store.close())
            assert await asyncio.to_thread(closes_waiting.acquire, True, 30)
            assert not second.done()  # waits for the reader
            assert store.readers.open_connections() == 1
        finally:
            go_on.set()  # (also on failure: the worker thread waits on it)
        await second
        assert store.readers.open_connections() == 0
        await asyncio.wait({load})

    run(body)


def test_a_receipt_sequence_beyond_sqlite_integers_is_a_read_failure(
    tmp_path: Path,
) -> None:
    """Final review: 2**63 reached sqlite3 and came back as a bare
    OverflowError."""

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "big.db") as store:
            with pytest.raises(ReadFailedError, match="out of range"):
                await store.load_boundary_receipt(A, RunId.new(), 2**63)

    run(body)


def test_is_busy_survives_an_error_that_is_its_own_cause() -> None:
    """``raise as_store_error(exc) from exc`` makes a store error its own
    cause; asking whether it means "busy" must not recurse for ever."""
    error = StoreInternalError("x")
    error.__cause__ = error
    assert not is_busy(error)
