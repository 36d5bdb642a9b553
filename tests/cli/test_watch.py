"""``meerkat-runtime inspect --watch``: one refresh of the live view beside
an owner that keeps writing (SQLite and PostgreSQL), read-only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meerkat_runtime import (
    FileBlobStore,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.cli import main
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from tests.sessions.executors import Step, ToyExecutor
from tests.sessions.helpers import eventually, prompt
from tests.store.postgres import dsn_url

SID = SessionId("watched")


async def _watch_beside_a_writing_owner(
    store: RuntimeStore, blobs: Path, argv: list[str]
) -> tuple[int, int]:
    """An owner whose executor fails (one failure recorded, then it pauses)
    keeps accepting while ``argv`` runs in a thread; returns the exit status
    and how many accepts the owner made meanwhile, all acknowledged."""
    adapter = RuntimeSessionAdapter.persistent(
        store, FileBlobStore(blobs), owner="live-owner", retry_delay=60
    )
    await adapter.register_session_with_executor(SID, ToyExecutor(default=Step.FAIL))
    first = prompt("fails once")
    await adapter.accept_input(SID, first)

    async def failed() -> bool:
        state = await adapter.input_state(SID, first.id())
        return state is not None and state.last_error() is not None

    await eventually(failed)
    stop, written = asyncio.Event(), 0

    async def keep_writing() -> None:
        nonlocal written
        while not stop.is_set():
            await adapter.accept_input(SID, prompt(f"meanwhile {written}"))
            written += 1

    writer = asyncio.ensure_future(keep_writing())
    await asyncio.sleep(0)  # the writer is under way before the view reads
    status = await asyncio.to_thread(main, argv)
    stop.set()
    await writer
    assert len(await adapter.list_active_inputs(SID)) == 1 + written
    await adapter.close()
    return status, written


def test_one_refresh_beside_a_live_sqlite_owner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "live.db"
    argv = ["inspect", str(db), "--watch", "--iterations", "1", "--interval", "0.01"]

    async def body() -> tuple[int, int]:
        store = SqliteRuntimeStore(db)
        try:
            return await _watch_beside_a_writing_owner(store, tmp_path / "b", argv)
        finally:
            await store.close()

    status, written = asyncio.run(body())
    shown = capsys.readouterr().out
    assert status == 0
    assert written > 0  # the owner wrote all along: no lock was taken from it
    for text in ("Runtimes", "watched", "live-owner", "Recent failures", "toy failure"):
        assert text in shown, shown
    assert "read-only" in shown


def test_one_refresh_of_a_postgresql_store(
    pg_dsn: str, pg_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["inspect", dsn_url(pg_dsn), "--schema", pg_schema, "--watch"]
    argv += ["--iterations", "1"]

    async def body() -> tuple[int, int]:
        store = await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)
        try:
            return await _watch_beside_a_writing_owner(store, tmp_path / "b", argv)
        finally:
            await store.close()

    status, _ = asyncio.run(body())
    shown = capsys.readouterr().out
    assert status == 0
    for text in ("watched", "live-owner", "toy failure"):
        assert text in shown, shown


def test_watch_refuses_json_and_an_unreadable_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none.db")
    assert main(["inspect", missing, "--watch", "--iterations", "1"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["inspect", missing, "--watch", "--json"]) == 2
    assert main(["inspect", missing, "--watch", "--interval", "0"]) == 2
