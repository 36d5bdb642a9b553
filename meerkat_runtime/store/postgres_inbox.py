"""The PostgreSQL store's inbox (PD-58): its statements and contract methods.

A submission is one transaction that first takes a transaction-level
advisory lock keyed by the schema and the runtime: submissions to one
runtime, from any process on any host, run one after the other, so the
duplicate checks and the insert of one see every submission committed
before it (of two submitters of one idempotency key, exactly one stores
it) and the ``max(arrival) + 1`` it numbers its entry with is not handed
out twice. An owner's admission takes no such lock: it only removes or
settles entries, in the transaction that writes their states, and a
submission reads the inbox before the ledger, so a statement that no
longer sees an entry is followed by one that sees its state.

A submission with an idempotency key finds the ledger's records that
contain the key's JSON form (``position`` on the raw bytes) and decodes
only those (PD-59).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input
from meerkat_runtime.outcomes import AcceptOutcome, Deduplicated, Submitted
from meerkat_runtime.store import inbox, records
from meerkat_runtime.store.base import ConflictError, store_errors
from meerkat_runtime.store.inbox import INBOX, InboxEntry
from meerkat_runtime.store.sqlite_schema import decode_input_row

if TYPE_CHECKING:
    from meerkat_runtime.store.postgres_schema import Statements
    from meerkat_runtime.store.postgres_writer import Conn, Work

T = TypeVar("T")


def migration(s: str) -> tuple[str, ...]:
    """Schema version 3: the inbox table and its indexes."""
    return (
        f"""CREATE TABLE "{s}".{INBOX} (
            runtime_id text NOT NULL, input_id text NOT NULL,
            arrival bigint NOT NULL, idempotency_key text,
            pending boolean NOT NULL, entry_json bytea NOT NULL,
            PRIMARY KEY (runtime_id, input_id))""",
        f'CREATE UNIQUE INDEX runtime_inbox_arrival ON "{s}".{INBOX} (runtime_id, arrival)',
        f'CREATE INDEX runtime_inbox_key ON "{s}".{INBOX} (runtime_id, idempotency_key) '
        "WHERE idempotency_key IS NOT NULL",
        f'CREATE INDEX runtime_inbox_pending ON "{s}".{INBOX} (runtime_id) WHERE pending',
    )


def _entries(sql: Statements) -> str:
    return (
        "SELECT input_id, arrival, entry_json, idempotency_key, pending "
        f"FROM {sql.table(INBOX)} "
        "WHERE runtime_id = %(r)s"
    )


async def _duplicate(
    conn: Conn, sql: Statements, rid: str, inp: Input
) -> AcceptOutcome | None:
    """PD-59: the inbox first, then the ledger (see the module notes)."""
    iid, key = str(inp.id()), inbox.key_of(inp)
    params = {"r": rid, "i": iid, "k": key}
    cur = await conn.execute(
        _entries(sql) + " AND (input_id = %(i)s OR idempotency_key = %(k)s) "
        "ORDER BY arrival",
        params,
    )
    for row in await cur.fetchall():
        found = inbox.duplicate_of(inp, inbox.decode_row(rid, row))
        if found is not None:
            return found
    inputs = sql.table("runtime_input_states")
    cur = await conn.execute(
        f"SELECT 1 FROM {inputs} WHERE runtime_id = %(r)s AND input_id = %(i)s", params
    )
    if await cur.fetchone() is not None:
        return Deduplicated(input_id=inp.id(), existing_id=inp.id())
    if key is None:
        return None
    cur = await conn.execute(
        sql.select_inputs + " AND position(%(p)s::bytea IN state_json) > 0"
        " ORDER BY arrival",
        {"r": rid, "p": inbox.key_pattern(key)},
    )
    states = [decode_input_row(rid, row) for row in await cur.fetchall()]
    existing = inbox.ledger_key_match(states, key)
    return (
        None
        if existing is None
        else Deduplicated(input_id=inp.id(), existing_id=existing)
    )


def _submit(sql: Statements, rid: str, inp: Input, data: bytes) -> Work[AcceptOutcome]:
    async def work(conn: Conn) -> AcceptOutcome:
        await conn.execute(sql.lock, (f"meerkat-runtime inbox {sql.schema} {rid}",))
        row = await (await conn.execute(sql.select_phase, (rid,))).fetchone()
        phase = None if row is None else records.decode_phase(rid, row[0])
        refused = inbox.refused_in(phase)
        if refused is not None:
            return refused
        found = await _duplicate(conn, sql, rid, inp)
        if found is not None:
            return found
        t = sql.table(INBOX)
        await conn.execute(
            f"INSERT INTO {t} VALUES (%(r)s, %(i)s, (SELECT COALESCE(max(arrival), 0) "
            f"+ 1 FROM {t} WHERE runtime_id = %(r)s), %(k)s, true, %(d)s)",
            {"r": rid, "i": str(inp.id()), "k": inbox.key_of(inp), "d": data},
        )
        return Submitted(input_id=inp.id())

    return work


def _admit(
    sql: Statements,
    rid: str,
    phase: bytes,
    inputs: tuple[list[str], list[str], list[bytes]],
    taken: Sequence[tuple[str, bytes | None]],
) -> Work[None]:
    t = sql.table(INBOX)

    async def work(conn: Conn) -> None:
        for iid, settled in taken:
            cur = await (
                conn.execute(
                    f"DELETE FROM {t} WHERE runtime_id = %s AND input_id = %s "
                    "AND pending RETURNING 1",
                    (rid, iid),
                )
                if settled is None
                else conn.execute(
                    f"UPDATE {t} SET pending = false, entry_json = %s "
                    "WHERE runtime_id = %s AND input_id = %s AND pending RETURNING 1",
                    (settled, rid, iid),
                )
            )
            # Fetched, not ``rowcount``: the writer runs in pipeline mode.
            if await cur.fetchone() is None:
                raise ConflictError(
                    f"inbox entry {iid!r} of runtime {rid!r} is no longer pending"
                )
        await conn.execute(sql.upsert_phase, (rid, phase))
        if inputs[0]:
            await conn.execute(sql.upsert_inputs, inputs)

    return work


class PostgresInbox:
    """The inbox methods of ``PostgresRuntimeStore`` (a part of it, mixed
    in: it uses the store's ``sql``, ``_transact`` and ``_rows``)."""

    keeps_inbox = True

    if TYPE_CHECKING:  # the store's own
        sql: Statements

        async def _transact(
            self, work: Work[T], context: str, runtime_id: object | None
        ) -> T: ...

        async def _rows(self, sql: str, params: Any, context: str) -> list[Any]: ...

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
        # A submission is nobody's write: never fenced (runtime_id None).
        return await self._transact(
            _submit(self.sql, rid, checked, data), "submit_to_inbox", None
        )

    async def admit_from_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        taken: Sequence[InboxEntry],
    ) -> None:
        rid = str(runtime_id)
        with store_errors():  # every value encoded before anything is sent
            phase = records.encode_phase(runtime_state)
            latest = dict(records.input_row(state) for state in input_states)
            rows = inbox.taken_rows(taken)
        inputs = ([rid] * len(latest), list(latest), list(latest.values()))
        await self._transact(
            _admit(self.sql, rid, phase, inputs, rows), "admit_from_inbox", rid
        )

    async def load_inbox(
        self, runtime_id: LogicalRuntimeId, limit: int | None = None
    ) -> list[InboxEntry]:
        rid = str(runtime_id)
        rows = await self._rows(
            _entries(self.sql) + " AND pending ORDER BY arrival LIMIT %(n)s",
            {"r": rid, "n": limit},
            "load_inbox",
        )
        return [inbox.decode_row(rid, row) for row in rows]

    async def load_whole_inbox(self, runtime_id: LogicalRuntimeId) -> list[InboxEntry]:
        rid = str(runtime_id)
        rows = await self._rows(
            _entries(self.sql) + " ORDER BY arrival", {"r": rid}, "load_whole_inbox"
        )
        return [inbox.decode_row(rid, row) for row in rows]

    async def load_inbox_entry(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InboxEntry | None:
        rid, iid = str(runtime_id), str(input_id)
        rows = await self._rows(
            _entries(self.sql) + " AND input_id = %(i)s",
            {"r": rid, "i": iid},
            "load_inbox_entry",
        )
        return inbox.decode_row(rid, rows[0]) if rows else None

    async def list_runtimes_with_inbox(self) -> list[LogicalRuntimeId]:
        rows = await self._rows(
            f"SELECT DISTINCT runtime_id FROM {self.sql.table(INBOX)} WHERE pending "
            "ORDER BY runtime_id",
            (),
            "list_runtimes_with_inbox",
        )
        return [LogicalRuntimeId(row[0]) for row in rows]
