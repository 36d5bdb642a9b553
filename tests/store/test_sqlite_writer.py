"""The SQLite store's writer: several store objects and processes on one file,
closing, and group commit (a failing request fails alone in its group).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    LogicalRuntimeId,
    PromptInput,
    RuntimeState,
)
from meerkat_runtime.input_state import InputState
from meerkat_runtime.store import (
    SqliteRuntimeStore,
    sqlite_schema,
    sqlite_writer,
)
from meerkat_runtime.store.base import (
    RuntimeStoreError,
)
from meerkat_runtime.store.sqlite_writer import SOLO_STREAK
from meerkat_runtime.testing.conformance import poisoned, rich_state
from tests.store.sqlite import (
    SHARED,
    A,
    group_sizes,
    queued_state,
    run,
)

# ---------------------------------------------------------------- sharing


def test_two_store_objects_on_one_file_see_each_others_writes(
    tmp_path: Path,
) -> None:
    """Several store objects (one process) on one file: each sees what the
    other committed, as soon as the write is acknowledged."""
    path = tmp_path / "runtime.db"

    async def body() -> None:
        async with SqliteRuntimeStore(path) as one, SqliteRuntimeStore(path) as two:
            first, second = queued_state("one"), queued_state("two")
            await one.persist_input_state(A, first)
            assert await two.load_input_state(A, first.input_id) == first
            await two.persist_input_state(A, second)
            await two.persist_runtime_state(A, RuntimeState.RETIRED)
            assert await one.load_input_states(A) == [first, second]
            assert await one.load_runtime_state(A) is RuntimeState.RETIRED

    run(body)


def test_memory_stores_are_private() -> None:
    """``":memory:"``: each store object has its own database."""

    async def body() -> None:
        async with (
            SqliteRuntimeStore(":memory:") as one,
            SqliteRuntimeStore(":memory:") as two,
        ):
            state = queued_state()
            await one.persist_input_state(A, state)
            await one.persist_runtime_state(A, RuntimeState.IDLE)
            assert await one.load_input_states(A) == [state]
            assert await two.load_input_states(A) == []
            assert await two.load_runtime_state(A) is None

    run(body)


# ---------------------------------------------------------------- closing


def test_closed_store_refuses_calls_and_close_is_idempotent(tmp_path: Path) -> None:
    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "runtime.db")
        await store.persist_input_state(A, queued_state())
        await store.close()
        await store.close()
        calls: list[Awaitable[object]] = [
            store.persist_input_state(A, queued_state()),
            store.atomic_lifecycle_commit(A, RuntimeState.IDLE, []),
            store.load_input_states(A),
            store.load_runtime_state(A),
        ]
        for call in calls:
            with pytest.raises(RuntimeStoreError, match="closed"):
                await call

    run(body)


# ---------------------------------------------------------------- group commit


def test_many_concurrent_writers_all_commit(tmp_path: Path) -> None:
    """Group commit: 200 concurrent persists over 20 runtimes all succeed
    and are all readable afterwards, each under its own runtime."""

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "runtime.db") as store:
            runtimes = [LogicalRuntimeId(f"rt-{i:02d}") for i in range(20)]
            writes = [(runtimes[i % 20], queued_state(f"s{i}")) for i in range(200)]
            await asyncio.gather(
                *(store.persist_input_state(rid, s) for rid, s in writes)
            )
            for rid in runtimes:
                expected = sorted(
                    (s for r, s in writes if r == rid), key=lambda s: str(s.input_id)
                )
                assert await store.load_input_states(rid) == expected

    run(body)


def test_callers_on_several_event_loops_each_get_their_own_answers(
    tmp_path: Path,
) -> None:
    """One store shared by three threads, each with its own event loop and
    40 concurrent writes: the writer answers each loop's callers on that
    loop (answers go out batched per loop), every write is acknowledged
    once and is on disk."""

    async def writes(store: SqliteRuntimeStore, rid: LogicalRuntimeId) -> None:
        states = [queued_state(f"{rid} {i}") for i in range(40)]
        loop = asyncio.get_running_loop()
        acked: list[asyncio.AbstractEventLoop] = []

        async def one(state: InputState) -> None:
            await store.persist_input_state(rid, state)
            acked.append(asyncio.get_running_loop())

        await asyncio.gather(*(one(s) for s in states))
        assert acked == [loop] * len(states)

    errors: list[BaseException] = []

    def in_own_loop(store: SqliteRuntimeStore, rid: LogicalRuntimeId) -> None:
        try:
            asyncio.run(writes(store, rid), debug=True)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "loops.db") as store:
            rids = [LogicalRuntimeId(f"loop-{i}") for i in range(3)]
            threads = [
                threading.Thread(target=in_own_loop, args=(store, rid), daemon=True)
                for rid in rids
            ]
            for thread in threads:
                thread.start()

            # A guard, not a timing: an answer settled on the wrong loop
            # raises there (debug loops check the thread), and its caller's
            # task is never woken again, so its thread would never end.
            def join_all() -> None:
                for thread in threads:
                    thread.join(timeout=30)

            await asyncio.to_thread(join_all)
            assert not [t for t in threads if t.is_alive()], (
                "a caller was never answered"
            )
            assert errors == []
            for rid in rids:
                assert len(await store.load_input_states(rid)) == 40

    run(body)


def test_a_failing_request_fails_alone_in_its_group(tmp_path: Path) -> None:
    """Group commit: when one request of a group fails in the writer (a
    lifecycle commit carrying a state that cannot be encoded) only its
    caller gets the error; the others are written. A second
    connection holds the write lock meanwhile, so the requests pile up and
    are committed together (the group sizes are recorded to prove it)."""
    path = tmp_path / "runtime.db"

    async def body() -> None:
        store = SqliteRuntimeStore(path)
        try:
            sizes = group_sizes(store)
            good = [queued_state(f"g{i}") for i in range(60)]
            bad = poisoned(rich_state(1))
            blocker = sqlite3.connect(path, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                loop = asyncio.get_running_loop()
                loop.call_later(0.3, blocker.execute, "COMMIT")
                results = await asyncio.gather(
                    *(store.persist_input_state(A, s) for s in good[:30]),
                    store.atomic_lifecycle_commit(A, RuntimeState.IDLE, [bad]),
                    *(store.persist_input_state(A, s) for s in good[30:]),
                    return_exceptions=True,
                )
            finally:
                blocker.close()
            failures = [r for r in results if isinstance(r, BaseException)]
            assert len(failures) == 1
            assert isinstance(failures[0], RuntimeStoreError)
            assert isinstance(results[30], RuntimeStoreError)
            stored = {s.input_id for s in await store.load_input_states(A)}
            assert stored == {s.input_id for s in good}
            assert sum(sizes) == 61
            assert max(sizes) > 30, sizes
        finally:
            await store.close()

    run(body)


def test_a_lone_writer_blocked_by_another_connection_waits_without_freezing_the_loop(
    tmp_path: Path,
) -> None:
    """A caller writing alone commits inline; when another connection (a
    sibling process) holds the write lock, the inline attempt must not wait
    inside SQLite on the event loop's thread: it hands the write to the
    writer thread, which waits the lock out and commits. Other coroutines
    keep running meanwhile."""
    path = tmp_path / "blocked.db"

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            for i in range(SOLO_STREAK + 2):  # long enough to be inline
                await store.persist_input_state(A, queued_state(f"warm {i}"))
            blocker = sqlite3.connect(path, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                ticks = 0
                writing = True

                async def ticker() -> None:
                    nonlocal ticks
                    while writing:
                        ticks += 1
                        await asyncio.sleep(0.01)

                ticks_before_release: list[int] = []

                def release() -> None:
                    ticks_before_release.append(ticks)
                    blocker.execute("COMMIT")

                ticking = asyncio.create_task(ticker())
                asyncio.get_running_loop().call_later(0.3, release)
                blocked = queued_state("blocked")
                await store.persist_input_state(A, blocked)
                writing = False
                await ticking
            finally:
                blocker.close()
            # The loop ran while the lock was held (a frozen loop would
            # have run neither the ticker nor, until SQLite gave up, this).
            assert ticks_before_release[0] > 1
            stored = await store.load_input_state(A, blocked.input_id)
            assert stored == blocked

    run(body)


def test_a_group_of_input_rows_commits_merged_and_a_failing_row_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group of nothing but ``persist_input_state`` calls is written as a
    few merged statements (up to ``MERGED_ROWS`` rows each); when one row
    fails inside SQLite (here a trigger refuses it), nothing of the merged
    attempt stays, the rows run one by one, and only that caller fails."""
    path = tmp_path / "merged.db"
    monkeypatch.setattr(sqlite_schema, "MERGED_ROWS", 7)
    monkeypatch.setattr(sqlite_writer, "MERGED_ROWS", 7)
    merged: list[int] = []  # rows per merged statement
    build = sqlite_schema.upsert_inputs_sql

    def counting(count: int) -> str:
        merged.append(count)
        return build(count)

    monkeypatch.setattr(sqlite_writer, "upsert_inputs_sql", counting)

    async def body(refused: InputState | None) -> list[object]:
        states = [queued_state(f"m{i}") for i in range(40)]
        if refused is not None:
            states[25] = refused
        async with SqliteRuntimeStore(path) as store:
            sizes = group_sizes(store)
            blocker = sqlite3.connect(path, isolation_level=None)
            try:  # the requests pile up behind another connection's lock
                blocker.execute("BEGIN IMMEDIATE")
                asyncio.get_running_loop().call_later(0.2, blocker.execute, "COMMIT")
                results: list[object] = await asyncio.gather(
                    *(store.persist_input_state(A, s) for s in states),
                    return_exceptions=True,
                )
            finally:
                blocker.close()
            assert max(sizes) > MERGED_ROWS_UNDER_TEST, sizes  # merged statements
            mine = {s.input_id for s in states}
            stored = {s.input_id for s in await store.load_input_states(A)} & mine
            ok = {s.input_id for s, r in zip(states, results, strict=True) if r is None}
            assert stored == ok
        return results

    results = asyncio.run(body(None))
    assert all(r is None for r in results)
    assert max(merged) == MERGED_ROWS_UNDER_TEST  # statements of 7 rows were used
    refused = queued_state("refused by the trigger")
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON runtime_input_states "
        f"WHEN NEW.input_id = '{refused.input_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    conn.commit()
    conn.close()
    results = asyncio.run(body(refused))
    failures = [r for r in results if r is not None]
    assert len(failures) == 1
    assert isinstance(results[25], RuntimeStoreError)
    assert "refused" in str(results[25])


