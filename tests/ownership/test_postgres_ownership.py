"""What the PostgreSQL store adds to the ownership and arrival contracts the
conformance suite pins: leases on the database's clock and fencing under a
row lock (PD-55), arrival numbers from a counter row per runtime under
concurrent writers (PD-56), and the migration of a version-1 schema."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

from meerkat_runtime import RuntimeSessionAdapter, RuntimeState, SessionId
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.errors import FencedError, RuntimeOwnedError
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.ids import InputId, LogicalRuntimeId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inspection_postgres import load_postgres
from meerkat_runtime.store import records
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.store.postgres_schema import SCHEMA_VERSION, migrations
from meerkat_runtime.testing.conformance_ownership import FakeClock
from tests.sessions.helpers import prompt

T = TypeVar("T")
R = LogicalRuntimeId("owned")
OTHER = LogicalRuntimeId("other")


def queued(name: str) -> InputState:
    state = InputState.new_accepted(InputId(name))
    state.apply(il.QueueAccepted())
    return state


def with_store(
    dsn: str, schema: str, body: Callable[[PostgresRuntimeStore], Awaitable[T]]
) -> T:
    async def main() -> T:
        store = await PostgresRuntimeStore.open(dsn, schema=schema)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def arrivals(dsn: str, schema: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT runtime_id, input_id, arrival FROM "
            f'"{schema}".runtime_input_states ORDER BY runtime_id, arrival'
        ).fetchall()
    return [(str(r), str(i), int(a)) for r, i, a in rows]


# ---------------------------------------------------------------- leases


def test_lease_expiry_is_judged_by_the_database_clock(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claimer's clock jumps a day ahead: on a store judging expiry by
    its own clock the lease would look expired and be taken over; here the
    server's clock says it is held."""

    async def body(store: PostgresRuntimeStore) -> None:
        epoch = await store.claim(R, "owner-1", 10)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 86_400)
        with pytest.raises(RuntimeOwnedError) as refused:
            await store.claim(R, "owner-2", 10)
        assert refused.value.owner == "owner-1"
        [lease] = await store.load_leases()
        assert (lease.owner, lease.epoch) == ("owner-1", epoch)
        assert refused.value.expires_at == lease.expires_at
        assert lease.expires_at < time.time()  # the jumped clock is far past it

    with_store(pg_dsn, pg_schema, body)


def test_a_stale_and_a_current_owner_in_one_merged_commit(
    pg_dsn: str, pg_schema: str
) -> None:
    """Both owners' accepts arrive together and are merged into one commit
    (PD-53): the stale one is fenced, the current one written."""

    async def body(store: PostgresRuntimeStore) -> None:
        clock = FakeClock()
        store.lease_clock = clock
        stale = store.fenced(R, await store.claim(R, "owner-1", 10))
        clock.now += 10
        current = store.fenced(R, await store.claim(R, "owner-2", 10))
        commits = store.commits
        outcomes = await asyncio.gather(
            stale.persist_input_state(R, queued("from-stale")),
            current.persist_input_state(R, queued("from-current")),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], FencedError)
        assert outcomes[0].epoch == 2
        assert outcomes[1] is None
        assert store.commits == commits + 1  # tried merged, then the row alone
        stored = [str(s.input_id) for s in await store.load_input_states(R)]
        assert stored == ["from-current"]

    with_store(pg_dsn, pg_schema, body)


