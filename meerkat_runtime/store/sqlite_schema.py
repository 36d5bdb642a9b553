"""The SQLite store's schema: versions, migrations, and the statements
shared by the store and by read-only inspection.

**Recovery counts** (decision 18) are kept per runtime, not per row: each
runtime has a ``recovery_epoch`` that a first recovery bumps, and each input
row remembers the epoch it was written in. An unfinished row was loaded by
every recovery since, so its count is the stored one plus the difference. A
restart with 100k pending inputs then writes one row, not 100k (that
rewrite was most of a deep queue's recovery time; bench/durable.py prints it).
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import InputDurability
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.base import ConflictError, StoreInternalError

SCHEMA_VERSION = 2

MIGRATIONS: dict[int, tuple[str, ...]] = {
    # version reached -> statements that take a file from the previous version
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
}

# Every input row is stamped with its runtime's current recovery epoch. One
# statement writes one row (parameters ?1-?3) or many (see upsert_inputs_sql).
_INSERT_INPUTS = (
    "INSERT INTO runtime_input_states "
    "(runtime_id, input_id, state_json, recovery_epoch) VALUES "
)
_EPOCH_OF = (
    "COALESCE((SELECT recovery_epoch FROM runtime_states WHERE runtime_id = {}), 0)"
)
_ON_CONFLICT = (
    " ON CONFLICT (runtime_id, input_id) DO UPDATE SET "
    "state_json = excluded.state_json, recovery_epoch = excluded.recovery_epoch"
)
UPSERT_INPUT = f"{_INSERT_INPUTS}(?1, ?2, ?3, {_EPOCH_OF.format('?1')}){_ON_CONFLICT}"
MERGED_ROWS = 100  # input rows per merged statement (4 parameters each)


@functools.cache
def upsert_inputs_sql(count: int) -> str:
    """``UPSERT_INPUT`` for ``count`` rows in one statement, parameters
    (runtime_id, input_id, state_json, runtime_id) per row: SQLite runs it in
    one step, so the writer thread takes the GIL once for all of them
    instead of once per row (see ``SqliteRuntimeStore._commit_group``)."""
    row = f"(?, ?, ?, {_EPOCH_OF.format('?')})"
    return _INSERT_INPUTS + ", ".join([row] * count) + _ON_CONFLICT


# (input_id, state_json, recoveries since the row was written) of runtime ?1.
# The runtime's epoch is a constant subquery, evaluated once: a join would
# look it up again for every row.
SELECT_INPUTS = (
    "SELECT input_id, state_json, COALESCE((SELECT recovery_epoch FROM runtime_states "
    "WHERE runtime_id = ?1), 0) - recovery_epoch "
    "FROM runtime_input_states WHERE runtime_id = ?1"
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


def decode_input_row(runtime_id: str, row: tuple[Any, ...]) -> InputState:
    """One ``SELECT_INPUTS`` row: the record, plus the recoveries that loaded
    it unfinished since it was written (see the module notes)."""
    input_id, data, lag = row
    state = records.decode_state(runtime_id, str(input_id), data)
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
