"""How the PostgreSQL store talks to the server: transactions that survive a
lost connection, reads that wait for the server to come back, and group
commit of input writes.

**One transaction per write, in one round trip.** ``transact`` runs the
write's statements inside ``BEGIN`` ... ``COMMIT`` in pipeline mode, so a
write that reads nothing costs one round trip and one WAL flush; the caller
is answered only after ``COMMIT`` returned.

**Fencing (PD-36, PD-55).** A write of an owner (``fences``: the
(runtime, epoch) pairs it writes under) first reads those leases' epochs
``FOR SHARE`` inside its transaction and is refused whole (``Fenced``,
rolled back) when one moved on. That read is the one extra round trip an
owner's write costs.

**A lost connection is resolved, not guessed (PD-52).** Every write
transaction also stamps its connection's row in ``commit_marks`` with a new
ticket. When the connection breaks, nobody knows whether the server
committed; the writer then reads the row on another connection (``FOR
UPDATE``, which waits for a server still finishing that commit): the ticket
there says committed (the caller is answered with success) or not (nothing
was written, and the writer tries again on a new connection). It keeps
trying, across a server restart, for ``reconnect_timeout`` seconds; then a
write that certainly did not commit is ``Unavailable``, and one whose outcome
could not be learned is ``Internal`` ("in doubt"), never a guess.

**Group commit (PD-53).** ``InputBatcher`` merges concurrent
``persist_input_state`` calls (the acknowledgement path) into one statement
of one transaction: while a commit is in flight, new rows wait and go
together in the next. Each caller is answered when that transaction's
``COMMIT`` returned. If a merged commit fails for a reason other than the
server being unavailable, each row is tried alone, so one caller's failure
is never another's.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from meerkat_runtime.store.base import (
    ReadFailedError,
    StoreInternalError,
    UnavailableError,
    WriteFailedError,
)
from meerkat_runtime.store.leases import check_fence
from meerkat_runtime.store.postgres_boundary import is_unavailable, lost, store_error
from meerkat_runtime.store.postgres_schema import Statements
from meerkat_runtime.telemetry import store_commit

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
Work = Callable[[Conn], Awaitable[T]]
InputRow = tuple[str, str, bytes]  # (runtime id, input id, record)
Fence = tuple[str, int]  # (runtime id, epoch) of the owner writing

_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 1.0


class _NotCommittedError(Exception):
    """A write that certainly did not commit, on a connection that broke."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Mark:
    """A connection's row in ``commit_marks``."""

    writer: uuid.UUID = field(default_factory=uuid.uuid4)
    ticket: int = 0


