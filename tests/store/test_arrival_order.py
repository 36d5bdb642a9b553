"""Queues come back in arrival order, whatever the ids or the clock (PD-42).

Before schema 3 the SQLite store loaded a runtime's inputs by input id:
caller-chosen ids ``z, a, m`` ran z, a, m live and a, m, z after a restart,
and ids minted after the clock stepped back jumped the queue.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import pytest

from meerkat_runtime import (
    InputDurability,
    InputHeader,
    InputId,
    InputOrigin,
    LogicalRuntimeId,
    PeerInput,
    PromptInput,
)
from meerkat_runtime import ids as ids_module
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.policy_table import QueueMode
from meerkat_runtime.input_state import InputState
from meerkat_runtime.policy import PolicyTable
from meerkat_runtime.store import InMemoryRuntimeStore, RuntimeStore, SqliteRuntimeStore
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.store.records import input_row
from meerkat_runtime.store.sqlite_schema import upsert_inputs_sql
from tests.driver.helpers import RoutingPolicyTable

T = TypeVar("T")
RID = LogicalRuntimeId("arrivals")
HOUR_NS = 3600 * 10**9


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await body()

    return asyncio.run(main())


def prompt(input_id: str | None = None, text: str = "hi") -> PromptInput:
    header = InputHeader(
        id=InputId(input_id) if input_id is not None else InputId.new(),
        timestamp=datetime.now(UTC),
        source=InputOrigin.Operator(),
        durability=InputDurability.DURABLE,
    )
    return PromptInput(header=header, text=text)


def peer(input_id: str) -> PeerInput:
    header = InputHeader(
        id=InputId(input_id),
        timestamp=datetime.now(UTC),
        source=InputOrigin.Operator(),
        durability=InputDurability.DURABLE,
    )
    return PeerInput(header=header, body="urgent")


def driver_on(
    store: RuntimeStore, table: PolicyTable | None = None
) -> PersistentRuntimeDriver:
    return PersistentRuntimeDriver(RID, store, MemoryBlobStore(), policy_table=table)


async def queued_after_restart(
    store: RuntimeStore, table: PolicyTable | None = None
) -> list[str]:
    driver = driver_on(store, table)
    await driver.recover()
    return [str(i) for i in driver.queued_input_ids()]


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], RuntimeStore]:
    """A "process" opens the same data again: a new SQLite or PostgreSQL
    store on the same data, or the one memory store (which outlives the
    driver)."""
    if request.param == "memory":
        memory = InMemoryRuntimeStore()
        return lambda: memory
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        return lambda: PostgresRuntimeStore(dsn, schema=schema)
    return lambda: SqliteRuntimeStore(tmp_path / "arrivals.db")


def test_caller_chosen_ids_come_back_in_arrival_order(
    open_store: Callable[[], RuntimeStore],
) -> None:
    """z, a, m are queued z, a, m live, and again after a restart (they came
    back a, m, z: sorted by id)."""

    async def body() -> None:
        store = open_store()
        driver = driver_on(store)
        for name in ("z", "a", "m"):
            assert (await driver.accept_input(prompt(name))).is_accepted()
        assert [str(i) for i in driver.queued_input_ids()] == ["z", "a", "m"]
        assert await queued_after_restart(open_store()) == ["z", "a", "m"]

    run(body)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The wall clock id minting reads, settable: ``clock.ns``."""
    now = SimpleNamespace(ns=time.time_ns())
    fake = SimpleNamespace(time_ns=lambda: now.ns)
    monkeypatch.setattr(ids_module, "time", fake)
    return now