async def _waiting_on_a_lock(dsn: str, claim: asyncio.Task[int]) -> bool:
    """Until the claim either finished or blocks on a row lock: which."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while not claim.done():
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%runtime_leases%FOR UPDATE%'"
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return True
            await asyncio.sleep(0.01)
    return False


def test_a_claim_waits_for_a_fenced_write_in_flight(
    pg_dsn: str, pg_schema: str
) -> None:
    """The fence reads the lease FOR SHARE: a takeover cannot commit between
    an old owner's check and its COMMIT, so what that owner wrote is on disk
    before the new owner recovers."""

    async def body(store: PostgresRuntimeStore) -> None:
        clock = FakeClock()
        store.lease_clock = clock
        old = store.fenced(R, await store.claim(R, "owner-1", 10))
        await old.persist_runtime_state(R, RuntimeState.IDLE)
        clock.now += 10  # expired: a claim would take it at once
        phases = f'"{pg_schema}".runtime_states'
        async with await psycopg.AsyncConnection.connect(pg_dsn) as blocker:
            # Holds the phase row, so the old owner's write stops after its
            # fence check, inside its transaction.
            await blocker.execute(f"SELECT 1 FROM {phases} FOR UPDATE")
            write = asyncio.ensure_future(
                old.persist_runtime_state(R, RuntimeState.RETIRED)
            )
            await _until_blocked(pg_dsn, phases)
            claim = asyncio.ensure_future(store.claim(R, "owner-2", 10))
            assert await _waiting_on_a_lock(pg_dsn, claim)
            await blocker.rollback()
        await write  # it held the lease's epoch until COMMIT: not fenced
        assert await claim == 2
        assert await store.load_runtime_state(R) is RuntimeState.RETIRED

    with_store(pg_dsn, pg_schema, body)


async def _until_blocked(dsn: str, table: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s",
                (f"%{table}%",),
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return
            await asyncio.sleep(0.01)


def test_inspect_shows_the_owner_of_a_postgresql_runtime(
    pg_dsn: str, pg_schema: str
) -> None:
    """The adapter claims through the PostgreSQL store and inspect reads the
    lease back (a placeholder row of a claim never shows)."""

    async def body(store: PostgresRuntimeStore) -> None:
        adapter = RuntimeSessionAdapter.persistent(
            store, MemoryBlobStore(), owner="worker-9"
        )
        await adapter.register_session(SessionId("held"))
        await adapter.accept_input(SessionId("held"), prompt())
        await adapter.close()

    with_store(pg_dsn, pg_schema, body)
    [view] = load_postgres(pg_dsn, pg_schema)
    assert view.lease is not None
    assert (view.lease.owner, view.lease.epoch, view.lease.released) == (
        "worker-9",
        1,
        True,
    )


# ---------------------------------------------------------------- arrival


def test_concurrent_writers_of_one_runtime_get_distinct_arrivals(
    pg_dsn: str, pg_schema: str
) -> None:
    """Two stores (two pools, as two processes) accept into one runtime at
    once: every write succeeds (max + 1 read from a snapshot would hand two
    of them one number, and the unique index would refuse one)."""

    async def main() -> list[str]:
        stores = [
            await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema) for _ in range(2)
        ]
        try:
            await asyncio.gather(
                *[
                    stores[n % 2].persist_input_state(R, queued(f"in-{n:02}"))
                    for n in range(40)
                ]
            )
            return [str(s.input_id) for s in await stores[0].load_input_states(R)]
        finally:
            for store in stores:
                await store.close()

    loaded = asyncio.run(main())
    assert sorted(loaded) == [f"in-{n:02}" for n in range(40)]
    numbers = [a for _, _, a in arrivals(pg_dsn, pg_schema)]
    assert len(set(numbers)) == 40


def test_writers_in_turn_interleave_as_they_committed(
    pg_dsn: str, pg_schema: str
) -> None:
    async def main() -> list[str]:
        one = await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)
        two = await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)
        for store, name in ((one, "y"), (two, "x"), (one, "w"), (two, "v")):
            await store.persist_input_state(R, queued(name))
        await one.persist_input_state(R, queued("x"))  # rewritten: keeps its place
        loaded = [str(s.input_id) for s in await two.load_input_states(R)]
        await one.close()
        await two.close()
        return loaded

    assert asyncio.run(main()) == ["y", "x", "w", "v"]


def test_one_merged_statement_numbers_each_runtimes_rows_in_order(
    pg_dsn: str, pg_schema: str
) -> None:
    """Rows of two runtimes, interleaved, new and updated, in one statement:
    each runtime's new rows are numbered in statement order after what it
    held; the updated row keeps its number."""

    async def seed(store: PostgresRuntimeStore) -> Any:
        await store.persist_input_state(R, queued("old"))
        return store.sql.upsert_inputs

    upsert = with_store(pg_dsn, pg_schema, seed)
    order = [(R, "q"), (OTHER, "p"), (R, "old"), (R, "o2"), (OTHER, "n")]
    rows = [(str(rid), *records.input_row(queued(name))) for rid, name in order]
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(upsert, [list(column) for column in zip(*rows, strict=True)])
    numbered = arrivals(pg_dsn, pg_schema)
    assert [(r, i) for r, i, _ in numbered] == [
        ("other", "p"),
        ("other", "n"),
        ("owned", "old"),
        ("owned", "q"),
        ("owned", "o2"),
    ]
    assert numbered[2][2] == 1  # the update left it where it was


def test_a_version_1_schema_is_numbered_in_input_id_order(
    pg_dsn: str, pg_schema: str
) -> None:
    """Version 1 loaded by input id; migrating keeps that order, and new
    rows come after it."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        conn.execute(
            f'CREATE TABLE "{pg_schema}".meta (key text PRIMARY KEY, value bigint NOT NULL)'
        )
        for statement in migrations(pg_schema)[1]:
            conn.execute(statement)
        conn.execute(f"INSERT INTO \"{pg_schema}\".meta VALUES ('schema_version', 1)")
        for name in ("b", "a", "c"):
            conn.execute(
                f'INSERT INTO "{pg_schema}".runtime_input_states VALUES (%s, %s, %s)',
                (str(R), *records.input_row(queued(name))),
            )

    async def body(store: PostgresRuntimeStore) -> list[str]:
        await store.persist_input_state(R, queued("0-new"))
        assert await store.claim(R, "owner-1") == 1  # the lease table exists
        return [str(s.input_id) for s in await store.load_input_states(R)]

    assert with_store(pg_dsn, pg_schema, body) == ["a", "b", "c", "0-new"]
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f'SELECT value FROM "{pg_schema}".meta').fetchone()
    assert row == (SCHEMA_VERSION,)