class PostgresWriter:
    """Transactions and reads on a pool (see the module notes)."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], sql: Statements, reconnect_timeout: float
    ) -> None:
        self.pool = pool
        self.sql = sql
        self.reconnect_timeout = reconnect_timeout
        self._marks: weakref.WeakKeyDictionary[Conn, _Mark] = (
            weakref.WeakKeyDictionary()
        )
        self.writers: list[uuid.UUID] = []  # every mark row made (removed at close)
        # What a lost connection cost, by kind (tests and benchmarks read it).
        self.recoveries: Counter[str] = Counter()
        self.commits = 0  # transactions committed (group commit's measure)

    # ---------------------------------------------------------------- writes

    async def transact(
        self, work: Work[T], context: str = "write", fences: Sequence[Fence] = ()
    ) -> T:
        """``work`` in one transaction, committed once, after the check of
        ``fences``; see the module notes."""
        deadline = _now() + self.reconnect_timeout
        pause = _FIRST_PAUSE
        if fences:
            work = self._fenced(work, fences)
        while True:
            try:
                return await self._transact_once(work, deadline)
            except _NotCommittedError as failed:
                self.recoveries["writes tried again"] += 1
                if _now() >= deadline:
                    raise UnavailableError(
                        f"{context}: the server stayed unreachable for "
                        f"{self.reconnect_timeout:g}s; nothing was written "
                        f"({failed.cause})"
                    ) from failed.cause
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _fenced(self, work: Work[T], fences: Sequence[Fence]) -> Work[T]:
        # A set, not a dict: a merged group may hold a stale owner's row and
        # the new owner's, both for one runtime; each is checked.
        pairs = sorted(set(fences))
        runtimes = sorted({runtime_id for runtime_id, _ in pairs})
        sql = self.sql.fence

        async def checked(conn: Conn) -> T:
            cur = await conn.execute(sql, (runtimes,))
            current = dict(await cur.fetchall())
            for runtime_id, epoch in pairs:
                check_fence(runtime_id, epoch, current.get(runtime_id))
            return await work(conn)

        return checked

    async def _transact_once(self, work: Work[T], deadline: float) -> T:
        conn: Conn | None = None
        mark: _Mark | None = None
        done = False
        result: T
        try:
            async with self.pool.connection() as conn:
                mark = await self._mark_of(conn)
                mark.ticket += 1
                async with conn.pipeline(), conn.transaction():
                    result = await work(conn)
                    done = True
                    await conn.execute(self.sql.mark, (mark.ticket, mark.writer))
            self.commits += 1
            return result
        except Exception as exc:
            if not (lost(exc, conn) or is_unavailable(exc)):
                raise store_error(exc, "write", WriteFailedError) from exc
            self._purge()
            if mark is None or not done or not lost(exc, conn):
                # Refused before COMMIT was sent (or by the server, which
                # then rolled back): certainly nothing written.
                raise _NotCommittedError(exc) from exc
            failure = exc
        # The connection broke while COMMIT may have been on its way.
        if await self._committed(mark, deadline, failure):
            self.recoveries["read back: committed"] += 1
            self.commits += 1
            return result
        self.recoveries["read back: not committed"] += 1
        raise _NotCommittedError(failure)

    async def _mark_of(self, conn: Conn) -> _Mark:
        mark = self._marks.get(conn)
        if mark is None:
            # The row exists before any transaction stamps it, so a reader
            # resolving a lost commit finds it locked, not missing.
            mark = _Mark()
            if conn.autocommit:
                await conn.execute(self.sql.new_mark, (mark.writer,))
            else:
                async with conn.transaction():
                    await conn.execute(self.sql.new_mark, (mark.writer,))
            self._marks[conn] = mark
            self.writers.append(mark.writer)
        return mark

    async def _committed(self, mark: _Mark, deadline: float, cause: Exception) -> bool:
        """Whether the transaction stamped ``mark.ticket`` committed, read on
        another connection (waiting for the server up to the deadline)."""

        async def read(conn: Conn) -> Any:
            async with conn.transaction():
                cur = await conn.execute(self.sql.read_mark, (mark.writer,))
                return await cur.fetchone()

        try:
            row = await self._retrying(read, deadline)
        except Exception as exc:
            raise StoreInternalError(
                f"write in doubt: the connection broke during COMMIT ({cause}) "
                f"and the outcome could not be read back ({exc})"
            ) from exc
        return row is not None and row[0] == mark.ticket

    def _purge(self) -> None:
        """After a broken connection, drop the pool's other dead ones now,
        not one failed write at a time (a server restart breaks them all)."""
        task = asyncio.ensure_future(self.pool.check())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # ---------------------------------------------------------------- reads

    async def read(self, work: Work[T], context: str = "read") -> T:
        """``work`` on a pooled connection, tried again while the server is
        unavailable (a read changes nothing), up to ``reconnect_timeout``."""
        try:
            return await self._retrying(work, _now() + self.reconnect_timeout)
        except Exception as exc:
            raise store_error(exc, context, ReadFailedError) from exc

    async def _retrying(self, work: Work[T], deadline: float) -> T:
        pause = _FIRST_PAUSE
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await work(conn)
            except Exception as exc:
                if not is_unavailable(exc) or _now() >= deadline:
                    raise
                self.recoveries["reads tried again"] += 1
                self._purge()
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    async def forget_marks(self) -> None:
        """Remove this store's rows from ``commit_marks`` (at close)."""
        if not self.writers:
            return
        writers, self.writers = self.writers, []

        async def drop(conn: Conn) -> None:
            await conn.execute(self.sql.drop_marks, (writers,))

        await self.transact(drop, "close")


class InputBatcher:
    """Group commit of input rows (see the module notes)."""

    def __init__(self, writer: PostgresWriter, in_flight: int) -> None:
        self.writer = writer
        self.in_flight_limit = in_flight
        self._pending: list[_Request] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def write(self, row: InputRow, fence: Fence | None = None) -> None:
        """``fence``: the owner's (runtime, epoch) the row is written under."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(row, fence, future))
        if len(self._flushers) < self.in_flight_limit:
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        await future

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            await self._commit(group)

    @store_commit("postgresql")
    async def _commit(self, group: list[_Request]) -> None:
        rows = [request.row for request in group]
        fences = [request.fence for request in group if request.fence is not None]
        try:
            await self.writer.transact(
                self._upsert(rows), "persist_input_state", fences
            )
        except Exception as exc:
            if len(group) > 1 and not isinstance(exc, UnavailableError):
                # One bad row, or one fenced owner, must not fail the others.
                for one in group:
                    await self._commit([one])
                return
            _answer(group, exc)
        else:
            _answer(group, None)

    def _upsert(self, rows: Sequence[InputRow]) -> Work[None]:
        # The last write of an input wins, as it would one after the other
        # (one statement may not change a row twice).
        latest = {(r, i): s for r, i, s in rows}
        columns = (
            [r for r, _ in latest],
            [i for _, i in latest],
            list(latest.values()),
        )
        sql = self.writer.sql.upsert_inputs

        async def work(conn: Conn) -> None:
            await conn.execute(sql, columns)

        return work

    async def drain(self) -> None:
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Request:
    """One ``persist_input_state`` waiting for a merged commit."""

    row: InputRow
    fence: Fence | None
    future: asyncio.Future[None]


def _answer(group: list[_Request], error: Exception | None) -> None:
    for request in group:
        future = request.future
        if future.done():  # its caller was cancelled meanwhile
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _now() -> float:
    return asyncio.get_running_loop().time()
