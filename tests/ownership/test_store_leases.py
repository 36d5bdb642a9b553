"""Store-level leases beyond the shared conformance suite: SQLite's merged
accept groups, files from before leases, several store objects on one file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from meerkat_runtime.errors import FencedError, RuntimeOwnedError
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.store import InMemoryRuntimeStore, SqliteRuntimeStore
from meerkat_runtime.testing.conformance import rich_state

A = LogicalRuntimeId("a")
B = LogicalRuntimeId("b")


async def _queued(store: SqliteRuntimeStore, count: int) -> None:
    while store.writer.in_flight() < count:
        await asyncio.sleep(0)


def test_a_merged_group_refuses_only_the_fenced_runtimes_rows(tmp_path: Path) -> None:
    async def body() -> None:
        async with SqliteRuntimeStore(tmp_path / "x.db") as store:
            old = await store.claim(A, "one", 60)
            stale = store.fenced(A, old)
            await store.release(A, "one", old)
            await store.claim(A, "two", 60)
            sizes: list[int] = []
            store.writer.hooks.group = sizes.append
            a_states = [rich_state(1) for _ in range(3)]
            b_states = [rich_state(1) for _ in range(3)]
            with store.writer.paused():
                writes = [
                    asyncio.ensure_future(stale.persist_input_state(A, s))
                    for s in a_states
                ] + [
                    asyncio.ensure_future(store.persist_input_state(B, s))
                    for s in b_states
                ]
                await _queued(store, len(writes))
            results = await asyncio.gather(*writes, return_exceptions=True)
            assert sizes == [6]  # one group, split after the merged try
            assert all(isinstance(r, FencedError) for r in results[:3])
            assert results[3:] == [None, None, None]
            assert await store.load_input_states(A) == []
            assert len(await store.load_input_states(B)) == 3

    asyncio.run(body())


def test_a_file_from_before_leases_gains_the_table_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqliteRuntimeStore(path).writer.stop()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE runtime_leases")

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            assert await store.load_leases() == []
            assert await store.claim(A, "one", 60) == 1

    asyncio.run(body())


def test_two_store_objects_on_one_file_see_each_others_leases(tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            SqliteRuntimeStore(tmp_path / "x.db") as first,
            SqliteRuntimeStore(tmp_path / "x.db") as second,
        ):
            epoch = await first.claim(A, "one", 60)
            with pytest.raises(RuntimeOwnedError, match="owned by one"):
                await second.claim(A, "two", 60)
            await first.release(A, "one", epoch)
            assert await second.claim(A, "two", 60) == epoch + 1
            with pytest.raises(FencedError):
                await first.fenced(A, epoch).persist_input_state(A, rich_state(1))

    asyncio.run(body())


def test_a_store_refuses_a_bad_lease_ttl_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lease_ttl"):
        InMemoryRuntimeStore(lease_ttl=-1)
    with pytest.raises(ValueError, match="lease_ttl"):
        SqliteRuntimeStore(tmp_path / "x.db", lease_ttl=float("nan"))
    assert not (tmp_path / "x.db").exists()


def test_a_fenced_view_shares_the_armed_failure_of_its_store() -> None:
    async def body() -> None:
        store = InMemoryRuntimeStore()
        view = store.fenced(A, await store.claim(A, "one", 60))
        store.fail_next_commit = RuntimeError("boom")
        with pytest.raises(Exception, match="boom"):
            await view.persist_input_state(A, rich_state(1))
        assert store.fail_next_commit is None

    asyncio.run(body())
