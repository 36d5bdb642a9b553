"""The SQLite store's parts: opening without sleeping on the event loop,
bad paths, the one transaction boundary and its classification of errors."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import LogicalRuntimeId, RuntimeState
from meerkat_runtime.store import SqliteRuntimeStore
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.testing.conformance import rich_state

A = LogicalRuntimeId("parts")
STORE_DIR = Path(__file__).resolve().parents[2] / "meerkat_runtime" / "store"


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def disk_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    return error


def test_a_path_that_is_not_a_path_is_a_type_error_creating_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SqliteRuntimeStore(None)`` used to create a database called "None"."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="path must be a str or Path, not NoneType"):
        SqliteRuntimeStore(None)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_a_missing_directory_is_refused_by_name_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(RuntimeStoreError.Internal) as raised:
        SqliteRuntimeStore(missing / "runtime.db")
    assert f"its directory {missing} does not exist" in str(raised.value)
    assert os.listdir(tmp_path) == []


def hold_new_file(path: Path) -> sqlite3.Connection:
    """Another connection in the middle of setting up a new file (no WAL
    yet, a write transaction open)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE sibling_setup (x INTEGER)")
    return other


def test_on_an_event_loop_a_file_being_set_up_elsewhere_is_unavailable_at_once(
    tmp_path: Path,
) -> None:
    """The constructor never waits on an event loop's thread: it used to wait
    (sleeping) up to the busy timeout, freezing every session meanwhile."""
    path = tmp_path / "busy.db"
    other = hold_new_file(path)

    async def body() -> None:
        with pytest.raises(RuntimeStoreError.Unavailable) as raised:
            SqliteRuntimeStore(path)
        assert raised.value.retryable
        assert any("SqliteRuntimeStore.open" in n for n in raised.value.__notes__)

    try:
        run(body)
    finally:
        other.close()


def test_open_waits_in_a_worker_thread_while_the_loop_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    other = hold_new_file(path)

    async def body() -> None:
        opening = asyncio.ensure_future(SqliteRuntimeStore.open(path))
        await asyncio.sleep(0.05)  # (the loop turns meanwhile) now it waits
        await asyncio.to_thread(other.execute, "COMMIT")
        store = await opening
        await store.persist_runtime_state(A, RuntimeState.IDLE)
        assert await store.load_runtime_state(A) is RuntimeState.IDLE
        await store.close()

    try:
        run(body)
    finally:
        other.close()


def test_a_commit_that_fails_for_want_of_space_is_unavailable_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """A full disk at COMMIT (through the writer thread, and inline for a
    lone caller) is ``Unavailable``, retryable; nothing is written and the
    next write succeeds."""

    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "full.db") as store:
            for _ in range(6):  # the first writes go through the thread
                state = rich_state(1)
                store.writer.hooks.fail_next_commit = disk_full()
                with pytest.raises(RuntimeStoreError.Unavailable, match="disk is full"):
                    await store.persist_input_state(A, state)
                assert await store.load_input_state(A, state.input_id) is None
                await store.persist_input_state(A, state)
                assert await store.load_input_state(A, state.input_id) == state

    run(body)


def test_a_failed_group_commit_fails_every_caller_of_the_group(tmp_path: Path) -> None:
    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "group.db") as store:
            sizes: list[int] = []
            store.writer.hooks.group = sizes.append
            store.writer.hooks.fail_next_commit = disk_full()
            states = [rich_state(1) for _ in range(8)]
            with store.writer.paused():  # they pile up into one group
                writes = [
                    asyncio.ensure_future(store.persist_input_state(A, s))
                    for s in states
                ]
                await asyncio.sleep(0.05)
            results = await asyncio.gather(*writes, return_exceptions=True)
            assert sizes[0] > 1
            failed = [r for r in results if isinstance(r, RuntimeStoreError)]
            assert len(failed) == sizes[0]
            assert all(isinstance(r, RuntimeStoreError.Unavailable) for r in failed)
            stored = await store.load_input_states(A)
            assert len(stored) == len(states) - sizes[0]

    run(body)


def test_a_file_that_is_not_a_database_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is no SQLite file " * 100)
    with pytest.raises(RuntimeStoreError.Corrupt, match="not a database"):
        SqliteRuntimeStore(path)


def test_a_lock_held_elsewhere_past_the_busy_timeout_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meerkat_runtime.store import sqlite_writer

    monkeypatch.setattr(sqlite_writer, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "locked.db"

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(RuntimeStoreError.Unavailable, match="write lock"):
                    await store.persist_runtime_state(A, RuntimeState.IDLE)
            finally:
                other.close()
            await store.persist_runtime_state(A, RuntimeState.IDLE)

    run(body)


def test_only_the_boundary_looks_at_sqlite_errors() -> None:
    """Every ``sqlite3`` error is translated in ``sqlite_boundary``; no other
    module of the store names one."""
    pattern = re.compile(r"sqlite3\.\w*(Error|Warning)\b")
    offenders = [
        f"{module.name}: {line.strip()}"
        for module in sorted(STORE_DIR.glob("*.py"))
        if module.name != "sqlite_boundary.py"
        for line in module.read_text().splitlines()
        if pattern.search(line)
    ]
    assert offenders == []
