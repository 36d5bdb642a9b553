"""``SqliteRuntimeStore``: the embedded durable store, on the standard sqlite3.

Theory of operation: the store is a few parts, and this module holds the
constructor and the contract methods.

* The **writer** (``sqlite_writer``) owns the only write connection: group
  commit in a writer thread (an event loop's requests of one turn handed
  over together), an inline path for a lone caller. No caller is
  acknowledged before its data is durable.
* The **readers** (``sqlite_reader``) read in worker threads on their own
  connections (WAL: they never block the writer), and stream bulk reads.
* The **transaction boundary** (``sqlite_boundary``) is the only code that
  looks at ``sqlite3`` errors; they become ``RuntimeStoreError``
  (``Unavailable`` when the file is locked elsewhere, full, or failing;
  ``Corrupt`` when it is damaged; PD-30).
* **Integrity** (``records``, ``integrity``): every record is written with
  a checksum and decoded strictly, and a load counts the runtime's rows
  again by a scan of the table (PD-32, PD-33).
* **Opening** (``sqlite_setup``): the schema is versioned
  (``PRAGMA user_version``); older files are migrated forward, a newer file
  is refused. ``SqliteRuntimeStore(path)`` opens on the calling thread and,
  on an event loop's thread, never sleeps: a file another connection is
  setting up is ``Unavailable`` at once. ``await SqliteRuntimeStore.open(path)``
  opens in a worker thread and waits such a lock out (PD-31).
* ``synchronous=FULL`` (the default) flushes the WAL on every commit: an
  acknowledged write survives power loss. ``NORMAL`` is faster and survives a
  process crash but may lose the last commits on power loss; ``OFF`` is for
  throwaway data only.
* **Recovery counts** (decision 18) are kept per runtime, not per row (see
  ``sqlite_schema``), so a restart with 100k pending inputs writes one row.

Several processes may open the same file: SQLite's locks keep it consistent
(the writer thread waits out another process's write lock for up to
``BUSY_TIMEOUT_MS``; an inline commit hands its write to the thread instead,
PD-17), and leases (PD-36, ``sqlite_leases``) keep each runtime to one owner:
a ``fenced`` view's writes read the lease's epoch in their own transaction.
Processes that do not own a runtime submit to its inbox (PD-58,
``sqlite_inbox``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from meerkat_runtime.codec import gc_paused
from meerkat_runtime.errors import RuntimeOwnedError
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import AnyInput
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store import leases, records, sqlite_leases, work
from meerkat_runtime.store.base import (
    AppliesRunEnds,
    SessionDelta,
    as_store_error,
    mint_receipt,
    required_snapshot,
    snapshot_of,
    store_errors,
)
from meerkat_runtime.store.inbox import INBOX
from meerkat_runtime.store.integrity import check_input_count
from meerkat_runtime.store.sql_contract import RecordQueries, SqlRuntimeStore
from meerkat_runtime.store.sqlite_boundary import closed_error
from meerkat_runtime.store.sqlite_inbox import SqliteInbox
from meerkat_runtime.store.sqlite_reader import SqliteReaders
from meerkat_runtime.store.sqlite_schema import (
    BUMP_EPOCH,
    IN_ARRIVAL_ORDER,
    SELECT_INPUTS,
    SELECT_PAYLOADS,
    UPSERT_INPUT,
    UPSERT_PHASE,
    UPSERT_SNAPSHOT,
    decode_input_row,
    receipt_exists,
)
from meerkat_runtime.store.sqlite_setup import (
    BUSY_TIMEOUT_MS,
    Synchronous,
    checked_path,
    connect,
    on_event_loop_thread,
    prepare,
)
from meerkat_runtime.store.sqlite_writer import SqliteWriter

T = TypeVar("T")

# Readers map the file instead of copying pages through read() (see
# sqlite_reader). Writes never use the map.
READ_MMAP_BYTES = 1 << 30

_memory_names = itertools.count()

_QUERIES = RecordQueries(
    receipt="SELECT receipt_json FROM runtime_boundary_receipts "
    "WHERE runtime_id = ? AND run_id = ? AND sequence = ?",
    # Receipt rows are never deleted, so rowid order is the order they were
    # committed in.
    receipts="SELECT run_id, sequence, receipt_json FROM runtime_boundary_receipts "
    "WHERE runtime_id = ? ORDER BY rowid",
    snapshot="SELECT session_snapshot FROM runtime_session_snapshots WHERE runtime_id = ?",
    phase="SELECT runtime_state_json FROM runtime_states WHERE runtime_id = ?",
)


class SqliteRuntimeStore(SqliteInbox, AppliesRunEnds, SqlRuntimeStore):
    """A ``RuntimeStore`` in one SQLite file (``":memory:"`` for a private one).

    ``writer`` and ``readers`` are its parts; their ``hooks`` and the
    methods under "testing" are seams for tests, never needed otherwise.
    """

    # A cancelled write either never started (the inline path's one yield
    # comes before any SQL) or waits out the writer thread.
    cancel_safe_writes = True
    lazy_payloads = True  # PD-64

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        read_mmap_bytes: int = READ_MMAP_BYTES,
        lease_ttl: float = leases.DEFAULT_LEASE_TTL,
    ) -> None:
        """Open (creating or migrating) the file on this thread. On an event
        loop's thread it never sleeps: a file another connection is setting
        up is ``RuntimeStoreError.Unavailable`` at once (``open`` waits)."""
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(
                f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}"
            )
        if type(read_mmap_bytes) is not int or read_mmap_bytes < 0:
            raise ValueError(
                f"read_mmap_bytes must be an int >= 0, not {read_mmap_bytes!r}"
            )
        self.lease_ttl = leases.checked_ttl(lease_ttl)
        # Wall clock of lease expiries (PD-37); a seam for tests.
        self.lease_clock: leases.Clock = time.time
        self.path = checked_path(path)
        self.synchronous = synchronous
        self.read_mmap_bytes = read_mmap_bytes
        self._memory = self.path == ":memory:"
        # A named shared-cache database for ":memory:", so reader and writer
        # connections of this store see the same data (and no other does).
        self._target = (
            f"file:meerkat-{id(self)}-{next(_memory_names)}?mode=memory&cache=shared"
            if self._memory
            else self.path
        )
        wait = not on_event_loop_thread()
        conn = self._connect(BUSY_TIMEOUT_MS if wait else 0)
        try:
            prepare(conn, self.path, wal=not self._memory, wait=wait)
            # From here the write connection never waits inside SQLite: the
            # writer thread waits at BEGIN, and an inline commit must not
            # wait at all.
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        self.readers = SqliteReaders(
            lambda: self._connect(BUSY_TIMEOUT_MS), self.path, read_mmap_bytes
        )
        self.writer = SqliteWriter(conn, self.path)
        # Every write goes through the writer (bound once: no extra frame on
        # the path of every acknowledgement).
        self._write = self.writer.write

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        read_mmap_bytes: int = READ_MMAP_BYTES,
        lease_ttl: float = leases.DEFAULT_LEASE_TTL,
    ) -> Self:
        """The store, opened in a worker thread: the event loop goes on
        meanwhile, and a file another process is setting up is waited for
        (up to the busy timeout) instead of refused."""
        return await asyncio.to_thread(
            cls,
            path,
            synchronous=synchronous,
            read_mmap_bytes=read_mmap_bytes,
            lease_ttl=lease_ttl,
        )

    def _connect(self, busy_ms: int) -> sqlite3.Connection:
        return connect(
            self._target,
            uri=self._memory,
            path=self.path,
            synchronous=self.synchronous,
            busy_ms=busy_ms,
        )

    # ---------------------------------------------------------------- access

    async def _read(
        self, work: Callable[[sqlite3.Connection], T], *, scan: bool = False
    ) -> T:
        if self.writer.closed:
            raise closed_error(self.path)
        if self._memory:
            # A shared-cache memory database locks whole tables and fails at
            # once instead of waiting; reading through the writer serialises.
            return await self.writer.write(work, commits=False)
        return await self.readers.read(work, scan=scan)

    async def _read_chunks(
        self, sql: str, params: tuple[Any, ...], consume: Callable[[list[Any]], None]
    ) -> None:
        if self.writer.closed:
            raise closed_error(self.path)
        if self._memory:
            consume(await self._read(lambda conn: conn.execute(sql, params).fetchall()))
            return
        await self.readers.read_chunks(sql, params, consume)

    # ---------------------------------------------------------------- contract

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        # Encoded here, so the writer thread may merge the row with others.
        try:  # not store_errors(): no context manager on every accept's path
            row = (str(runtime_id), *records.input_row(state))
        except Exception as exc:  # as the writer would report it
            raise as_store_error(exc) from exc

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(UPSERT_INPUT, row)

        fence = leases.fence_for(row[0])
        if fence is None:
            await self._write(work, row=row)
        else:
            await self._write(self._fenced(fence, work), row=row, fence=fence)

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        rid = str(runtime_id)
        await self._write(
            self._guarded(
                rid,
                lambda conn: conn.execute(
                    UPSERT_PHASE, (rid, records.encode_phase(state))
                ),
            )
        )

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        rid = str(runtime_id)
        states = list(input_states)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(UPSERT_PHASE, (rid, records.encode_phase(runtime_state)))
            for state in states:  # encoded row by row: a failure rolls back all
                conn.execute(
                    UPSERT_INPUT,
                    (rid, *records.input_row(state)),
                )

        await self._write(self._guarded(rid, work))

    async def commit_recovery(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        changed: Sequence[InputState],
        recounted: Sequence[InputState],  # noqa: ARG002 - the epoch counts them
    ) -> None:
        """One more recovery epoch for the runtime (which counts every
        ``recounted`` input, see the module notes), then the changed rows,
        stamped with the new epoch: all in one transaction."""
        rid = str(runtime_id)
        states = list(changed)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(BUMP_EPOCH, (rid, records.encode_phase(runtime_state)))
            for state in states:
                conn.execute(
                    UPSERT_INPUT,
                    (rid, *records.input_row(state)),
                )

        await self._write(self._guarded(rid, work))

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
        states = list(input_updates)
        with store_errors():  # a bad value fails before anything is queued
            encoded = records.encode_receipt(receipt)
            snapshot = snapshot_of(session_delta)
            phase = (
                None if runtime_state is None else records.encode_phase(runtime_state)
            )

        def work(conn: sqlite3.Connection) -> None:
            if not receipt_exists(
                conn, rid, receipt, encoded
            ):  # a different one raises
                conn.execute(
                    "INSERT INTO runtime_boundary_receipts VALUES (?, ?, ?, ?)",
                    (rid, str(receipt.run_id), receipt.sequence, encoded),
                )
            if snapshot is not None:
                conn.execute(UPSERT_SNAPSHOT, (rid, snapshot))
            if phase is not None:
                conn.execute(UPSERT_PHASE, (rid, phase))
            for state in states:
                conn.execute(
                    UPSERT_INPUT,
                    (rid, *records.input_row(state)),
                )

        await self._write(self._guarded(rid, work))

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
        with store_errors():  # a bad value fails before anything is queued
            snapshot = required_snapshot(session_delta)
            stamped = [s.clone() for s in input_updates]
        ids = list(contributing_input_ids)

        def work(conn: sqlite3.Connection) -> RunBoundaryReceipt:
            row = conn.execute(
                "SELECT COALESCE(MAX(sequence), -1) + 1 FROM runtime_boundary_receipts "
                "WHERE runtime_id = ? AND run_id = ?",
                (rid, str(run_id)),
            ).fetchone()
            receipt = mint_receipt(run_id, boundary, ids, row[0], session_delta)
            conn.execute(
                "INSERT INTO runtime_boundary_receipts VALUES (?, ?, ?, ?)",
                (rid, str(run_id), receipt.sequence, records.encode_receipt(receipt)),
            )
            conn.execute(UPSERT_SNAPSHOT, (rid, snapshot))
            for state in stamped:
                state.stamp_receipt_metadata(run_id, receipt.sequence)
                conn.execute(
                    UPSERT_INPUT,
                    (rid, *records.input_row(state)),
                )
            return receipt

        return await self._write(self._guarded(rid, work))

    # ---------------------------------------------------------------- ownership

    def _guarded(
        self, rid: str, work: Callable[[sqlite3.Connection], T]
    ) -> Callable[[sqlite3.Connection], T]:
        """``work``, after the fence check when the running write is an
        owner's write to ``rid`` (``FencedStore``)."""
        fence = leases.fence_for(rid)
        return work if fence is None else self._fenced(fence, work)

    @staticmethod
    def _fenced(
        fence: tuple[str, int], work: Callable[[sqlite3.Connection], T]
    ) -> Callable[[sqlite3.Connection], T]:
        def checked(conn: sqlite3.Connection) -> T:
            sqlite_leases.fence(conn, *fence)
            return work(conn)

        return checked

    async def _claim_once(
        self, runtime_id: str, owner: str, ttl: float
    ) -> int | RuntimeOwnedError:
        # The clock is read inside the transaction: no other claim can
        # commit between that reading and this one's write.
        return await self._write(
            lambda conn: sqlite_leases.claim(
                conn, runtime_id, owner, ttl, self.lease_clock()
            )
        )

    def _claim_clock(self) -> leases.Clock:
        return self.lease_clock

    async def _renew_lost(
        self, owner: str, pairs: list[tuple[str, int]], ttl: float
    ) -> Collection[str]:
        return await self._write(
            lambda conn: sqlite_leases.renew(
                conn, owner, pairs, self.lease_clock() + ttl
            )
        )

    async def release(
        self, runtime_id: LogicalRuntimeId, owner: str, epoch: int
    ) -> None:
        rid = str(runtime_id)
        await self._write(lambda conn: sqlite_leases.release(conn, rid, owner, epoch))

    async def load_leases(self) -> list[leases.Lease]:
        return await self._read(sqlite_leases.all_leases)

    # ---------------------------------------------------------------- reads

    async def _load_inputs(
        self,
        runtime_id: LogicalRuntimeId,
        decode: Callable[[str, str, object], InputState],
    ) -> list[InputState]:
        rid = str(runtime_id)
        query = (SELECT_INPUTS + IN_ARRIVAL_ORDER, (rid,))  # PD-42
        states: list[InputState] = []

        def decode_rows(rows: list[Any]) -> None:
            states.extend([decode_input_row(rid, row, decode) for row in rows])

        with gc_paused():  # a bulk decode: see codec.gc_paused
            await self._read_chunks(*query, decode_rows)
        # A damaged index can hide rows: count them again by the table.
        ids = [str(state.input_id) for state in states]
        await self._read(lambda c: check_input_count(c, rid, ids), scan=True)
        return states

    async def list_runtimes_with_work(
        self, *, unowned: bool = False
    ) -> list[LogicalRuntimeId]:
        query, params = (
            (work.SQLITE_UNOWNED_RUNTIMES_WITH_WORK, (self.lease_clock(),))
            if unowned
            else (work.SQLITE_RUNTIMES_WITH_WORK, ())
        )
        rows = await self._read(lambda conn: conn.execute(query, params).fetchall())
        return [LogicalRuntimeId(rid) for (rid,) in rows]

    async def load_payloads(
        self, runtime_id: LogicalRuntimeId, input_ids: Sequence[InputId]
    ) -> dict[InputId, AnyInput]:
        rid = str(runtime_id)
        wanted = json.dumps([str(i) for i in input_ids])
        rows = await self._read(
            lambda conn: conn.execute(SELECT_PAYLOADS, (rid, wanted)).fetchall()
        )
        return records.payloads_found(rid, input_ids, rows)

    async def load_input_state(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InputState | None:
        rid, iid = str(runtime_id), str(input_id)
        row = await self._read(
            lambda conn: conn.execute(
                f"{SELECT_INPUTS} AND input_id = ?2", (rid, iid)
            ).fetchone()
        )
        return None if row is None else decode_input_row(rid, row)

    @property
    def queries(self) -> RecordQueries:
        return _QUERIES

    async def _rows(
        self,
        sql: str,
        params: tuple[Any, ...],
        context: str,  # noqa: ARG002 - errors name the file
    ) -> list[Any]:
        return await self._read(lambda conn: conn.execute(sql, params).fetchall())

    # ---------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Stop the writer (every queued write answered) and close every
        connection. Safe to call again, also after a cancelled call: each
        call finishes whatever an earlier one left undone."""
        self.writer.stop()
        self.readers.closed = True
        await asyncio.to_thread(self.writer.join)
        await asyncio.to_thread(self.readers.close)

    # ---------------------------------------------------------------- testing

    def writer_setting(self, pragma: str) -> Any:
        """A PRAGMA's value on the write connection (for tests)."""
        with self.writer.paused():
            return self.writer.conn.execute(f"PRAGMA {pragma}").fetchone()[0]

    def raw_rows(self, table: str, runtime_id: LogicalRuntimeId) -> dict[str, bytes]:
        """Stored bytes by record id, read on a fresh connection (tests)."""
        queries = {
            records.INPUTS: "SELECT input_id, state_json FROM runtime_input_states WHERE runtime_id = ?",
            records.RECEIPTS: "SELECT run_id || '/' || sequence, receipt_json FROM runtime_boundary_receipts WHERE runtime_id = ?",
            records.STATES: "SELECT runtime_id, runtime_state_json FROM runtime_states WHERE runtime_id = ?",
            records.SNAPSHOTS: "SELECT runtime_id, session_snapshot FROM runtime_session_snapshots WHERE runtime_id = ?",
            INBOX: "SELECT input_id, entry_json FROM runtime_inbox WHERE runtime_id = ?",
        }
        conn = self._connect(BUSY_TIMEOUT_MS)
        try:
            return {
                str(k): bytes(v)
                for k, v in conn.execute(queries[table], (str(runtime_id),))
            }
        finally:
            conn.close()

    def corrupt_row(
        self, table: str, runtime_id: LogicalRuntimeId, record_id: str, data: bytes
    ) -> None:
        """Overwrite one stored row with arbitrary bytes (corruption tests)."""
        conn = self._connect(BUSY_TIMEOUT_MS)
        try:
            rid = str(runtime_id)
            if table == records.INPUTS:  # the row keeps its recovery epoch
                conn.execute(
                    "INSERT INTO runtime_input_states "
                    "(runtime_id, input_id, state_json, arrival) VALUES (?1, ?2, ?3, "
                    "(SELECT COALESCE(MAX(arrival), 0) + 1 FROM runtime_input_states "
                    "WHERE runtime_id = ?1)) ON CONFLICT (runtime_id, input_id) "
                    "DO UPDATE SET state_json = excluded.state_json",
                    (rid, record_id, data),
                )
            elif table == records.STATES:
                conn.execute(UPSERT_PHASE, (rid, data))
            elif table == INBOX:
                conn.execute(
                    "UPDATE runtime_inbox SET entry_json = ? "
                    "WHERE runtime_id = ? AND input_id = ?",
                    (data, rid, record_id),
                )
            else:
                run, seq = record_id.rsplit("/", 1)
                conn.execute(
                    "UPDATE runtime_boundary_receipts SET receipt_json = ? "
                    "WHERE runtime_id = ? AND run_id = ? AND sequence = ?",
                    (data, rid, run, int(seq)),
                )
        finally:
            conn.close()