def test_a_clock_stepped_back_between_two_processes_keeps_the_order(
    tmp_path: Path, clock: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first process mints its ids an hour ahead; the second, after the
    clock was corrected, mints smaller ids. Arrival order still wins."""
    path = tmp_path / "clock.db"

    async def accept_one(text: str) -> str:
        async with SqliteRuntimeStore(path) as store:
            driver = driver_on(store)
            await driver.recover()
            inp = prompt(text=text)
            assert (await driver.accept_input(inp)).is_accepted()
            return str(inp.id())

    clock.ns += HOUR_NS
    first = run(lambda: accept_one("first"))
    clock.ns -= HOUR_NS
    monkeypatch.setattr(ids_module, "_last_ms", 0)  # a new process's counter
    second = run(lambda: accept_one("second"))
    assert second < first  # the ids alone would put the second first

    async def restart() -> list[str]:
        async with SqliteRuntimeStore(path) as store:
            return await queued_after_restart(store)

    assert run(restart) == [first, second]


def test_two_stores_on_one_file_number_arrivals_in_commit_order(
    tmp_path: Path,
) -> None:
    """The arrival number is taken under the file's write lock, so two
    processes writing one runtime in turn interleave as they committed."""
    path = tmp_path / "shared.db"

    async def body() -> list[str]:
        async with (
            SqliteRuntimeStore(path) as one,
            SqliteRuntimeStore(path) as two,
        ):
            for store, name in ((one, "y"), (two, "x"), (one, "w"), (two, "v")):
                state = driver_on(store)
                await state.accept_input(prompt(name))
        async with SqliteRuntimeStore(path) as store:
            return [str(s.input_id) for s in await store.load_input_states(RID)]

    assert run(body) == ["y", "x", "w", "v"]


def test_a_rewritten_row_keeps_its_place(
    open_store: Callable[[], RuntimeStore],
) -> None:
    """Only the first write numbers a row: staging and rolling back an early
    input (two more writes of it) does not move it behind later ones."""

    async def body() -> None:
        store = open_store()
        driver = driver_on(store)
        for name in ("c", "b", "a"):
            await driver.accept_input(prompt(name))
        for name in ("c", "b", "a"):
            state = driver.input_state(InputId(name))
            assert state is not None
            await store.persist_input_state(RID, state)
        assert [str(s.input_id) for s in await store.load_input_states(RID)] == [
            "c",
            "b",
            "a",
        ]

    run(body)


def queued_state(name: str) -> InputState:
    state = InputState.new_accepted(InputId(name))
    state.apply(il.QueueAccepted())
    return state


def test_one_merged_statement_numbers_rows_in_statement_order(
    tmp_path: Path,
) -> None:
    """The writer merges concurrent accepts into one statement: rows of
    several runtimes, interleaved, new and updated. Each runtime's new rows
    get increasing numbers in statement order; an updated row keeps its."""
    path = tmp_path / "merged.db"
    other = LogicalRuntimeId("other")

    async def seed() -> None:
        async with SqliteRuntimeStore(path) as store:
            await store.persist_input_state(RID, queued_state("old"))

    run(seed)
    order = [(RID, "q"), (other, "p"), (RID, "old"), (RID, "o2"), (other, "n")]
    rows = [(str(rid), *input_row(queued_state(name))) for rid, name in order]
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(upsert_inputs_sql(len(rows)), [v for row in rows for v in row])
        numbered = conn.execute(
            "SELECT runtime_id, input_id, arrival FROM runtime_input_states "
            "ORDER BY runtime_id, arrival"
        ).fetchall()
    assert [(r, i) for r, i, _ in numbered] == [
        ("arrivals", "old"),
        ("arrivals", "q"),
        ("arrivals", "o2"),
        ("other", "p"),
        ("other", "n"),
    ]
    assert numbered[0][2] == 1  # the update left it where it was


def test_priority_inputs_come_back_where_they_were_queued(
    open_store: Callable[[], RuntimeStore],
) -> None:
    """PD-9: a priority input went to the front of its lane when it arrived;
    a restart rebuilds that from arrival order and the stored policy (it
    came back at the back, in arrival order)."""
    table = RoutingPolicyTable({"peer_message": QueueMode.PRIORITY})

    async def body() -> None:
        store = open_store()
        driver = driver_on(store, table)
        for inp in (prompt("a"), peer("urgent-1"), prompt("b"), peer("urgent-2")):
            assert (await driver.accept_input(inp)).is_accepted()
        live = [str(i) for i in driver.queued_input_ids()]
        assert live == ["urgent-2", "urgent-1", "a", "b"]
        assert await queued_after_restart(open_store(), table) == live

    run(body)
