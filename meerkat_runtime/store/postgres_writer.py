"""How the PostgreSQL store talks to the server: transactions that survive a
lost connection, reads that wait for the server to come back, and group
commit of input writes.

**One transaction per write, in one round trip.** ``transact`` runs the
write's statements inside ``BEGIN`` ... ``COMMIT`` in pipeline mode, so a
write that reads nothing costs one round trip and one WAL flush; the caller
is answered only after ``COMMIT`` returned. ``statement`` is the shorter
path of the acknowledgements (PD-57): one statement in autocommit, which is
a transaction by itself.

**Fencing (PD-36, PD-55).** A write of an owner (``fences``: the
(runtime, epoch) pairs it writes under) first reads those leases' epochs
``FOR SHARE`` inside its transaction and is refused whole (``Fenced``,
rolled back) when one moved on. In ``transact`` that read is one more
round trip; ``accept_inputs`` does it inside its one statement and writes
only when every fence holds.

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
(``accept_inputs``), which is its transaction: while a commit is in flight, new rows wait and go
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
from typing import Any, Generic, TypeVar

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


class _Attempt(Generic[T]):
    """One try of a write: its mark, and once the commit may have gone out
    (``committing``), what the caller is answered if it did commit."""

    def __init__(self) -> None:
        self.mark: _Mark | None = None
        self.committing = False
        self.result: T

    def sent(self, result: T) -> None:
        self.result = result
        self.committing = True


_Body = Callable[[Conn, _Attempt[T]], Awaitable[T]]
Check = Callable[[list[Any]], None]


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
        if fences:
            work = self._fenced(work, fences)
        mark_sql = self.sql.mark

        async def body(conn: Conn, attempt: _Attempt[T]) -> T:
            mark = attempt.mark
            assert mark is not None
            async with conn.pipeline(), conn.transaction():
                result = await work(conn)
                attempt.sent(result)  # COMMIT goes out as the block ends
                await conn.execute(mark_sql, (mark.ticket, mark.writer))
            return result

        return await self._until_committed(body, context)

    async def statement(
        self, sql: str, params: dict[str, Any], check: Check, context: str
    ) -> None:
        """One statement that is a transaction of its own: one round trip,
        one commit, answered after it. ``sql`` stamps the connection's mark
        itself (parameters ``ticket`` and ``writer``) and writes nothing
        unless the condition ``check`` judges (from the rows it returns)
        held, so a refusal by ``check`` leaves nothing behind."""

        async def body(conn: Conn, attempt: _Attempt[None]) -> None:
            assert attempt.mark is not None
            values = {**params, "ticket": attempt.mark.ticket}
            values["writer"] = attempt.mark.writer
            attempt.sent(None)  # committed means its condition held
            if conn.autocommit:
                cur = await conn.execute(sql, values)
            else:  # an application's pool: the commit is ours to send
                async with conn.transaction():
                    cur = await conn.execute(sql, values)
            check(await cur.fetchall())

        await self._until_committed(body, context)

    async def _until_committed(self, body: _Body[T], context: str) -> T:
        """``body`` tried until it commits, or is refused, or the server
        stayed away for ``reconnect_timeout`` (then ``Unavailable``)."""
        deadline = _now() + self.reconnect_timeout
        pause = _FIRST_PAUSE
        while True:
            try:
                return await self._attempt(body, deadline)
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

    async def _attempt(self, body: _Body[T], deadline: float) -> T:
        """``body`` once on a pooled connection with a new ticket of its
        mark; a connection lost after the commit may have gone out is
        resolved by reading the mark back (see the module notes)."""
        conn: Conn | None = None
        attempt: _Attempt[T] = _Attempt()
        try:
            async with self.pool.connection() as conn:
                attempt.mark = mark = await self._mark_of(conn)
                mark.ticket += 1
                result = await body(conn, attempt)
            self.commits += 1
            return result
        except Exception as exc:
            if not (lost(exc, conn) or is_unavailable(exc)):
                raise store_error(exc, "write", WriteFailedError) from exc
            self._purge()
            if attempt.mark is None or not attempt.committing or not lost(exc, conn):
                # Refused before COMMIT was sent (or by the server, which
                # then rolled back): certainly nothing written.
                raise _NotCommittedError(exc) from exc
            failure = exc
        # The connection broke while COMMIT may have been on its way.
        if await self._committed(attempt.mark, deadline, failure):
            self.recoveries["read back: committed"] += 1
            self.commits += 1
            return attempt.result
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

    async def _commit(self, group: list[_Request]) -> None:
        try:
            sql, params = _accept(self.writer.sql, group)
            await self.writer.statement(
                sql, params, _fence_check(group), "persist_input_state"
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

    async def drain(self) -> None:
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Request:
    """One ``persist_input_state`` waiting for a merged commit."""

    row: InputRow
    fence: Fence | None
    future: asyncio.Future[None]


def _accept(sql: Statements, group: list[_Request]) -> tuple[str, dict[str, Any]]:
    """The statement and parameters that write a merged group. The last
    write of an input wins, as it would one after the other (one statement
    may not change a row twice); each distinct fence is checked (a group may
    hold a stale owner's row and the new owner's, both for one runtime)."""
    latest = {(r, i): s for r, i, s in (request.row for request in group)}
    fences = sorted({request.fence for request in group if request.fence})
    if len(latest) == 1 and len(fences) <= 1:  # a lone caller: plain values
        [((runtime_id, input_id), record)] = latest.items()
        fr, fe = fences[0] if fences else (None, None)
        one = {"r": runtime_id, "i": input_id, "s": record, "fr": fr, "fe": fe}
        return sql.accept_input, one
    return sql.accept_inputs, {
        "r": [r for r, _ in latest],
        "i": [i for _, i in latest],
        "s": list(latest.values()),
        "fr": [runtime_id for runtime_id, _ in fences],
        "fe": [epoch for _, epoch in fences],
    }


def _fence_check(group: list[_Request]) -> Check:
    """Raises ``Fenced`` for the first fence of ``group`` whose lease (as
    ``accept_inputs`` returned it) has moved on."""
    fences = sorted({request.fence for request in group if request.fence})

    def check(rows: list[Any]) -> None:
        current = {runtime_id: epoch for runtime_id, epoch, _ in rows}
        for runtime_id, epoch in fences:
            check_fence(runtime_id, epoch, current.get(runtime_id))
        if not rows[0][2]:  # the statement's own verdict must agree
            raise StoreInternalError(
                f"input write refused by a fence check, but every fence holds: {fences}"
            )

    return check


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
