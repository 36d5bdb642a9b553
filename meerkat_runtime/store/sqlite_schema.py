"""The SQLite store's schema: versions, migrations, and the statements
shared by the store and by read-only inspection.

**Recovery counts** (decision 18) are kept per runtime, not per row: each
runtime has a ``recovery_epoch`` that a first recovery bumps, and each input
row remembers the epoch it was written in. An unfinished row was loaded by
every recovery since, so its count is the stored one plus the difference. A
restart with 100k pending inputs then writes one row, not 100k (that
rewrite was most of a deep queue's recovery time; bench/durable.py prints it).

**Arrival order** (PD-42): each input row carries ``arrival``, a number its
first write gives it, one more than the highest its runtime holds (later
writes of the row keep it). The write lock orders every write to the file,
across processes, so the numbers follow the order of first writes whatever
the clocks say or the ids are; a runtime's rows load in that order, through
the ``(runtime_id, arrival)`` index. Schema 3 added it: a file of schema 2
gets numbers in input-id order (all that file knew), and its records are
rewritten in the current form, framed (``migrate_to_3``).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import InputDurability
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.base import ConflictError, CorruptError, StoreInternalError

T = TypeVar("T")

SCHEMA_VERSION = 4

Step = str | Callable[[sqlite3.Connection], None]  # a statement, or code to run

MIGRATIONS: dict[int, tuple[Step, ...]] = {
    # version reached -> steps that take a file from the previous version
    1: (
        """CREATE TABLE IF NOT EXISTS runtime_input_states (
            runtime_id TEXT NOT NULL, input_id TEXT NOT NULL, state_json BLOB NOT NULL,
            PRIMARY KEY (runtime_id, input_id))""",
        """CREATE TABLE IF NOT EXISTS runtime_boundary_receipts (
            runtime_id TEXT NOT NULL, run_id TEXT NOT NULL, sequence INTEGER NOT NULL,
            receipt_json BLOB NOT NULL, PRIMARY KEY (runtime_id, run_id, sequence))""",
        """CREATE TABLE IF NOT EXISTS runtime_session_snapshots (
            runtime_id TEXT PRIMARY KEY, session_snapshot BLOB NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS runtime_states (
            runtime_id TEXT PRIMARY KEY, runtime_state_json BLOB NOT NULL)""",
    ),
    2: (
        "ALTER TABLE runtime_input_states "
        "ADD COLUMN recovery_epoch INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runtime_states ADD COLUMN recovery_epoch INTEGER NOT NULL DEFAULT 0",
    ),
    3: (
        "ALTER TABLE runtime_input_states ADD COLUMN arrival INTEGER NOT NULL DEFAULT 0",
        lambda conn: migrate_to_3(
            conn
        ),  # (defined below) numbers the rows: before the index
        "CREATE UNIQUE INDEX runtime_input_arrival "
        "ON runtime_input_states (runtime_id, arrival)",
    ),
    # PD-58: the inbox of inputs submitted by processes that do not own the
    # runtime (see sqlite_inbox).
    4: (
        """CREATE TABLE runtime_inbox (
            runtime_id TEXT NOT NULL, input_id TEXT NOT NULL,
            arrival INTEGER NOT NULL, idempotency_key TEXT,
            pending INTEGER NOT NULL, entry_json BLOB NOT NULL,
            PRIMARY KEY (runtime_id, input_id))""",
        "CREATE UNIQUE INDEX runtime_inbox_arrival ON runtime_inbox (runtime_id, arrival)",
        "CREATE INDEX runtime_inbox_key ON runtime_inbox (runtime_id, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX runtime_inbox_pending ON runtime_inbox (runtime_id) "
        "WHERE pending = 1",
    ),
}


def apply_step(conn: sqlite3.Connection, step: Step) -> None:
    """Run one migration step."""
    if isinstance(step, str):
        conn.execute(step)
    else:
        step(conn)


# Every input row is stamped with its runtime's current recovery epoch, and
# a new row with its arrival (an update keeps the row's arrival: the conflict
# clause does not set it). One statement writes one row (parameters ?1-?3)
# or many (see upsert_inputs_sql).
_INSERT_INPUTS = (
    "INSERT INTO runtime_input_states "
    "(runtime_id, input_id, state_json, recovery_epoch, arrival) VALUES "
)
_ROW = (
    "({rid}, {iid}, {data}, "
    "COALESCE((SELECT recovery_epoch FROM runtime_states WHERE runtime_id = {rid}), 0), "
    "COALESCE((SELECT MAX(arrival) FROM runtime_input_states WHERE runtime_id = {rid}), 0)"
    " + {position})"
)
_ON_CONFLICT = (
    " ON CONFLICT (runtime_id, input_id) DO UPDATE SET "
    "state_json = excluded.state_json, recovery_epoch = excluded.recovery_epoch"
)
UPSERT_INPUT = (
    _INSERT_INPUTS
    + _ROW.format(rid="?1", iid="?2", data="?3", position=1)
    + _ON_CONFLICT
)
MERGED_ROWS = 100  # input rows per merged statement (3 parameters each)


@functools.cache
def upsert_inputs_sql(count: int) -> str:
    """``UPSERT_INPUT`` for ``count`` rows in one statement, parameters
    (runtime_id, input_id, state_json) per row: SQLite runs it in one step,
    so the writer thread takes the GIL once for all of them instead of once
    per row (see ``SqliteRuntimeStore._commit_group``). Row k adds k to its
    runtime's highest arrival: whether SQLite reads that highest number once
    for the statement or again before each row, rows of one runtime get
    increasing numbers in statement order."""
    rows = [
        _ROW.format(
            rid=f"?{3 * k + 1}",
            iid=f"?{3 * k + 2}",
            data=f"?{3 * k + 3}",
            position=k + 1,
        )
        for k in range(count)
    ]
    return _INSERT_INPUTS + ", ".join(rows) + _ON_CONFLICT


# (input_id, state_json, recoveries since the row was written) of runtime ?1;
# a load adds ``IN_ARRIVAL_ORDER`` (schema 3 on: inspection reads older files).
# The runtime's epoch is a constant subquery, evaluated once: a join would
# look it up again for every row.
SELECT_INPUTS = (
    "SELECT input_id, state_json, COALESCE((SELECT recovery_epoch FROM runtime_states "
    "WHERE runtime_id = ?1), 0) - recovery_epoch "
    "FROM runtime_input_states WHERE runtime_id = ?1"
)
IN_ARRIVAL_ORDER = " ORDER BY arrival"
# The records of some inputs of runtime ?1, their ids a JSON array in ?2:
# one statement for a batch of any size (PD-64).
SELECT_PAYLOADS = (
    "SELECT input_id, state_json FROM runtime_input_states "
    "WHERE runtime_id = ?1 AND input_id IN (SELECT value FROM json_each(?2))"
)
BUMP_EPOCH = (
    "INSERT INTO runtime_states (runtime_id, runtime_state_json, recovery_epoch) "
    "VALUES (?, ?, 1) ON CONFLICT (runtime_id) DO UPDATE SET "
    "runtime_state_json = excluded.runtime_state_json, "
    "recovery_epoch = runtime_states.recovery_epoch + 1"
)
UPSERT_PHASE = (
    "INSERT INTO runtime_states (runtime_id, runtime_state_json) VALUES (?, ?) "
    "ON CONFLICT (runtime_id) DO UPDATE SET runtime_state_json = excluded.runtime_state_json"
)
UPSERT_SNAPSHOT = (
    "INSERT INTO runtime_session_snapshots (runtime_id, session_snapshot) VALUES (?, ?) "
    "ON CONFLICT (runtime_id) DO UPDATE SET session_snapshot = excluded.session_snapshot"
)


class SchemaTooNewError(StoreInternalError):
    """The file was written by a newer meerkat-runtime."""


def decode_input_row(
    runtime_id: str,
    row: tuple[Any, ...],
    decode: Callable[[str, str, object], InputState] = records.decode_state,
) -> InputState:
    """One ``SELECT_INPUTS`` row: the record (as ``decode`` reads it), plus
    the recoveries that loaded it unfinished since it was written (see the
    module notes)."""
    input_id, data, lag = row
    state = decode(runtime_id, str(input_id), data)
    # Recovery drops ephemeral records unread (decision 13): never counted.
    if (
        lag > 0
        and not state.is_terminal()
        and state.durability is not InputDurability.EPHEMERAL
    ):
        state.recovery_count += lag
    return state


def receipt_exists(
    conn: sqlite3.Connection,
    runtime_id: str,
    receipt: RunBoundaryReceipt,
    encoded: bytes,
) -> bool:
    """Decision 16: an identical receipt is a no-op; a different one conflicts."""
    row = conn.execute(
        "SELECT receipt_json FROM runtime_boundary_receipts "
        "WHERE runtime_id = ? AND run_id = ? AND sequence = ?",
        (runtime_id, str(receipt.run_id), receipt.sequence),
    ).fetchone()
    if row is None:
        return False
    if records.same_receipt(runtime_id, row[0], encoded):
        return True
    raise ConflictError(
        f"receipt conflict: runtime {runtime_id!r} run {receipt.run_id} sequence "
        f"{receipt.sequence} already has a different receipt"
    )


# ---------------------------------------------------------------- schema 2 -> 3

MIGRATION_CHUNK = 1000  # rows a migration holds in memory at a time


def migrate_to_3(conn: sqlite3.Connection) -> None:
    """Number every input row in input-id order, the order schema 2 loaded
    them in (the best that file knows of their arrival), and rewrite every
    record in the current form, framed. A record that does not decode is
    left as it is, for the recovery of its runtime to report, as it would
    have: one damaged record must not keep every runtime of the file from
    opening. Runs inside the migration's transaction."""
    inputs = _each_row(conn, records.INPUTS, ("runtime_id", "input_id"), "state_json")
    for arrival, (rid, iid, data) in enumerate(inputs, start=1):
        state = _decoded(records.decode_state, rid, iid, data)
        conn.execute(
            "UPDATE runtime_input_states SET arrival = ?, state_json = ? "
            "WHERE runtime_id = ? AND input_id = ?",
            (arrival, data if state is None else records.encode_state(state), rid, iid),
        )
    keys = ("runtime_id", "run_id", "sequence")
    for rid, run, seq, data in _each_row(conn, records.RECEIPTS, keys, "receipt_json"):
        receipt = _decoded(records.decode_receipt, rid, f"{run}/{seq}", data)
        if receipt is not None:
            conn.execute(
                "UPDATE runtime_boundary_receipts SET receipt_json = ? "
                "WHERE runtime_id = ? AND run_id = ? AND sequence = ?",
                (records.encode_receipt(receipt), rid, run, seq),
            )
    phases = _each_row(conn, records.STATES, ("runtime_id",), "runtime_state_json")
    for rid, data in phases:
        phase = _decoded(records.decode_phase, rid, data)
        if phase is not None:
            conn.execute(
                "UPDATE runtime_states SET runtime_state_json = ? WHERE runtime_id = ?",
                (records.encode_phase(phase), rid),
            )


def _decoded(decode: Callable[..., T], *args: Any) -> T | None:
    """``decode(*args)``, or ``None`` for a damaged record."""
    try:
        return decode(*args)
    except CorruptError:
        return None


def _each_row(
    conn: sqlite3.Connection, table: str, keys: tuple[str, ...], value: str
) -> Iterator[tuple[Any, ...]]:
    """Every row of ``table`` in key order, ``MIGRATION_CHUNK`` at a time
    (bounded memory on a large file). Each chunk is read in full before it
    is handed out, so the caller may update the rows it is given."""
    columns = ", ".join(keys)
    select = f"SELECT {columns}, {value} FROM {table}"
    order = f" ORDER BY {columns} LIMIT {MIGRATION_CHUNK}"
    after = f" WHERE ({columns}) > ({', '.join('?' * len(keys))})"
    rows = conn.execute(select + order).fetchall()
    while rows:
        yield from rows
        rows = conn.execute(select + after + order, rows[-1][: len(keys)]).fetchall()
