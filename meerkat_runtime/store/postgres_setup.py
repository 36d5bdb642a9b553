"""Opening the PostgreSQL store: the pool it makes from a DSN, and the
schema's forward migration under an advisory lock (see ``postgres_schema``)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from meerkat_runtime.store.base import StoreInternalError, UnavailableError
from meerkat_runtime.store.postgres_boundary import store_error
from meerkat_runtime.store.postgres_schema import (
    SCHEMA_VERSION,
    SchemaTooNewError,
    migrations,
)
from meerkat_runtime.store.postgres_writer import Conn, PostgresWriter

# How long one wait for a pooled connection lasts before the writer looks
# again (it keeps trying until its reconnect timeout).
CONNECTION_WAIT = 5.0


async def open_pool(
    dsn: str, size: int, reconnect_timeout: float
) -> AsyncConnectionPool[Any]:
    """A pool of autocommit connections (the store opens its transactions
    itself), with at least one connection made."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True},
        open=False,
        timeout=CONNECTION_WAIT,
        reconnect_timeout=reconnect_timeout,
    )
    try:
        await pool.open(wait=True, timeout=reconnect_timeout)
    except BaseException as exc:
        await pool.close()
        if isinstance(exc, psycopg.Error):
            raise UnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc
        raise
    return pool


async def migrate(writer: PostgresWriter) -> None:
    """Create or migrate the schema forward, one migrator at a time; refuse a
    schema newer than this code. Tried again while the server is
    unavailable (it is idempotent: the lock and the version decide)."""
    sql = writer.sql

    async def work(conn: Conn) -> None:
        async with conn.transaction():
            await conn.execute(sql.lock, (sql.lock_key,))
            for statement in sql.create_meta:
                await conn.execute(statement)
            cur = await conn.execute(sql.version)
            row = await cur.fetchone()
            found = 0 if row is None else int(row[0])
            if found > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"PostgreSQL schema {sql.schema!r} is at version {found}, newer "
                    f"than this meerkat-runtime's {SCHEMA_VERSION}: upgrade meerkat-runtime"
                )
            steps = migrations(sql.schema)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in steps[version]:
                    await conn.execute(statement)
            if found != SCHEMA_VERSION:
                await conn.execute(sql.set_version, (SCHEMA_VERSION,))

    try:
        await writer.read(work, f"opening PostgreSQL schema {sql.schema!r}")
    except SchemaTooNewError:
        raise
    except Exception as exc:
        raise store_error(exc, "opening the store", StoreInternalError) from exc