MERGED_ROWS_UNDER_TEST = 7


def test_open_waits_for_a_writer_on_a_file_not_yet_in_wal(tmp_path: Path) -> None:
    """S-10 (busy_timeout) and the module's promise that several processes
    may open one file: opening waits while another connection briefly holds
    a write transaction on a file that is not in WAL mode yet (what a sibling
    process creating the schema does), instead of failing at once."""
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE sibling_setup (x INTEGER)")
        release = threading.Timer(0.2, other.execute, ("COMMIT",))
        release.start()
        try:
            store = SqliteRuntimeStore(path)
        finally:
            release.join()
        run(store.close)
    finally:
        other.close()


# ---------------------------------------------------------------- processes

PER_PROCESS = 200


async def _write_many(path: str, worker: int) -> None:
    async with SqliteRuntimeStore(path) as store:
        for chunk in range(0, PER_PROCESS, 20):
            await asyncio.gather(
                *(
                    store.persist_input_state(
                        SHARED, queued_state(f"worker {worker} input {chunk + i}")
                    )
                    for i in range(20)
                )
            )


def _child_writes(path: str, worker: int, start: Any) -> None:
    """A child process: wait for the sibling, then write through its own store."""
    start.wait(30)
    asyncio.run(_write_many(path, worker))


def test_two_processes_write_the_same_file(tmp_path: Path) -> None:
    """Several processes on one file: two spawned children write 200 input
    states each, concurrently, each through its own store; the parent then
    reads all 400 and the file passes ``PRAGMA integrity_check``. The parent
    creates the file first (a first open racing another is pinned by
    test_open_waits_for_a_writer_on_a_file_not_yet_in_wal)."""
    path = tmp_path / "shared.db"
    run(SqliteRuntimeStore(path).close)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    children = [
        context.Process(target=_child_writes, args=(str(path), worker, start))
        for worker in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            states = await store.load_input_states(SHARED)
            assert len(states) == 2 * PER_PROCESS
            texts = {
                s.persisted_input.text
                for s in states
                if isinstance(s.persisted_input, PromptInput)
            }
            assert len(texts) == 2 * PER_PROCESS
            assert len({s.input_id for s in states}) == 2 * PER_PROCESS

    run(body)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
