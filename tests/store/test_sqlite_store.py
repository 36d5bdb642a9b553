"""SQLite-specific behaviour of ``SqliteRuntimeStore`` (S-10 and the port's
additions: schema versioning, WAL with configurable ``synchronous``, group
commit, several store objects and processes on one file). The shared
contract is covered by the conformance suite (test_store_conformance.py).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    LogicalRuntimeId,
    MemoryBlobStore,
    PersistentRuntimeDriver,
    PromptInput,
    RunId,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import InputDurability
from meerkat_runtime.store import (
    SqliteRuntimeStore,
    sqlite_reader,
    sqlite_schema,
    sqlite_setup,
    sqlite_writer,
)
from meerkat_runtime.store.base import (
    ReadFailedError,
    RuntimeStoreError,
    SessionDelta,
    StoreInternalError,
)
from meerkat_runtime.store.records import (
    INPUTS,
    RECEIPTS,
    SNAPSHOTS,
    STATES,
    encode_state,
)
from meerkat_runtime.store.sqlite_boundary import is_busy
from meerkat_runtime.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, apply_step
from meerkat_runtime.store.sqlite_writer import SOLO_STREAK
from meerkat_runtime.store.verify import verify
from meerkat_runtime.testing.conformance import poisoned, receipt_for, rich_state
from tests.store.test_wire_legacy import EXPECTED as LEGACY_EXPECTED
from tests.store.test_wire_legacy import PENDING as LEGACY_PENDING
from tests.store.test_wire_legacy import copy_legacy

A = LogicalRuntimeId("sqlite-a")
SHARED = LogicalRuntimeId("sqlite-shared")


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def queued_state(text: str = "hello") -> InputState:
    inp = PromptInput.new(text)
    state = InputState.new_accepted(inp.id())
    state.persisted_input = inp
    state.durability = InputDurability.DURABLE
    return state


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def make_newer_file(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE future_things (x INTEGER)")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    finally:
        conn.close()


# ---------------------------------------------------------------- schema


def test_newer_schema_is_refused_with_both_versions(tmp_path: Path) -> None:
    """Schema versioning: a file written by a newer release is refused with
    an error naming its version, the supported one, and the remedy."""
    path = tmp_path / "future.db"
    newer = SCHEMA_VERSION + 41
    make_newer_file(path, newer)
    with pytest.raises(RuntimeStoreError) as err:
        SqliteRuntimeStore(path)
    message = str(err.value)
    assert str(newer) in message
    assert f"({SCHEMA_VERSION})" in message
    assert "upgrade" in message
    assert user_version(path) == newer


def test_newer_schema_file_is_not_modified(tmp_path: Path) -> None:
    """Schema versioning: refusing a newer file must not change it (an older
    release must not touch what it does not understand)."""
    path = tmp_path / "future.db"
    make_newer_file(path, SCHEMA_VERSION + 1)
    before = path.read_bytes()
    with pytest.raises(RuntimeStoreError):
        SqliteRuntimeStore(path)
    assert sorted(os.listdir(tmp_path)) == ["future.db"]
    assert path.read_bytes() == before


def test_fresh_file_gets_current_schema(tmp_path: Path) -> None:
    """S-10: a new file has every runtime table and the current version."""
    path = tmp_path / "fresh.db"

    async def body() -> None:
        store = SqliteRuntimeStore(path)
        await store.close()

    run(body)
    assert user_version(path) == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    try:
        tables = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    finally:
        conn.close()
    assert {INPUTS, RECEIPTS, STATES, SNAPSHOTS} <= tables


def test_version_1_file_is_migrated_with_its_rows(tmp_path: Path) -> None:
    """Schema versioning: a file of schema 1 (before recovery epochs) opens
    as the current version with every row intact and its stored recovery
    count as written; the first recovery commit then counts from there."""
    path = tmp_path / "v1.db"
    state = queued_state()
    state.recovery_count = 3
    conn = sqlite3.connect(path)
    try:
        for step in MIGRATIONS[1]:
            apply_step(conn, step)
        conn.execute(
            f"INSERT INTO {INPUTS} VALUES (?, ?, ?)",
            (str(A), str(state.input_id), encode_state(state)),
        )
        conn.execute(f"INSERT INTO {STATES} VALUES (?, ?)", (str(A), b'"idle"'))
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    finally:
        conn.close()

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            assert await store.load_input_states(A) == [state]
            state.recovery_count = 4
            await store.commit_recovery(A, RuntimeState.IDLE, [], [state])
        async with SqliteRuntimeStore(path) as store:
            assert await store.load_input_states(A) == [state]

    run(body)
    assert user_version(path) == SCHEMA_VERSION == 3


@pytest.mark.parametrize("start", [0, 1, 2])
def test_two_stores_migrating_one_file_at_once_both_open(
    tmp_path: Path, start: int
) -> None:
    """Schema versioning with several openers: two stores that both read an
    old version (a new file, schema 1, or the schema-2 fixture with its
    records) while a third connection holds the write lock must not both
    migrate; the second finds the work done. (A migration that ran twice
    failed with "duplicate column name".)"""
    path = tmp_path / "shared.db"
    if start == 2:
        path, _ = copy_legacy(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    for version in range(1, start + 1 if start < 2 else 1):
        for step in MIGRATIONS[version]:
            apply_step(holder, step)
    holder.execute(f"PRAGMA user_version = {start}")
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("BEGIN IMMEDIATE")  # both openers now wait to migrate
    outcomes: dict[str, str] = {}

    def open_store(name: str) -> None:
        try:
            run(SqliteRuntimeStore(path).close)
            outcomes[name] = "opened"
        except RuntimeStoreError as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=open_store, args=(n,)) for n in "AB"]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # let both read the old version and queue on the lock
    holder.execute("COMMIT")
    holder.close()
    for thread in threads:
        thread.join()
    assert outcomes == {"A": "opened", "B": "opened"}
    assert user_version(path) == SCHEMA_VERSION
    if start == 2:  # numbered once, in the old id order (PD-42)
        with closing(sqlite3.connect(path)) as conn:
            numbered = conn.execute(
                f"SELECT input_id FROM {INPUTS} WHERE runtime_id = ? ORDER BY arrival",
                (str(LEGACY_PENDING),),
            ).fetchall()
        assert [i for (i,) in numbered] == LEGACY_EXPECTED["queued"][
            str(LEGACY_PENDING)
        ]


def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    """S-8 / S-10: everything written survives close and reopen, and a
    reopened current-version file is not migrated again."""
    path = tmp_path / "runtime.db"
    state = rich_state(4)
    run_id = state.last_run_id()
    assert run_id is not None
    receipt = receipt_for(run_id, [state.input_id])

    async def write() -> None:
        async with SqliteRuntimeStore(path) as store:
            await store.atomic_apply(
                A, SessionDelta(session_snapshot=b"snap"), receipt, [state]
            )
            await store.persist_runtime_state(A, RuntimeState.RETIRED)

    async def read() -> None:
        async with SqliteRuntimeStore(path) as store:
            assert await store.load_input_states(A) == [state]
            assert await store.load_boundary_receipt(A, run_id, 0) == receipt
            assert await store.load_session_snapshot(A) == b"snap"
            assert await store.load_runtime_state(A) is RuntimeState.RETIRED

    run(write)
    run(read)
    assert user_version(path) == SCHEMA_VERSION


# ---------------------------------------------------------------- pragmas


def test_file_database_uses_wal(tmp_path: Path) -> None:
    """S-10: file databases run in WAL mode (readers never block the writer)."""
    path = tmp_path / "runtime.db"

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            await store.persist_input_state(A, queued_state())
            conn = sqlite3.connect(path)
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            finally:
                conn.close()
            assert mode == "wal"

    run(body)


@pytest.mark.parametrize(
    ("requested", "expected"), [(None, 2), ("FULL", 2), ("NORMAL", 1)]
)
def test_synchronous_setting(
    tmp_path: Path, requested: str | None, expected: int
) -> None:
    """S-10: ``synchronous`` is FULL by default (an acknowledged write
    survives power loss) and NORMAL when asked; it applies to the writer."""

    async def body() -> None:
        store = (
            SqliteRuntimeStore(tmp_path / "runtime.db")
            if requested is None
            else SqliteRuntimeStore(tmp_path / "runtime.db", synchronous=requested)  # type: ignore[arg-type]
        )
        try:
            value = store.writer_setting("synchronous")
            assert value == expected
            assert store.synchronous == (requested or "FULL")
        finally:
            await store.close()

    run(body)


@pytest.mark.parametrize("bad", ["EXTRA", "", "fast"])
def test_bad_synchronous_value_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteRuntimeStore(tmp_path / "runtime.db", synchronous=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "runtime.db").exists()


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


def group_sizes(store: SqliteRuntimeStore) -> list[int]:
    """The size of every group the store's writer commits from now on."""
    sizes: list[int] = []
    store.writer.hooks.group = sizes.append
    return sizes


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


