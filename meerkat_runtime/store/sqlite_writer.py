"""The SQLite store's writer: the only write connection, and who uses it.

Theory of operation:

* One **writer thread** owns the write connection. Callers enqueue write
  requests; the writer takes every request waiting, runs each inside its own
  SAVEPOINT of one ``BEGIN IMMEDIATE`` transaction, commits once, and only
  then resolves each caller (**group commit**: concurrent sessions share one
  flush, and no caller is acknowledged before its data is durable). A
  request that fails rolls back to its savepoint and fails alone; a failed
  COMMIT fails the whole group. A group of nothing but input-row upserts
  (the acknowledgement of an accept) is first tried as a few merged
  statements.
* **Inline path**: a caller that has been writing alone for a while commits
  on its own thread instead: two thread hand-offs cost more than the flush
  they would share with nobody. Concurrent writers always go through the
  thread, so they share flushes.
* **One hand-off per loop turn**: requests queued during one turn of an
  event loop wait on that loop and go to the writer thread together, in a
  callback that runs after every coroutine ready in that turn had its go.
  So 64 sessions woken by one group's answers queue their next writes as
  one group again (one flush, one thread wake-up), instead of the writer
  snatching the first few as they come and splitting the sessions into
  groups that each pay a flush.
* Every statement runs inside ``sqlite_boundary``'s transaction boundary,
  the only code that looks at ``sqlite3`` errors.
* ``hooks`` are seams for tests and benchmarks (group sizes, inline
  commits, a failing commit); ``paused()`` holds the writer off.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from meerkat_runtime.store import sqlite_leases
from meerkat_runtime.store.base import (
    CommittedThenCancelled,
    StoreInternalError,
    WriteFailedError,
)
from meerkat_runtime.store.sqlite_boundary import (
    Transaction,
    attempt,
    closed_error,
)
from meerkat_runtime.store.sqlite_requests import (
    BUSY,
    Answer,
    Busy,
    Request,
    answer_all,
)
from meerkat_runtime.store.sqlite_schema import MERGED_ROWS, upsert_inputs_sql
from meerkat_runtime.store.sqlite_setup import BUSY_TIMEOUT_MS
from meerkat_runtime.telemetry import store_commit

T = TypeVar("T")

MAX_GROUP = 512  # requests per transaction; bounds one commit's latency
SOLO_STREAK = 3  # lone writes in a row before a caller may commit inline


@dataclass(slots=True)
class WriterHooks:
    """Seams for tests and benchmarks; every one is None in production."""

    # Writer thread: a group of this many requests is about to be committed,
    # and then has been (a profiler can be switched on and off there).
    group: Callable[[int], None] | None = None
    group_done: Callable[[int], None] | None = None
    # Caller's thread: a lone write is about to take the connection for an
    # inline commit, and then is about to commit inline.
    before_inline: Callable[[], None] | None = None
    inline: Callable[[], None] | None = None
    # Caller's thread: a request is about to be queued for the writer.
    queued: Callable[[], None] | None = None
    # Caller's event loop: a request's answer has just been handed over.
    answered: Callable[[], None] | None = None
    # Raised in place of the next COMMIT (writer or inline), then cleared:
    # a ``sqlite3`` error here goes through the boundary's classification.
    fail_next_commit: Exception | None = None


class SqliteWriter:
    """Owns ``conn`` (set up, with busy_timeout 0) from now on."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self.hooks = WriterHooks()
        self.closed = False  # no more requests are taken
        self._done = False  # the writer thread has stopped taking requests
        # Batches of requests, each one event loop's turn; None: stop.
        self._requests: queue.SimpleQueue[list[Request] | None] = queue.SimpleQueue()
        # Requests queued on each event loop in its current turn, not yet
        # handed to the writer (callers may use several loops, in threads).
        self._turns: dict[asyncio.AbstractEventLoop, list[Request]] = {}
        # The connection is used by the writer thread or, for a lone caller,
        # inline on the caller's thread; never both.
        self._conn_lock = threading.Lock()
        # Queued requests not yet answered. Only a hint for the inline path
        # (which re-checks the queue and the connection lock): callers on
        # several event loops update it from several threads.
        self._inflight = 0
        self._solo_streak = 0  # consecutive writes that found nothing in flight
        self._started = 0  # writes started (to notice company during a yield)
        self._thread = threading.Thread(
            target=self._run, name="meerkat-sqlite-writer", daemon=True
        )
        self._thread.start()

    # ---------------------------------------------------------------- callers

    async def write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        commits: bool = True,
        row: tuple[str, str, bytes] | None = None,
        fence: tuple[str, int] | None = None,
    ) -> T:
        """``work`` committed, inline for a lone caller or else through the
        writer thread. ``row``: the request only upserts this input row;
        ``fence``: (runtime, epoch) that ``work`` checks first (PD-36)."""
        self._check_open()
        self._started += 1
        self._solo_streak = self._solo_streak + 1 if self._inflight == 0 else 0
        if self._solo_streak > SOLO_STREAK:
            done = await self._alone(work)
            if not isinstance(done, Busy):
                return done
            self._solo_streak = 0
        return await self._queued(work, commits, row, fence)

    async def _alone(self, work: Callable[[sqlite3.Connection], T]) -> T | Busy:
        """Commit inline, unless company turns up. An inline commit blocks the
        event loop for the flush, so no one else could queue behind it:
        first let every ready coroutine run once, and stay inline only if
        none of them started a write (``Busy`` otherwise, or when another
        process holds the file's write lock)."""
        started = self._started
        await asyncio.sleep(0)
        self._check_open()  # close() may have run during the yield
        if self.hooks.before_inline is not None:
            self.hooks.before_inline()
        if (
            self._started != started
            or self._inflight != 0
            or not self._requests.empty()
            or not self._conn_lock.acquire(blocking=False)
        ):
            return BUSY
        try:
            if self._done:  # close() from another thread got here first
                raise closed_error(self.path)
            return self._commit_inline(work)
        finally:
            self._conn_lock.release()

    @store_commit("sqlite", grouped=False)
    def _commit_inline(self, work: Callable[[sqlite3.Connection], T]) -> T | Busy:
        """One write on the caller's thread. It never waits for a lock held by
        another process (that would freeze the event loop): busy means the
        caller goes through the writer thread instead."""
        if self.hooks.inline is not None:
            self.hooks.inline()
        transaction = Transaction(self.conn, "commit failed", WriteFailedError)
        if not transaction.try_begin():
            return BUSY
        with transaction:
            value = work(self.conn)
            if self.hooks.fail_next_commit is not None:
                self._injected_failure()
        return value

    async def _queued(
        self,
        work: Callable[[sqlite3.Connection], T],
        commits: bool,
        row: tuple[str, str, bytes] | None,
        fence: tuple[str, int] | None = None,
    ) -> T:
        """Through the writer thread: answered after its group commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._inflight += 1
        request = Request(work, loop, future, self._answered, row=row, fence=fence)
        if self.hooks.queued is not None:
            self.hooks.queued()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = []
            loop.call_soon(self._hand_off, loop)
        turn.append(request)
        try:
            return await future
        except asyncio.CancelledError:
            # The writer runs the request anyway (or has run it: a task can be
            # cancelled after its answer arrived, before it resumed), so ask
            # the request, not the future, how it ended.
            if commits and await request.outcome_after_cancel():
                raise CommittedThenCancelled from None
            raise

    def _hand_off(self, loop: asyncio.AbstractEventLoop) -> None:
        """This loop's turn is over: its requests go to the writer as one."""
        self._requests.put(self._turns.pop(loop))
        if self._done:
            # close() ran since these were queued and the writer has refused
            # its leftovers already: it would never see them.
            self._refuse_leftovers()

    def _check_open(self) -> None:
        if self.closed:
            raise closed_error(self.path)
        if not self._thread.is_alive():
            raise StoreInternalError(f"{self.path}: the writer thread has stopped")

    def _answered(self) -> None:
        self._inflight -= 1
        if self.hooks.answered is not None:
            self.hooks.answered()

    def _injected_failure(self) -> None:
        failure, self.hooks.fail_next_commit = self.hooks.fail_next_commit, None
        if failure is not None:  # (another thread may have taken it)
            raise failure

    # ---------------------------------------------------------------- thread

    def _run(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                break
            waiting = list(first)
            while len(waiting) < MAX_GROUP:
                try:
                    nxt = self._requests.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._requests.put(None)
                    break
                waiting.extend(nxt)
            for start in range(0, len(waiting), MAX_GROUP):
                self._group(waiting[start : start + MAX_GROUP])
        with self._conn_lock:  # a lone caller may be committing inline on it
            # Set under the lock (an inline caller checks it there) and
            # before the drain (a late caller checks it after queueing).
            self._done = True
            self.conn.close()
        self._refuse_leftovers()

    def _group(self, requests: list[Request]) -> None:
        with self._conn_lock:
            if self.hooks.group is not None:
                self.hooks.group(len(requests))
            answers = self._commit_group(requests)
            if self.hooks.group_done is not None:
                self.hooks.group_done(len(requests))
        # Answer after releasing the connection, so a caller that goes on
        # writing alone finds it free and may commit inline.
        answer_all(answers)

    def _refuse_leftovers(self) -> None:
        """Nothing may wait for ever on a stopped writer (``write`` checks
        ``closed`` after its last yield, so this is a second line)."""
        closed = closed_error(self.path)
        while True:
            try:
                batch = self._requests.get_nowait()
            except queue.Empty:
                return
            if batch is not None:
                answer_all([(request, False, closed) for request in batch])

    @store_commit("sqlite")
    def _commit_group(self, group: list[Request]) -> list[Answer]:
        """Run and commit a group; each request's answer, to give only now
        that the whole group is durable (or failed as one)."""
        transaction = Transaction(self.conn, "commit failed", WriteFailedError)
        results: list[Answer] = []
        try:
            transaction.begin(time.monotonic() + BUSY_TIMEOUT_MS / 1000)
            with transaction:
                if len(group) == 1:  # alone: the transaction itself is the unit
                    results = [self._attempt(group[0], None)]
                elif _merged_rows(self.conn, group):
                    results = [(request, True, None) for request in group]
                else:
                    # One savepoint name for all: each is released before the
                    # next, and fixed statements stay in sqlite3's cache.
                    results = [self._attempt(r, "request") for r in group]
                transaction.rollback_only = not any(ok for _, ok, _ in results)
                if self.hooks.fail_next_commit is not None:
                    self._injected_failure()
        except Exception as exc:  # a store error: the whole group failed
            return [(request, False, exc) for request in group]
        return results

    def _attempt(self, request: Request, savepoint: str | None) -> Answer:
        ok, value = attempt(self.conn, request.work, savepoint, "commit failed")
        return request, ok, value

    # ---------------------------------------------------------------- stopping

    def stop(self) -> None:
        """Take no more requests; the thread answers those queued, closes
        the connection and ends (``join`` waits for that)."""
        if not self.closed:
            self.closed = True
            self._requests.put(None)

    def join(self) -> None:
        self._thread.join()

    def running(self) -> bool:
        return self._thread.is_alive()

    # ---------------------------------------------------------------- testing

    def in_flight(self) -> int:
        """Requests queued for the writer thread and not yet answered."""
        return self._inflight

    def holding_connection(self) -> bool:
        """Whether the connection is in use (a group or an inline commit)."""
        return self._conn_lock.locked()

    def next_write_inline(self) -> bool:
        """Whether a lone caller's next write will try the inline path."""
        return self._solo_streak >= SOLO_STREAK

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The writer thread holds off committing while inside (requests
        queue up and are committed as one group afterwards)."""
        with self._conn_lock:
            yield


def _merged_rows(conn: sqlite3.Connection, group: list[Request]) -> bool:
    """A group of nothing but input-row upserts, as few statements: each
    row costs the writer thread one GIL hand-back less (SQLite runs a whole
    statement without the GIL). False, with nothing written, if the group
    holds other requests or anything fails (a statement, or binding a value
    SQLite refuses): then each request runs on its own, and only a failing
    one fails."""
    rows = [request.row for request in group if request.row is not None]
    if len(rows) < len(group):
        return False
    # Each fenced runtime's lease is read once for the whole group; one
    # fenced row sends every request its own way.
    fences = {request.fence for request in group if request.fence is not None}

    def upsert_all(conn: sqlite3.Connection) -> None:
        for runtime_id, epoch in fences:
            sqlite_leases.fence(conn, runtime_id, epoch)
        start = 0
        for size in merged_sizes(len(rows)):
            part = rows[start : start + size]
            start += size
            conn.execute(
                upsert_inputs_sql(size),
                [value for row in part for value in row],
            )

    ok, _ = attempt(conn, upsert_all, "merged", "merged rows")
    return ok


def merged_sizes(count: int) -> list[int]:
    """Statement sizes for ``count`` merged rows: ``MERGED_ROWS`` at a time,
    then powers of two, so at most eight distinct statements exist (one per
    size would crowd sqlite3's statement cache of 128, and preparing a
    100-row statement costs far more than running it)."""
    sizes = [MERGED_ROWS] * (count // MERGED_ROWS)
    rest, power = count % MERGED_ROWS, 64
    while rest:
        while power > rest:
            power //= 2
        sizes.append(power)
        rest -= power
    return sizes
