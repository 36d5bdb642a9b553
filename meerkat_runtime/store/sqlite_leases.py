"""The SQLite store's leases (PD-36): their table and statements.

The table is created whenever a file is opened and lacks it, independent of
the schema version: a file written before leases existed gains it on its
first open, and nothing else of the schema changes. (A meerkat-runtime
older than leases ignores the table, so it neither claims nor fences: do not
mix versions on one file when several processes drive it.)

Fencing costs one primary-key lookup per runtime per write request: the
lease row's epoch is read inside the request's transaction (or savepoint),
before its rows are written; a group of merged accept rows looks up each of
its runtimes once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from meerkat_runtime.errors import RuntimeOwnedError
from meerkat_runtime.store.leases import Lease, check_fence, claimed, still_held

CREATE_LEASES = """CREATE TABLE IF NOT EXISTS runtime_leases (
    runtime_id TEXT PRIMARY KEY, owner TEXT NOT NULL, epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL)"""

_SELECT = "SELECT owner, epoch, expires_at FROM runtime_leases WHERE runtime_id = ?"
_UPSERT = (
    "INSERT INTO runtime_leases (runtime_id, owner, epoch, expires_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (runtime_id) DO UPDATE SET "
    "owner = excluded.owner, epoch = excluded.epoch, expires_at = excluded.expires_at"
)
_EXTEND = (
    "UPDATE runtime_leases SET expires_at = ? "
    "WHERE runtime_id = ? AND owner = ? AND epoch = ? AND expires_at > 0"
)  # a released lease (expires_at 0) stays released: leases.renewable


def create_leases_table(conn: sqlite3.Connection) -> None:
    """Called by setup on every open (a no-op once the table exists)."""
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runtime_leases'"
    ).fetchone():
        return  # no write, so no write lock: most opens find it there
    conn.execute(CREATE_LEASES)


def lease_of(conn: sqlite3.Connection, runtime_id: str) -> Lease | None:
    row = conn.execute(_SELECT, (runtime_id,)).fetchone()
    return None if row is None else Lease(runtime_id, row[0], row[1], row[2])


def claim(
    conn: sqlite3.Connection, runtime_id: str, owner: str, ttl: float, now: float
) -> int | RuntimeOwnedError:
    """The new epoch, or the refusal (returned, not raised: the transaction
    boundary would report anything raised in it as a failed write)."""
    try:
        lease = claimed(lease_of(conn, runtime_id), runtime_id, owner, ttl, now)
    except RuntimeOwnedError as refused:
        return refused
    conn.execute(_UPSERT, (runtime_id, owner, lease.epoch, lease.expires_at))
    return lease.epoch


def renew(
    conn: sqlite3.Connection,
    owner: str,
    epochs: Iterable[tuple[str, int]],
    expires_at: float,
) -> list[str]:
    """The runtimes of ``epochs`` whose lease ``owner`` no longer holds."""
    return [
        runtime_id
        for runtime_id, epoch in epochs
        if conn.execute(_EXTEND, (expires_at, runtime_id, owner, epoch)).rowcount == 0
    ]


def release(conn: sqlite3.Connection, runtime_id: str, owner: str, epoch: int) -> None:
    if still_held(lease_of(conn, runtime_id), owner, epoch):
        conn.execute(_UPSERT, (runtime_id, owner, epoch, 0.0))


def fence(conn: sqlite3.Connection, runtime_id: str, epoch: int) -> None:
    """Inside a write's transaction: refuse it unless the lease is at ``epoch``."""
    row = conn.execute(
        "SELECT epoch FROM runtime_leases WHERE runtime_id = ?", (runtime_id,)
    ).fetchone()
    check_fence(runtime_id, epoch, None if row is None else row[0])


def all_leases(conn: sqlite3.Connection) -> list[Lease]:
    """Every lease row; none in a file that has no lease table yet."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runtime_leases'"
    ).fetchone():
        return []
    return [
        Lease(rid, owner, epoch, expires_at)
        for rid, owner, epoch, expires_at in conn.execute(
            "SELECT runtime_id, owner, epoch, expires_at FROM runtime_leases "
            "ORDER BY runtime_id"
        )
    ]