# ---------------------------------------------------------------- bulk reads


def test_bulk_load_streams_every_chunk_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S-3 through the streamed read: a reader thread hands rows over in
    chunks (``READ_CHUNK``); every row arrives once, in input-id order, also
    when the last chunk is partial and when the map is off."""
    monkeypatch.setattr(sqlite_reader, "READ_CHUNK", 3)
    states = [queued_state(f"prompt {i}") for i in range(10)]

    async def body(mmap: int) -> None:
        path = tmp_path / f"bulk-{mmap}.db"
        async with SqliteRuntimeStore(path, read_mmap_bytes=mmap) as store:
            await store.atomic_lifecycle_commit(A, RuntimeState.IDLE, states)
            loaded = await store.load_input_states(A)
        assert [s.input_id for s in loaded] == sorted(s.input_id for s in states)
        assert [s.to_record() for s in loaded] == [
            s.to_record() for s in sorted(states, key=lambda s: s.input_id)
        ]

    for mmap in (0, 1 << 20):
        run(lambda mmap=mmap: body(mmap))  # type: ignore[misc]


def test_corrupt_row_in_a_later_chunk_fails_the_load_and_the_store_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corrupt row in the fourth chunk fails the whole load with
    ``ReadFailed`` naming it; the reader thread is waited for, and the store goes on
    serving reads and writes (nothing half-loaded is returned)."""
    monkeypatch.setattr(sqlite_reader, "READ_CHUNK", 2)
    states = sorted(
        (queued_state(f"prompt {i}") for i in range(9)), key=lambda s: s.input_id
    )
    victim = states[7]

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "corrupt.db") as store:
            await store.atomic_lifecycle_commit(A, RuntimeState.IDLE, states)
            store.corrupt_row(INPUTS, A, str(victim.input_id), b'{"input_id": 7')
            with pytest.raises(RuntimeStoreError.ReadFailed) as failure:
                await store.load_input_states(A)
            assert str(victim.input_id) in str(failure.value)
            assert INPUTS in str(failure.value)
            await store.persist_input_state(A, victim)  # repaired
            assert len(await store.load_input_states(A)) == len(states)

    run(body)


