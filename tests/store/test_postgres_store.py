"""What the PostgreSQL store adds to the conformance suite: its schema
(concurrent migrators, a newer version refused, a configurable name), an
application's own pool, group commit, and its error boundary (PD-51)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from meerkat_runtime.cli import main
from meerkat_runtime.store.base import (
    ConflictError,
    CorruptError,
    UnavailableError,
    WriteFailedError,
)
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.store.postgres_boundary import store_error
from meerkat_runtime.store.postgres_schema import SCHEMA_VERSION, SchemaTooNewError
from meerkat_runtime.testing.conformance import A, rich_state
from tests.store.postgres import drop_schema, dsn_url, new_schema


def test_concurrent_migrators_all_open_one_schema(pg_dsn: str, pg_schema: str) -> None:
    async def main() -> list[int]:
        stores = await asyncio.gather(
            *[PostgresRuntimeStore.open(pg_dsn, schema=pg_schema) for _ in range(6)]
        )
        state = rich_state(1)
        await stores[0].persist_input_state(A, state)
        seen = [len(await s.load_input_states(A)) for s in stores]
        await asyncio.gather(*[s.close() for s in stores])
        return seen

    assert asyncio.run(main()) == [1] * 6
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f'SELECT value FROM "{pg_schema}".meta').fetchone()
    assert row == (SCHEMA_VERSION,)


def test_a_newer_schema_is_refused_and_left_alone(pg_dsn: str, pg_schema: str) -> None:
    async def main() -> None:
        await (await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)).close()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                f'UPDATE "{pg_schema}".meta SET value = %s', (SCHEMA_VERSION + 1,)
            )
        with pytest.raises(SchemaTooNewError, match=f"version {SCHEMA_VERSION + 1}"):
            await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)

    asyncio.run(main())
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f'SELECT value FROM "{pg_schema}".meta').fetchone()
    assert row == (SCHEMA_VERSION + 1,)


def test_two_schemas_in_one_database_do_not_see_each_other(pg_dsn: str) -> None:
    first, second = new_schema(), new_schema()

    async def main() -> tuple[int, int]:
        one = await PostgresRuntimeStore.open(pg_dsn, schema=first)
        two = await PostgresRuntimeStore.open(pg_dsn, schema=second)
        await one.persist_input_state(A, rich_state(1))
        counts = (
            len(await one.load_input_states(A)),
            len(await two.load_input_states(A)),
        )
        await one.close()
        await two.close()
        return counts

    try:
        assert asyncio.run(main()) == (1, 0)
    finally:
        drop_schema(first)
        drop_schema(second)


@pytest.mark.parametrize("schema", ["Upper", "1abc", "a-b", 'x"; DROP', "", 7])
def test_a_bad_schema_name_is_refused_by_name(schema: Any) -> None:
    with pytest.raises(ValueError, match="schema must be"):
        PostgresRuntimeStore("host=/nowhere", schema=schema)


def test_an_applications_pool_is_used_and_left_open(
    pg_dsn: str, pg_schema: str
) -> None:
    async def main() -> bool:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(pg_dsn, open=False)
        await pool.open()
        store = await PostgresRuntimeStore.open(pool, schema=pg_schema)
        state = rich_state(2)
        await store.persist_input_state(A, state)
        assert await store.load_input_state(A, state.input_id) == state
        await store.close()
        async with pool.connection() as conn:  # still usable
            await conn.execute("SELECT 1")
        closed = pool.closed
        await pool.close()
        return closed

    assert asyncio.run(main()) is False


def test_concurrent_input_writes_share_commits(pg_dsn: str, pg_schema: str) -> None:
    """64 concurrent acknowledgements, each committed, in fewer transactions."""

    async def main() -> tuple[int, int]:
        store = await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)
        states = [rich_state(1) for _ in range(64)]
        before = store.commits
        await asyncio.gather(*[store.persist_input_state(A, s) for s in states])
        commits = store.commits - before
        stored = len(await store.load_input_states(A))
        await store.close()
        return stored, commits

    stored, commits = asyncio.run(main())
    assert stored == 64
    assert commits <= 4  # two in flight at most: the first two take few rows


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("08006", UnavailableError),  # connection failure
        ("57P01", UnavailableError),  # admin shutdown
        ("40001", UnavailableError),  # serialization failure
        ("53100", UnavailableError),  # disk full
        ("23505", ConflictError),  # unique violation
        ("XX001", CorruptError),  # data corrupted
        ("42601", WriteFailedError),  # a syntax error: the write's own failure
    ],
)
def test_errors_are_classified_by_sqlstate(sqlstate: str, expected: type) -> None:
    error = psycopg.errors.lookup(sqlstate)("server said no")
    translated = store_error(error, "write", WriteFailedError)
    assert type(translated) is expected
    assert "server said no" in str(translated)


def test_a_lost_connection_without_sqlstate_is_unavailable() -> None:
    translated = store_error(
        psycopg.OperationalError("server closed the connection unexpectedly"),
        "read",
        WriteFailedError,
    )
    assert isinstance(translated, UnavailableError)
    assert translated.retryable


def test_inspect_reads_a_postgresql_store(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = rich_state(2)

    async def fill() -> None:
        store = await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)
        await store.persist_input_state(A, state)
        await store.close()

    asyncio.run(fill())
    assert main(["inspect", dsn_url(pg_dsn), "--schema", pg_schema, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    [runtime] = shown["runtimes"]
    assert runtime["runtime_id"] == str(A)
    assert [i["input_id"] for i in runtime["inputs"]] == [str(state.input_id)]


def test_inspect_says_when_a_schema_holds_no_store(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["inspect", dsn_url(pg_dsn), "--schema", "nothing_here"]) == 2
    )  # cannot be read at all (README, exit status)
    assert "no meerkat store" in capsys.readouterr().err
