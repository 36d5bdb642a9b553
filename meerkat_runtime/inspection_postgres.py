"""``meerkat-runtime inspect`` of a PostgreSQL store: the same views as a
SQLite file's (``inspection.RuntimeView``), read-only.

It never goes through ``PostgresRuntimeStore``, which would create or
migrate the schema: a schema that is missing, or newer than this code, is
said, not changed. Needs the ``postgres`` extra.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from meerkat_runtime.input_state import InputState
from meerkat_runtime.inspection import (
    InspectionError,
    RuntimeView,
    with_inbox,
    with_leases,
)
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.base import (
    CorruptError,
    ReadFailedError,
    RuntimeStoreError,
)
from meerkat_runtime.store.inbox import INBOX
from meerkat_runtime.store.leases import Lease
from meerkat_runtime.store.postgres_boundary import store_error
from meerkat_runtime.store.postgres_schema import (
    SCHEMA_VERSION,
    Statements,
    checked_schema,
)
from meerkat_runtime.store.sqlite_schema import decode_input_row


def label(dsn: str, schema: str) -> str:
    """The DSN without its password, and the schema: safe to print."""
    try:  # make_conninfo(dsn, password=None) would keep it: None is "unchanged"
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return f"a PostgreSQL DSN schema {schema}"
    params.pop("password", None)
    shown = make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    return f"{shown} schema {schema}"


def load_postgres(dsn: str, schema: str, limit: int | None = None) -> list[RuntimeView]:
    """Every runtime in ``schema``, each with its first ``limit`` inputs and
    receipts (None: all), rows streamed and decoded one at a time, as
    ``inspection.load_database`` does. Raises ``InspectionError``, or
    ``RuntimeStoreError.ReadFailed`` for a row that does not decode."""
    try:
        sql = Statements(checked_schema(schema))
        conninfo_to_dict(dsn)  # a malformed DSN is said before connecting
    except (ValueError, psycopg.ProgrammingError) as exc:
        raise InspectionError(str(exc)) from None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # One snapshot for everything read.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            _check_schema(conn, sql, dsn)
            inbox = {str(rid): int(n) for rid, n in conn.execute(_inbox_counts(sql))}
            ids = sorted(
                {*(str(r) for (r,) in conn.execute(_runtime_ids(sql))), *inbox}
            )
            views = [_load_runtime(conn, sql, rid, limit) for rid in ids]
            leases = [Lease(*row) for row in conn.execute(sql.select_leases)]
            return with_inbox(with_leases(views, leases), inbox)
    except (InspectionError, RuntimeStoreError):
        raise
    except Exception as exc:
        error = store_error(exc, label(dsn, schema), ReadFailedError)
        if isinstance(error, CorruptError):  # read, and damaged: as a bad row
            raise error from None
        raise InspectionError(f"cannot read: {error}") from None


def _check_schema(conn: psycopg.Connection[Any], sql: Statements, dsn: str) -> None:
    found = conn.execute("SELECT to_regclass(%s)", (sql.table("meta"),)).fetchone()
    if found == (None,):
        raise InspectionError(
            f"{label(dsn, sql.schema)}: no meerkat store (no table {sql.table('meta')})"
        )
    row = conn.execute(sql.version).fetchone()
    version = 0 if row is None else int(row[0])
    if version > SCHEMA_VERSION:
        raise InspectionError(
            f"{label(dsn, sql.schema)} has schema version {version}, newer than this "
            f"meerkat-runtime reads ({SCHEMA_VERSION}); upgrade meerkat-runtime"
        )
    if version < SCHEMA_VERSION:  # inspect changes nothing, so it cannot migrate
        raise InspectionError(
            f"{label(dsn, sql.schema)} has schema version {version}, older than "
            f"this meerkat-runtime reads ({SCHEMA_VERSION}); opening it with "
            "PostgresRuntimeStore migrates it"
        )


def _runtime_ids(sql: Statements) -> str:
    return (
        f"SELECT runtime_id FROM {sql.table(records.INPUTS)} "
        f"UNION SELECT runtime_id FROM {sql.table(records.RECEIPTS)} "
        f"UNION SELECT runtime_id FROM {sql.table(records.STATES)} ORDER BY 1"
    )


def _inbox_counts(sql: Statements) -> str:
    """Pending inbox entries per runtime (PD-58)."""
    return (
        f"SELECT runtime_id, count(*) FROM {sql.table(INBOX)} WHERE pending "
        "GROUP BY runtime_id"
    )


def _load_runtime(
    conn: psycopg.Connection[Any], sql: Statements, rid: str, limit: int | None
) -> RuntimeView:
    phase = conn.execute(sql.select_phase, (rid,)).fetchone()
    inputs: list[InputState] = []
    by_state: dict[str, int] = {}
    query = sql.select_inputs + sql.in_arrival_order
    for row in conn.cursor().stream(query, {"r": rid}):  # one row at a time
        stored = decode_input_row(rid, row)
        name = stored.current_state().value
        by_state[name] = by_state.get(name, 0) + 1
        if limit is None or len(inputs) < limit:
            inputs.append(stored)
    receipts: list[RunBoundaryReceipt] = []
    receipt_count = 0
    for run, seq, data in conn.cursor().stream(sql.select_receipts, (rid,)):
        receipt = records.decode_receipt(rid, f"{run}/{seq}", data)
        receipt_count += 1
        if limit is None or len(receipts) < limit:
            receipts.append(receipt)
    inputs.sort(key=lambda s: (s.created_at, str(s.input_id)))
    state = None if phase is None else records.decode_phase(rid, phase[0])
    return RuntimeView(
        rid, state, inputs, receipts, by_state=by_state, receipt_count=receipt_count
    )