def test_bulk_load_of_a_closed_store_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "closed.db")
        await store.close()
        with pytest.raises(RuntimeStoreError, match="closed"):
            await store.load_input_states(A)

    run(body)


@pytest.mark.parametrize("bad", [-1, 1.5, "1G", True])
def test_bad_read_mmap_bytes_is_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="read_mmap_bytes"):
        SqliteRuntimeStore(tmp_path / "runtime.db", read_mmap_bytes=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "runtime.db").exists()


def test_readers_map_the_file_as_configured(tmp_path: Path) -> None:
    """Readers use ``read_mmap_bytes``; the writer never maps (its default)."""

    async def body() -> None:
        async with SqliteRuntimeStore(
            tmp_path / "m.db", read_mmap_bytes=1 << 20
        ) as store:
            setting = store.readers.setting
            assert await asyncio.to_thread(setting, "mmap_size") == 1 << 20
            assert store.writer_setting("mmap_size") == 0

    run(body)


def test_a_reader_that_cannot_open_fails_the_bulk_load_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: a reader thread failing with something other than an
    SQLite error (here its connection cannot be opened, as when file
    descriptors run out) must reach the caller, not leave it waiting on the
    chunks for ever with the garbage collector paused."""

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "fds.db") as store:
            await store.persist_input_state(A, queued_state())

            def no_connection() -> sqlite3.Connection:
                raise StoreInternalError("cannot open fds.db: too many open files")

            monkeypatch.setattr(store.readers, "connect", no_connection)
            load = asyncio.create_task(store.load_input_states(A))
            done, _ = await asyncio.wait({load}, timeout=30)  # a guard, not a timing
            assert done, "the load never ended"
            with pytest.raises(StoreInternalError, match="too many open files"):
                load.result()
            assert gc.isenabled()

    run(body)


def test_a_bulk_load_cancelled_twice_returns_only_after_its_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: timeouts and task groups cancel twice; the second
    cancel must not let the call return while the reader thread still
    steps its statement (a close() next would pull the connection from
    under it)."""
    monkeypatch.setattr(sqlite_reader, "READ_CHUNK", 1)
    started = threading.Event()

    def slow_chunk() -> None:
        started.set()
        time.sleep(0.05)

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "cancel.db") as store:
            states = [queued_state(f"p{i}") for i in range(20)]
            await store.atomic_lifecycle_commit(A, RuntimeState.IDLE, states)
            store.readers.hooks.chunk = slow_chunk
            load = asyncio.create_task(store.load_input_states(A))
            while not started.is_set():
                await asyncio.sleep(0.005)
            load.cancel()
            await asyncio.sleep(0.01)  # now waiting for the reader to stop
            load.cancel()
            with pytest.raises(asyncio.CancelledError):
                await load
            assert store.readers.in_use() == 0  # the reader had finished

    run(body)


