"""The SQLite store's inbox (PD-58): its statements and contract methods.

Every submission is one write transaction (``BEGIN IMMEDIATE``), and SQLite
lets one writer at a time into a file, across processes: the duplicate
checks and the insert of one submission see every submission committed
before it, so of two processes submitting one idempotency key at once,
exactly one stores it. The checks read the inbox before the ledger, which
an owner's admission writes in the same transaction that removes the entry.
An entry's ``arrival`` is one more than the highest its runtime's inbox
holds, under that same lock: the order submissions committed in.

The ledger has no column for idempotency keys; a submission with a key
finds the stored records containing the key's JSON form (``instr`` on the
raw bytes, no decoding) and decodes only those (PD-59).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input
from meerkat_runtime.outcomes import AcceptOutcome, Deduplicated, Submitted
from meerkat_runtime.store import inbox, records
from meerkat_runtime.store.base import ConflictError
from meerkat_runtime.store.inbox import InboxEntry
from meerkat_runtime.store.sqlite_schema import UPSERT_INPUT, UPSERT_PHASE

if TYPE_CHECKING:
    from meerkat_runtime.store.sqlite_writer import SqliteWriter

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]

_ENTRY = (
    "SELECT input_id, arrival, entry_json, idempotency_key, pending "
    "FROM runtime_inbox WHERE runtime_id = ?1"
)

_INSERT = (
    "INSERT INTO runtime_inbox "
    "(runtime_id, input_id, arrival, idempotency_key, pending, entry_json) VALUES "
    "(?1, ?2, COALESCE((SELECT MAX(arrival) FROM runtime_inbox WHERE runtime_id = ?1), 0)"
    " + 1, ?3, 1, ?4)"
)


def duplicate(conn: sqlite3.Connection, rid: str, inp: Input) -> AcceptOutcome | None:
    """PD-59: the inbox first (pending or settled entries with the input's
    id or key), then the ledger (the id, then the key)."""
    iid, key = str(inp.id()), inbox.key_of(inp)
    rows = conn.execute(
        _ENTRY + " AND (input_id = ?2 OR idempotency_key = ?3) ORDER BY arrival",
        (rid, iid, key),
    ).fetchall()
    for row in rows:
        found = inbox.duplicate_of(inp, inbox.decode_row(rid, row))
        if found is not None:
            return found
    if conn.execute(
        "SELECT 1 FROM runtime_input_states WHERE runtime_id = ? AND input_id = ?",
        (rid, iid),
    ).fetchone():
        return Deduplicated(input_id=inp.id(), existing_id=inp.id())
    if key is None:
        return None
    candidates = conn.execute(
        "SELECT input_id, state_json FROM runtime_input_states "
        "WHERE runtime_id = ? AND instr(state_json, ?) > 0 ORDER BY arrival",
        (rid, inbox.key_pattern(key)),
    ).fetchall()
    states = [records.decode_state(rid, str(i), data) for i, data in candidates]
    existing = inbox.ledger_key_match(states, key)
    return (
        None
        if existing is None
        else Deduplicated(input_id=inp.id(), existing_id=existing)
    )


def submit(
    conn: sqlite3.Connection, rid: str, inp: Input, data: bytes
) -> AcceptOutcome:
    row = conn.execute(
        "SELECT runtime_state_json FROM runtime_states WHERE runtime_id = ?", (rid,)
    ).fetchone()
    refused = inbox.refused_in(
        None if row is None else records.decode_phase(rid, row[0])
    )
    if refused is not None:
        return refused
    found = duplicate(conn, rid, inp)
    if found is not None:
        return found
    conn.execute(_INSERT, (rid, str(inp.id()), inbox.key_of(inp), data))
    return Submitted(input_id=inp.id())


def admit(
    conn: sqlite3.Connection,
    rid: str,
    phase: bytes,
    states: Sequence[InputState],
    taken: Sequence[tuple[str, bytes | None]],
) -> None:
    """Remove (record None) or settle each taken entry, which must still be
    pending, then write the phase and the admitted states."""
    for iid, settled in taken:
        cursor = (
            conn.execute(
                "DELETE FROM runtime_inbox WHERE runtime_id = ? AND input_id = ? "
                "AND pending = 1",
                (rid, iid),
            )
            if settled is None
            else conn.execute(
                "UPDATE runtime_inbox SET pending = 0, entry_json = ? "
                "WHERE runtime_id = ? AND input_id = ? AND pending = 1",
                (settled, rid, iid),
            )
        )
        if cursor.rowcount != 1:
            raise ConflictError(
                f"inbox entry {iid!r} of runtime {rid!r} is no longer pending"
            )
    conn.execute(UPSERT_PHASE, (rid, phase))
    for state in states:
        conn.execute(UPSERT_INPUT, (rid, *records.input_row(state)))


class SqliteInbox:
    """The inbox methods of ``SqliteRuntimeStore`` (a part of it, mixed in:
    it uses the store's ``_write``, ``_read`` and ``_guarded``)."""

    keeps_inbox = True

    if TYPE_CHECKING:  # the store's own
        writer: SqliteWriter

        async def _read(self, work: Work[T]) -> T: ...

        def _guarded(self, rid: str, work: Work[T]) -> Work[T]: ...

    async def submit_to_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        input: Input,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> AcceptOutcome:
        checked = inbox.checked_submission(input, max_input_bytes)
        if not isinstance(checked, Input):
            return checked
        rid, data = str(runtime_id), inbox.encode_entry(checked)
        return await self.writer.write(lambda conn: submit(conn, rid, checked, data))

    async def admit_from_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        taken: Sequence[InboxEntry],
    ) -> None:
        rid = str(runtime_id)
        phase = records.encode_phase(runtime_state)
        states = list(input_states)
        rows = inbox.taken_rows(taken)
        await self.writer.write(
            self._guarded(rid, lambda conn: admit(conn, rid, phase, states, rows))
        )

    async def load_inbox(
        self, runtime_id: LogicalRuntimeId, limit: int | None = None
    ) -> list[InboxEntry]:
        rid = str(runtime_id)
        sql = _ENTRY + " AND pending = 1 ORDER BY arrival LIMIT ?2"
        rows = await self._read(
            lambda conn: conn.execute(
                sql, (rid, -1 if limit is None else limit)
            ).fetchall()
        )
        return [inbox.decode_row(rid, row) for row in rows]

    async def load_whole_inbox(self, runtime_id: LogicalRuntimeId) -> list[InboxEntry]:
        rid = str(runtime_id)
        rows = await self._read(
            lambda conn: conn.execute(_ENTRY + " ORDER BY arrival", (rid,)).fetchall()
        )
        return [inbox.decode_row(rid, row) for row in rows]

    async def load_inbox_entry(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InboxEntry | None:
        rid, iid = str(runtime_id), str(input_id)
        row = await self._read(
            lambda conn: conn.execute(
                _ENTRY + " AND input_id = ?2", (rid, iid)
            ).fetchone()
        )
        return None if row is None else inbox.decode_row(rid, row)

    async def list_runtimes_with_inbox(self) -> list[LogicalRuntimeId]:
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT DISTINCT runtime_id FROM runtime_inbox WHERE pending = 1 "
                "ORDER BY runtime_id"
            ).fetchall()
        )
        return [LogicalRuntimeId(str(row[0])) for row in rows]
