"""``PostgresRuntimeStore``: the store many processes on many hosts share.

Theory of operation: the store is a few parts, and this module holds the
constructor and the contract methods.

* **Connections** come from a ``psycopg_pool.AsyncConnectionPool``: one the
  store makes from a DSN (and closes), or one the application already has
  (left open). The pool is opened, and the schema migrated, on first use, on
  the event loop that uses the store (``await PostgresRuntimeStore.open(...)``
  does it at once, so that a bad DSN fails there).
* **Schema** (``postgres_schema``): all tables in one PostgreSQL schema
  (``schema=``, default ``meerkat``), versioned, migrated forward under an
  advisory lock, a newer version refused.
* **Writes** (``postgres_writer``): each is one transaction, acknowledged
  after its ``COMMIT`` returned; concurrent input writes share one commit; a
  connection lost mid-commit is resolved by reading back, and the store
  reconnects by itself (waiting up to ``reconnect_timeout``).
* **Errors** (``postgres_boundary``): the only code that looks at psycopg's
  exceptions; connection loss, shutdown and serialization failures are
  ``Unavailable``, constraint violations ``Conflict`` (PD-51).
* **Integrity**: records are framed with a checksum and decoded strictly
  (``records``, PD-32). The second count at load is not done here (PD-54).
* **Arrival order** (PD-42, PD-56): each runtime's inputs load in the order
  their first writes committed, numbered by a per-runtime counter row that
  the write's own statement raises (``postgres_schema``).
* **Leases** (PD-36, PD-55): ``claim``/``renew``/``release`` are
  statements on ``runtime_leases`` with the database server's ``now()`` as
  the clock, so the processes sharing a database need not share a clock;
  every write of an owner (``store.fenced``) reads its lease ``FOR SHARE``
  in its own transaction before writing (``PostgresWriter.transact``; an
  acknowledgement does both in one statement, PD-57).
* **Inbox** (PD-58, ``postgres_inbox``): submissions from processes that
  do not own the runtime, admitted by its owner.

Cancellation: a write's transaction may be cut mid-way by a cancelled task,
so ``cancel_safe_writes`` is False: the drivers run each write in its own
task and wait it out.

"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Self, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from meerkat_runtime.codec import gc_paused
from meerkat_runtime.errors import RuntimeOwnedError
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import AnyInput
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store import leases, postgres_leases, records, work
from meerkat_runtime.store.base import (
    AppliesRunEnds,
    ConflictError,
    SessionDelta,
    StoreInternalError,
    as_store_error,
    mint_receipt,
    required_snapshot,
    snapshot_of,
    store_errors,
)
from meerkat_runtime.store.inbox import INBOX
from meerkat_runtime.store.postgres_inbox import PostgresInbox
from meerkat_runtime.store.postgres_schema import Statements, checked_schema
from meerkat_runtime.store.postgres_setup import migrate, open_pool
from meerkat_runtime.store.postgres_writer import (
    Conn,
    InputBatcher,
    PostgresWriter,
    Work,
)
from meerkat_runtime.store.sql_contract import RecordQueries, SqlRuntimeStore
from meerkat_runtime.store.sqlite_schema import decode_input_row

__all__ = ["PostgresRuntimeStore"]

T = TypeVar("T")


class PostgresRuntimeStore(PostgresInbox, AppliesRunEnds, SqlRuntimeStore):
    """A ``RuntimeStore`` in a PostgreSQL database (see the module notes)."""

    cancel_safe_writes = False
    lazy_payloads = True  # PD-64

    def __init__(
        self,
        dsn_or_pool: str | AsyncConnectionPool[Any],
        *,
        schema: str = "meerkat",
        lease_ttl: float = leases.DEFAULT_LEASE_TTL,
        pool_size: int = 8,
        reconnect_timeout: float = 30.0,
        commits_in_flight: int = 2,
    ) -> None:
        """Nothing is connected yet (see ``open``). ``commits_in_flight``:
        how many merged input commits may be in flight at once."""
        if not isinstance(dsn_or_pool, str | AsyncConnectionPool):
            raise TypeError(
                "PostgresRuntimeStore needs a DSN (str) or a psycopg_pool."
                f"AsyncConnectionPool, not {type(dsn_or_pool).__name__}"
            )
        if not isinstance(reconnect_timeout, int | float) or reconnect_timeout <= 0:
            raise ValueError(
                f"reconnect_timeout must be a positive number, not {reconnect_timeout!r}"
            )
        for name, count in (
            ("pool_size", pool_size),
            ("commits_in_flight", commits_in_flight),
        ):
            if type(count) is not int or count < 1:
                raise ValueError(f"{name} must be an int >= 1, not {count!r}")
        self.schema = checked_schema(schema)
        self.lease_ttl = leases.checked_ttl(lease_ttl)
        # Lease expiries are on the database server's clock (PD-55); a clock
        # set here replaces it (the conformance suite's fake clock).
        self.lease_clock: leases.Clock | None = None
        self.reconnect_timeout = float(reconnect_timeout)
        self.sql = Statements(self.schema)
        self._source = dsn_or_pool
        self._pool_size = pool_size
        self._commits_in_flight = commits_in_flight
        self._pool: AsyncConnectionPool[Any] | None = None
        self._writer: PostgresWriter | None = None
        self._batcher: InputBatcher | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, dsn_or_pool: str | AsyncConnectionPool[Any], **options: Any
    ) -> Self:
        """The store, connected and its schema migrated."""
        store = cls(dsn_or_pool, **options)
        await store._ready()
        return store

    @property
    def conninfo(self) -> str:
        """The connection string the store's connections use."""
        if isinstance(self._source, str):
            return self._source
        info = self._source.conninfo
        if not isinstance(info, str):
            raise TypeError("the pool's conninfo is not a string")
        return info

    async def _ready(self) -> PostgresWriter:
        if self._closed:
            raise StoreInternalError(
                f"the PostgreSQL store (schema {self.schema}) is closed"
            )
        if self._writer is not None:
            return self._writer
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._writer is None:
                own = isinstance(self._source, str)
                pool = (
                    await open_pool(
                        self.conninfo, self._pool_size, self.reconnect_timeout
                    )
                    if own
                    else self._source
                )
                assert isinstance(pool, AsyncConnectionPool)
                writer = PostgresWriter(pool, self.sql, self.reconnect_timeout)
                try:
                    await migrate(writer)
                except BaseException:
                    if own:
                        await pool.close()
                    raise
                self._pool = pool if own else None
                self._batcher = InputBatcher(writer, self._commits_in_flight)
                self._writer = writer
        return self._writer

    # ---------------------------------------------------------------- writes

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        try:  # not store_errors(): no context manager on every accept's path
            row = (str(runtime_id), *records.input_row(state))
        except Exception as exc:
            raise as_store_error(exc) from exc
        if self._batcher is None:
            await self._ready()
        assert self._batcher is not None
        await self._batcher.write(row, leases.fence_for(runtime_id))

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        with store_errors():
            params = (str(runtime_id), records.encode_phase(state))
        sql = self.sql.upsert_phase

        async def work(conn: Conn) -> None:
            await conn.execute(sql, params)

        await self._transact(work, "persist_runtime_state", runtime_id)

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        rid = str(runtime_id)
        with store_errors():  # every value encoded before anything is sent
            phase = records.encode_phase(runtime_state)
            inputs = _input_columns(rid, input_states)
        await self._phase_and_inputs(self.sql.upsert_phase, rid, phase, inputs)

    async def commit_recovery(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        changed: Sequence[InputState],
        recounted: Sequence[InputState],  # noqa: ARG002 - the epoch counts them
    ) -> None:
        """One more recovery epoch (counting every ``recounted`` input, see
        ``postgres_schema``), then the changed rows: one transaction."""
        rid = str(runtime_id)
        with store_errors():
            phase = records.encode_phase(runtime_state)
            inputs = _input_columns(rid, changed)
        await self._phase_and_inputs(self.sql.bump_epoch, rid, phase, inputs)

    async def _phase_and_inputs(
        self, phase_sql: str, rid: str, phase: bytes, inputs: _Columns
    ) -> None:
        sql = self.sql

        async def work(conn: Conn) -> None:
            await conn.execute(phase_sql, (rid, phase))
            if inputs[0]:  # after the phase: rows take its (new) epoch
                await conn.execute(sql.upsert_inputs, inputs)

        await self._transact(work, "lifecycle commit", rid)

    async def _apply(  # S-6, and with runtime_state also S-8 (PD-70)
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState | None,
        input_updates: Sequence[InputState],
    ) -> None:
        """A boundary, and with ``runtime_state`` also the run's end."""
        rid = str(runtime_id)
        with store_errors():  # a bad value fails before anything is sent
            encoded = records.encode_receipt(receipt)
            snapshot = snapshot_of(session_delta)
            inputs = _input_columns(rid, input_updates)
            phase = (
                None if runtime_state is None else records.encode_phase(runtime_state)
            )
        sql = self.sql
        key = {"r": rid, "run": str(receipt.run_id), "seq": receipt.sequence}

        async def work(conn: Conn) -> None:
            cur = await conn.execute(sql.insert_receipt_once, {**key, "data": encoded})
            inserted, stored = await cur.fetchone() or (0, None)
            if not inserted:
                _same_receipt(rid, receipt, stored, encoded)
            if snapshot is not None:
                await conn.execute(sql.upsert_snapshot, (rid, snapshot))
            if phase is not None:
                await conn.execute(sql.upsert_phase, (rid, phase))
            if inputs[0]:
                await conn.execute(sql.upsert_inputs, inputs)

        await self._transact(work, "atomic_apply", rid)

    async def commit_session_boundary(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta,
        run_id: RunId,
        boundary: RunApplyBoundary,
        contributing_input_ids: Sequence[InputId],
        input_updates: Sequence[InputState],
    ) -> RunBoundaryReceipt:
        rid = str(runtime_id)
        with store_errors():  # a bad value fails before anything is sent
            snapshot = required_snapshot(session_delta)
            updates = list(input_updates)
            _input_columns(rid, updates)
        ids = list(contributing_input_ids)
        sql = self.sql

        async def work(conn: Conn) -> RunBoundaryReceipt:
            cur = await conn.execute(sql.next_sequence, (rid, str(run_id)))
            row = await cur.fetchone()
            assert row is not None
            receipt = mint_receipt(run_id, boundary, ids, row[0], session_delta)
            stamped = [s.clone() for s in updates]  # again on every attempt
            for state in stamped:
                state.stamp_receipt_metadata(run_id, receipt.sequence)
            with store_errors():
                data = records.encode_receipt(receipt)
                inputs = _input_columns(rid, stamped)
            await conn.execute(
                sql.insert_receipt, (rid, str(run_id), receipt.sequence, data)
            )
            await conn.execute(sql.upsert_snapshot, (rid, snapshot))
            if inputs[0]:
                await conn.execute(sql.upsert_inputs, inputs)
            return receipt

        return await self._transact(work, "commit_session_boundary", rid)

    async def _transact(
        self, work: Work[T], context: str, runtime_id: object | None
    ) -> T:
        """``work`` as one transaction, fenced when the running write is an
        owner's write to ``runtime_id`` (``store.fenced``, PD-36); a lease
        write (``runtime_id`` None) is never fenced."""
        fence = None if runtime_id is None else leases.fence_for(runtime_id)
        writer = await self._ready()
        return await writer.transact(work, context, () if fence is None else [fence])

    # ---------------------------------------------------------------- ownership

    def _lease_now(self) -> float | None:
        return None if self.lease_clock is None else self.lease_clock()

    async def _claim_once(
        self, runtime_id: str, owner: str, ttl: float
    ) -> int | RuntimeOwnedError:
        work = postgres_leases.claim(
            self.sql, runtime_id, owner, ttl, self._lease_now()
        )
        return await self._transact(work, "claim", None)

    def _claim_clock(self) -> leases.Clock:
        return self.lease_clock or time.time  # only paces a waiting claim

    async def _renew_lost(
        self, owner: str, pairs: list[tuple[str, int]], ttl: float
    ) -> Collection[str]:
        work = postgres_leases.renew(self.sql, owner, pairs, ttl, self._lease_now())
        renewed = await self._transact(work, "renew", None)
        return {runtime_id for runtime_id, _ in pairs} - set(renewed)

    async def release(
        self, runtime_id: LogicalRuntimeId, owner: str, epoch: int
    ) -> None:
        work = postgres_leases.release(self.sql, str(runtime_id), owner, epoch)
        await self._transact(work, "release", None)

    async def load_leases(self) -> list[leases.Lease]:
        rows = await self._rows(self.sql.select_leases, (), "load_leases")
        return [leases.Lease(*row) for row in rows]

    # ---------------------------------------------------------------- reads

    @property
    def queries(self) -> RecordQueries:
        sql = self.sql
        return RecordQueries(
            sql.select_receipt,
            sql.select_receipts,
            sql.select_snapshot,
            sql.select_phase,
        )

    async def _rows(self, sql: str, params: Any, context: str) -> list[Any]:
        async def work(conn: Conn) -> list[Any]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return await (await self._ready()).read(work, context)

    async def _load_inputs(
        self,
        runtime_id: LogicalRuntimeId,
        decode: Callable[[str, str, object], InputState],
    ) -> list[InputState]:
        rid = str(runtime_id)
        rows = await self._rows(
            self.sql.select_inputs + self.sql.in_arrival_order,  # PD-42
            {"r": rid},
            "load_input_states",
        )
        with gc_paused():  # a bulk decode: see codec.gc_paused
            return [decode_input_row(rid, row, decode) for row in rows]

    async def load_payloads(
        self, runtime_id: LogicalRuntimeId, input_ids: Sequence[InputId]
    ) -> dict[InputId, AnyInput]:
        """One statement for the batch (PD-64)."""
        rid = str(runtime_id)
        rows = await self._rows(
            f"SELECT input_id, state_json FROM "
            f"{self.sql.table('runtime_input_states')} "
            "WHERE runtime_id = %(r)s AND input_id = ANY(%(i)s)",
            {"r": rid, "i": [str(i) for i in input_ids]},
            "load_payloads",
        )
        return records.payloads_found(rid, input_ids, rows)

    async def list_runtimes_with_work(
        self, *, unowned: bool = False
    ) -> list[LogicalRuntimeId]:
        sql = work.postgres_runtimes_with_work(
            self.sql.table("runtime_input_states"),
            self.sql.table("runtime_leases") if unowned else None,
        )
        params = {"now": self._lease_now()} if unowned else ()
        rows = await self._rows(sql, params, "list_runtimes_with_work")
        return [LogicalRuntimeId(rid) for (rid,) in rows]

    async def load_input_state(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InputState | None:
        rid = str(runtime_id)
        rows = await self._rows(
            f"{self.sql.select_inputs} AND input_id = %(i)s",
            {"r": rid, "i": str(input_id)},
            "load_input_state",
        )
        return decode_input_row(rid, rows[0]) if rows else None

    # ---------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Answer every queued write, remove this store's commit marks and
        close the pool it made (an application's pool stays open). Safe to
        call again."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if self._batcher is not None:
            await self._batcher.drain()
        try:
            await writer.forget_marks()
        finally:
            if self._pool is not None:
                await self._pool.close()

    # ---------------------------------------------------------------- testing

    @property
    def commits(self) -> int:
        """Write transactions this store committed so far."""
        return 0 if self._writer is None else self._writer.commits

    @property
    def recoveries(self) -> dict[str, int]:
        """What lost connections cost so far, by kind (writes and reads tried
        again, commits read back); empty before the store is opened."""
        return {} if self._writer is None else dict(self._writer.recoveries)

    def raw_rows(self, table: str, runtime_id: LogicalRuntimeId) -> dict[str, bytes]:
        """Stored bytes by record id, read on a new connection (tests)."""
        query = _RAW[table].format(t=self.sql.table(table))
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass(%s)", (self.sql.table(table),))
            if found.fetchone() == (None,):  # the store was never opened
                return {}
            return {
                str(k): bytes(v) for k, v in conn.execute(query, (str(runtime_id),))
            }

    def corrupt_row(
        self, table: str, runtime_id: LogicalRuntimeId, record_id: str, data: bytes
    ) -> None:
        """Overwrite one stored row with arbitrary bytes (corruption tests)."""
        rid = str(runtime_id)
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            if table == records.INPUTS:  # the row keeps its epoch and arrival
                t = self.sql.table(table)
                conn.execute(
                    f"INSERT INTO {t} (runtime_id, input_id, state_json, arrival) "
                    "VALUES (%(r)s, %(i)s, %(d)s, (SELECT COALESCE(max(arrival), 0) "
                    f"+ 1 FROM {t} WHERE runtime_id = %(r)s)) "
                    "ON CONFLICT (runtime_id, input_id) "
                    "DO UPDATE SET state_json = excluded.state_json",
                    {"r": rid, "i": record_id, "d": data},
                )
            elif table == records.STATES:
                conn.execute(self.sql.upsert_phase, (rid, data))
            elif table == INBOX:
                conn.execute(
                    f"UPDATE {self.sql.table(table)} SET entry_json = %s "
                    "WHERE runtime_id = %s AND input_id = %s",
                    (data, rid, record_id),
                )
            else:
                run, seq = record_id.rsplit("/", 1)
                conn.execute(
                    f"UPDATE {self.sql.table(table)} SET receipt_json = %s "
                    "WHERE runtime_id = %s AND run_id = %s AND sequence = %s",
                    (data, rid, run, int(seq)),
                )


_RAW = {
    records.INPUTS: "SELECT input_id, state_json FROM {t} WHERE runtime_id = %s",
    records.RECEIPTS: "SELECT run_id || '/' || sequence, receipt_json FROM {t} WHERE runtime_id = %s",
    records.STATES: "SELECT runtime_id, runtime_state_json FROM {t} WHERE runtime_id = %s",
    records.SNAPSHOTS: "SELECT runtime_id, session_snapshot FROM {t} WHERE runtime_id = %s",
    INBOX: "SELECT input_id, entry_json FROM {t} WHERE runtime_id = %s",
}

_Columns = tuple[list[str], list[str], list[bytes]]


def _input_columns(rid: str, states: Sequence[InputState]) -> _Columns:
    """Input rows as the three arrays of ``upsert_inputs``; of two states of
    one input the later wins, as it would written one after the other."""
    latest = dict(records.input_row(state) for state in states)
    return [rid] * len(latest), list(latest), list(latest.values())


def _same_receipt(
    rid: str, receipt: RunBoundaryReceipt, stored: object, encoded: bytes
) -> None:
    """Decision 16: an identical stored receipt is a no-op; a different one,
    or one written concurrently and not yet visible, conflicts."""
    if stored is not None and records.same_receipt(rid, stored, encoded):
        return
    raise ConflictError(
        f"receipt conflict: runtime {rid!r} run {receipt.run_id} sequence "
        f"{receipt.sequence} already has a different receipt"
    )