def test_a_reader_connection_opened_after_close_is_refused(tmp_path: Path) -> None:
    """Review finding: a reader thread opening its connection after close()
    must not leave it open (a leak of the file's descriptors)."""

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "late.db")
        await store.close()
        with pytest.raises(StoreInternalError, match="closed"):
            await asyncio.to_thread(store.readers.setting, "mmap_size")
        assert store.readers.open_connections() == 0

    run(body)


def test_a_file_sqlite_cannot_put_in_wal_mode_is_refused(tmp_path: Path) -> None:
    """The store's concurrency rests on WAL; where SQLite keeps another
    journal mode (it answers with the old mode), opening fails and says why."""

    class NoWal:
        def execute(self, sql: str) -> Any:
            assert sql == "PRAGMA journal_mode = WAL"
            return sqlite3.connect(":memory:").execute("SELECT 'delete'")

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "wal.db") as store:
            with pytest.raises(StoreInternalError, match=r"WAL mode.*'delete'"):
                sqlite_setup.enable_wal(NoWal(), store.path)  # type: ignore[arg-type]

    run(body)


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


@pytest.mark.parametrize(("slow", "expected_calls"), [(False, 8), (True, 1)])
def test_hand_overs_to_the_writer_stop_when_another_thread_keeps_the_gil(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slow: bool, expected_calls: int
) -> None:
    """Review finding: the loop lets the writer in after every 8th queued
    request; when a hand-over comes back late (another thread kept the GIL,
    simulated here), hand-overs pause, so such a thread stalls the loop
    once, not once per 8 writes."""
    calls: list[float] = []

    def release() -> None:
        calls.append(time.monotonic())
        if slow:
            time.sleep(sqlite_writer.HAND_OVER_SLOW_S * 3)

    monkeypatch.setattr(sqlite_writer, "release_gil", release)
    path = tmp_path / "hand.db"

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            states = [queued_state(f"h{i}") for i in range(64)]
            writes = [store.persist_input_state(A, s) for s in states]
            results = await _piled_up(path, writes)
            assert all(r is None for r in results)

    run(body)
    assert len(calls) == expected_calls


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

    def hold() -> None:  # a reader in the middle of a query
        in_query.set()
        go_on.wait(30)

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "readers.db")
        await store.persist_input_state(A, queued_state())
        store.readers.hooks.chunk = hold
        load = asyncio.ensure_future(store.load_input_states(A))
        await asyncio.to_thread(in_query.wait, 30)
        try:
            first = asyncio.ensure_future(store.close())
            while store.writer.running():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # now waiting for the reader
            first.cancel()
            await asyncio.wait({first})
            second = asyncio.ensure_future(store.close())
            await asyncio.sleep(0.05)
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
