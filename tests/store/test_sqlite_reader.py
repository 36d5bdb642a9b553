"""The SQLite store's reader: chunked bulk loads in order, their failures and
cancellation, and the readers' memory-mapping setting.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    RuntimeState,
)
from meerkat_runtime.store import (
    SqliteRuntimeStore,
    integrity,
    sqlite_reader,
    sqlite_setup,
)
from meerkat_runtime.store import sqlite as sqlite_store
from meerkat_runtime.store.base import (
    RuntimeStoreError,
    StoreInternalError,
)
from meerkat_runtime.store.records import (
    INPUTS,
)
from tests.store.sqlite import (
    A,
    queued_state,
    run,
)

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


def test_a_bulk_read_fetches_only_a_few_chunks_ahead_of_its_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader thread fetches at most ``READ_AHEAD`` chunks more than the
    caller has consumed, however slow the caller: a deep queue's rows never
    all wait in memory beside what was decoded from them. (The first chunk
    is held until the reader would have run further ahead, or half a
    second: without the bound it runs through every row meanwhile.)"""
    monkeypatch.setattr(sqlite_reader, "READ_CHUNK", 1)
    monkeypatch.setattr(sqlite_reader, "READ_AHEAD", 2)
    fetched, consumed, leads = [0], [0], []
    ran_ahead = threading.Event()

    def count_fetch() -> None:  # the reader thread, before each fetch
        fetched[0] += 1
        leads.append(fetched[0] - consumed[0])
        if leads[-1] > sqlite_reader.READ_AHEAD:
            ran_ahead.set()

    def consume(rows: list[Any]) -> None:
        if consumed[0] == 0:
            ran_ahead.wait(0.5)
        consumed[0] += len(rows)

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "ahead.db") as store:
            states = [queued_state(f"p{i}") for i in range(10)]
            await store.atomic_lifecycle_commit(A, RuntimeState.IDLE, states)
            store.readers.hooks.chunk = count_fetch
            await store.readers.read_chunks(
                "SELECT input_id FROM runtime_input_states WHERE runtime_id = ?",
                (str(A),),
                consume,
            )
        assert consumed[0] == 10
        assert max(leads) <= 2, leads

    run(body)


def test_a_bulk_read_does_not_map_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk load reads with the map off, and so does its second count of
    the rows (a scan of a deep queue would otherwise add the whole table to
    the resident memory); the reader's connection has its map back
    afterwards, for point reads."""
    seen: list[int] = []

    def bulk_started(conn: sqlite3.Connection) -> None:
        seen.append(conn.execute("PRAGMA mmap_size").fetchone()[0])

    recount = integrity.check_input_count

    def counted(conn: sqlite3.Connection, *args: Any) -> None:
        bulk_started(conn)
        recount(conn, *args)

    monkeypatch.setattr(sqlite_store, "check_input_count", counted)

    async def body() -> None:
        async with SqliteRuntimeStore(
            tmp_path / "map.db", read_mmap_bytes=1 << 20
        ) as store:
            states = [queued_state(f"p{i}") for i in range(3)]
            await store.atomic_lifecycle_commit(A, RuntimeState.IDLE, states)
            store.readers.hooks.bulk_started = bulk_started
            assert len(await store.load_input_states(A)) == 3
            assert seen == [0, 0]
            settings = await store.readers.read(
                lambda conn: conn.execute("PRAGMA mmap_size").fetchone()[0]
            )
            assert settings == 1 << 20

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
