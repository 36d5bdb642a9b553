"""A connection lost during COMMIT (PD-52): the store reads back before it
answers. A write that committed is answered with success (never with a
failure), one that did not is never answered with success: it is tried
again, or is ``Unavailable`` once ``reconnect_timeout`` has run out.

Both branches on a real acknowledgement (``persist_input_state``, one
statement that commits by itself, PD-57):

* committed: the server ran and committed the statement, then the client
  lost the connection before it read the answer (a psycopg-level hook
  closes the connection after the statement returned and raises);
* not committed: the statement is held on a row lock, and its backend is
  terminated from another connection (``pg_terminate_backend``) while it
  waits, so the server rolls it back.

Each checks the arrival counter too: a write applied twice would have
raised it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from meerkat_runtime.input_state import InputState
from meerkat_runtime.store.base import UnavailableError
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.testing.conformance import A, rich_state

ACCEPT = "runtime_arrivals"  # a table only the input upsert writes


def _counter(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT last FROM "{schema}".runtime_arrivals WHERE runtime_id = %s',
            (str(A),),
        ).fetchone()
    assert row is not None
    return int(row[0])


@asynccontextmanager
async def _store(
    dsn: str, schema: str, reconnect_timeout: float = 30.0
) -> AsyncIterator[PostgresRuntimeStore]:
    """A store on a pool of the test's own: a tiny ``reconnect_timeout`` is
    then the writer's alone (the pool still opens normally)."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    store = await PostgresRuntimeStore.open(
        pool, schema=schema, reconnect_timeout=reconnect_timeout
    )
    try:
        yield store
    finally:
        await store.close()
        await pool.close()


# ---------------------------------------------------------------- committed


def test_a_commit_whose_answer_was_lost_is_answered_with_success(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = psycopg.AsyncConnection.execute
    lost: list[str] = []

    async def answer_lost(
        self: psycopg.AsyncConnection[Any], query: Any, *args: Any, **kw: Any
    ) -> Any:
        cursor = await real(self, query, *args, **kw)
        if ACCEPT in str(query) and not lost:  # committed, answer never read
            lost.append(str(query))
            await self.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return cursor

    state = rich_state(2)

    async def run() -> tuple[InputState | None, dict[str, int]]:
        async with _store(pg_dsn, pg_schema) as store:
            monkeypatch.setattr(psycopg.AsyncConnection, "execute", answer_lost)
            await store.persist_input_state(A, state)  # no error: it committed
            monkeypatch.undo()
            return await store.load_input_state(A, state.input_id), store.recoveries

    stored, recoveries = asyncio.run(run())
    assert lost, "the hook never fired"
    assert stored == state
    assert recoveries == {"read back: committed": 1}  # not written again
    assert _counter(pg_dsn, pg_schema) == 1


# ---------------------------------------------------------------- not committed


async def _terminated_mid_write(
    dsn: str, schema: str, store: PostgresRuntimeStore, state: InputState
) -> asyncio.Task[None]:
    """Start writing ``state`` while another transaction holds A's arrival
    counter, terminate the writer's backend as it waits, then let go."""
    async with await psycopg.AsyncConnection.connect(dsn) as holder:
        await holder.execute(
            f'SELECT 1 FROM "{schema}".runtime_arrivals WHERE runtime_id = %s FOR UPDATE',
            (str(A),),
        )
        write = asyncio.create_task(store.persist_input_state(A, state))
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            pid = await _waiting_backend(admin, schema)
            cur = await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert await cur.fetchone() == (True,)
            await _gone(admin, pid)
        await holder.rollback()
    return write


async def _first_row(
    admin: psycopg.AsyncConnection[Any], query: str, *params: Any
) -> Any:
    """The first row ``query`` returns, polled for until there is one (the
    state it waits for has no event to wait on)."""
    while (row := await (await admin.execute(query, params)).fetchone()) is None:
        await asyncio.sleep(0.01)
    return row


async def _waiting_backend(admin: psycopg.AsyncConnection[Any], schema: str) -> int:
    """The backend of the store's write, once it waits for the row lock."""
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE %s AND pid <> pg_backend_pid()"
    )
    return int((await _first_row(admin, waiting, f'%"{schema}".{ACCEPT}%'))[0])


async def _gone(admin: psycopg.AsyncConnection[Any], pid: int) -> None:
    """Wait until the terminated backend has exited (rolled back)."""
    exited = "SELECT WHERE NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)"
    await _first_row(admin, exited, pid)


def test_a_write_killed_before_its_commit_is_unavailable_when_time_is_up(
    pg_dsn: str, pg_schema: str
) -> None:
    first, second = rich_state(2), rich_state(3)

    async def run() -> tuple[BaseException | None, InputState | None, dict[str, int]]:
        # No time to try again: the read-back's verdict is the answer.
        async with _store(pg_dsn, pg_schema, reconnect_timeout=1e-6) as store:
            await store.persist_input_state(A, first)  # the counter row exists
            write = await _terminated_mid_write(pg_dsn, pg_schema, store, second)
            error = (await asyncio.gather(write, return_exceptions=True))[0]
            stored = await store.load_input_state(A, second.input_id)
            return error, stored, store.recoveries

    error, stored, recoveries = asyncio.run(run())
    assert isinstance(error, UnavailableError), error
    assert error.retryable
    assert "nothing was written" in str(error)
    assert stored is None
    assert recoveries["read back: not committed"] == 1
    assert "read back: committed" not in recoveries
    assert _counter(pg_dsn, pg_schema) == 1  # the first write's only


def test_a_write_killed_before_its_commit_is_written_once_when_tried_again(
    pg_dsn: str, pg_schema: str
) -> None:
    first, second = rich_state(2), rich_state(3)

    async def run() -> tuple[InputState | None, dict[str, int]]:
        async with _store(pg_dsn, pg_schema) as store:
            await store.persist_input_state(A, first)
            write = await _terminated_mid_write(pg_dsn, pg_schema, store, second)
            await write  # tried again on a new connection: success
            return await store.load_input_state(A, second.input_id), store.recoveries

    stored, recoveries = asyncio.run(run())
    assert stored == second
    assert recoveries["read back: not committed"] == 1
    assert recoveries["writes tried again"] == 1
    assert "read back: committed" not in recoveries
    assert _counter(pg_dsn, pg_schema) == 2  # once for each input
