"""``audit``'s check of the runtime inboxes (PD-58, PD-72).

``inspect`` and the replay read the ledger; the inbox holds what processes
submitted and no owner has admitted yet, or what an owner settled without
admitting. Those entries are acknowledged input too, so ``audit`` reads
every inbox row, pending and settled, decodes it as a store does, and
checks its unchecksummed columns against its checksummed record
(``inbox.decode_row``). The first damaged row raises ``Corrupt`` naming its
table, runtime and entry, which the command reports as a record that does
not decode (exit 1). Read-only, like the rest of ``audit``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from meerkat_runtime.store import inbox
from meerkat_runtime.store.base import ReadFailedError
from meerkat_runtime.store.inbox import INBOX

_COLUMNS = "runtime_id, input_id, arrival, entry_json, idempotency_key, pending"


def check_rows(rows: Iterable[Sequence[object]]) -> int:
    """Decode and check each (runtime id, then a ``decode_row`` row) row;
    the number of entries."""
    count = 0
    for row in rows:
        inbox.decode_row(str(row[0]), row[1:])
        count += 1
    return count


def check_sqlite_inbox(path: Path) -> int:
    """Every inbox row of a SQLite file (one without an inbox table, an
    older schema, has none)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            if not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (INBOX,),
            ).fetchone():
                return 0
            return check_rows(conn.execute(f"SELECT {_COLUMNS} FROM {INBOX}"))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ReadFailedError(f"{path}: reading {INBOX}: {exc}") from None


def check_postgres_inbox(dsn: str, schema: str) -> int:
    """Every inbox row of a PostgreSQL store's schema, in one read-only
    snapshot."""
    import psycopg

    from meerkat_runtime.store.postgres_schema import Statements, checked_schema

    table = Statements(checked_schema(schema)).table(INBOX)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if exists is None or exists[0] is None:
            return 0
        return check_rows(conn.execute(f"SELECT {_COLUMNS} FROM {table}"))
