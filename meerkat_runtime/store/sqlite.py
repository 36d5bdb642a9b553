"""``SqliteRuntimeStore``: the embedded durable store, on the standard sqlite3.

Theory of operation:

* One **writer thread** owns the only write connection. Callers enqueue write
  requests; the writer takes every request waiting, runs each inside its own
  SAVEPOINT of one ``BEGIN IMMEDIATE`` transaction, commits once, and only then
  resolves each caller (**group commit**: concurrent sessions share one
  flush, and no caller is acknowledged before its data is durable). A request
  that fails rolls back to its savepoint and fails alone; a failed COMMIT
  fails the whole group. A group of nothing but input-row upserts (the
  acknowledgement of an accept) is first tried as a few merged statements.
* The event loop lets the writer thread in after every few queued requests
  (a GIL hand-over), so the writer commits the first requests while the
  loop queues the next, instead of starting only when the loop runs dry.
* **Readers** run in worker threads on their own connections. In WAL mode they
  see the last committed state and never block the writer.
* ``synchronous=FULL`` (the default) flushes the WAL on every commit: an
  acknowledged write survives power loss. ``NORMAL`` is faster and survives a
  process crash but may lose the last commits on power loss; ``OFF`` is for
  throwaway data only.
* The schema is versioned (``PRAGMA user_version``); older files are migrated
  forward on open, a newer file is refused with a clear error.
* **Recovery counts** (decision 18) are kept per runtime, not per row (see
  ``sqlite_schema``), so a restart with 100k pending inputs writes one row.
* **Readers memory-map** the database file (``read_mmap_bytes``, 1 GiB by
  default; 0 turns it off). SQLite only reads through the map, so durability
  is unchanged; the trade-off is that an I/O error while reading a mapped
  page arrives as a signal (SIGBUS) instead of an error, so put the file on
  a local disk, or turn it off.
* Bulk reads (``load_input_states``) stream: a reader thread fetches chunks
  while the caller decodes the chunk before.
* Requests and their answers travel as ``sqlite_requests`` describes.
* Only this module's transaction boundary touches ``sqlite3`` exceptions; they
  become ``RuntimeStoreError`` (STYLE.md 7).

Several processes may open the same file: SQLite's locks keep it consistent
(a writer waits up to ``busy_timeout``). What is *not* coordinated yet is two
processes driving the same runtime: there is no ownership lease until the
PostgreSQL issue, so run each runtime in one process at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from meerkat_runtime.codec import gc_paused
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.base import (
    CommittedThenCancelled,
    ReadFailedError,
    RuntimeStore,
    SessionDelta,
    StoreInternalError,
    WriteFailedError,
    as_store_error,
    mint_receipt,
    required_snapshot,
    snapshot_of,
    store_errors,
)
from meerkat_runtime.store.integrity import check_input_count
from meerkat_runtime.store.sqlite_requests import (
    BUSY,
    Answer,
    Busy,
    Request,
    answer_all,
    begin,
    is_busy,
    wait_out,
)
from meerkat_runtime.store.sqlite_schema import (
    BUMP_EPOCH,
    MERGED_ROWS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SELECT_INPUTS,
    UPSERT_INPUT,
    UPSERT_PHASE,
    UPSERT_SNAPSHOT,
    SchemaTooNewError,
    decode_input_row,
    receipt_exists,
    upsert_inputs_sql,
)

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL", "OFF"]

MAX_GROUP = 512  # requests per transaction; bounds one commit's latency
SOLO_STREAK = 3  # lone writes in a row before a caller may commit inline
BUSY_TIMEOUT_MS = 5000
HAND_OVER_EVERY = 8  # queued requests between two moments for the writer (tuned with bench/durable.py)
HAND_OVER_SLOW_S = (
    0.003  # longer: another thread kept the GIL (for its 5 ms switch interval)
)
HAND_OVER_PAUSE_S = 1.0  # then no hand-overs for this long
READ_CHUNK = 1000  # rows a reader thread hands over at a time
# Readers map the file instead of copying pages through read(): a bulk load
# copies no pages (bench/durable.py's recovery figure). Writes never use it.
READ_MMAP_BYTES = 1 << 30

_memory_names = itertools.count()


_STOP = object()


class SqliteRuntimeStore(RuntimeStore):
    """A ``RuntimeStore`` in one SQLite file (``":memory:"`` for a private one)."""

    # A cancelled write either never started (the inline path's one yield
    # comes before any SQL) or waits out the writer thread (``_write``).
    cancel_safe_writes = True

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        read_mmap_bytes: int = READ_MMAP_BYTES,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(
                f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}"
            )
        if type(read_mmap_bytes) is not int or read_mmap_bytes < 0:
            raise ValueError(
                f"read_mmap_bytes must be an int >= 0, not {read_mmap_bytes!r}"
            )
        self.path = str(path)
        self.synchronous = synchronous
        self.read_mmap_bytes = read_mmap_bytes
        if self.path == ":memory:":
            # A named shared-cache database, so reader and writer connections
            # of this store see the same data (and no other store does).
            self._target = f"file:meerkat-{id(self)}-{next(_memory_names)}?mode=memory&cache=shared"
            self._uri = True
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._target, self._uri = self.path, False
        self._writer_conn = self._connect()
        try:
            self._retrying(lambda: self._migrate(self._writer_conn))
            self._retrying(lambda: self._enable_wal(self._writer_conn))
            # From here the write connection never waits inside SQLite: the
            # writer thread waits in ``_begin``, and an inline commit must not
            # wait at all. (Toggling busy_timeout around each inline BEGIN
            # would add two statements to every lone write.)
            self._writer_conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            self._writer_conn.close()
            raise
        self._readers = threading.local()
        # Each reader connection with the lock held while a thread uses it:
        # close() takes it before closing, since closing a connection that
        # another thread is stepping crashes the process (sqlite3 frees the
        # statement under it).
        self._reader_conns: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._reader_lock = threading.Lock()
        self._requests: queue.SimpleQueue[Request | object] = queue.SimpleQueue()
        self._closed = False
        self._writer_done = False  # the writer thread has stopped taking requests
        # The write connection is used by the writer thread or, for a lone
        # caller, inline on the caller's thread (see _write); never both.
        self._conn_lock = threading.Lock()
        # Queued requests not yet answered. Only a hint for the inline path
        # (which re-checks the queue and the connection lock): callers on
        # several event loops update it from several threads.
        self._inflight = 0
        self._solo_streak = 0  # consecutive writes that found nothing in flight
        self._hand_over_paused_until = 0.0  # see _hand_over
        self._started = 0  # writes started (to notice company during a yield)
        self._writer = threading.Thread(
            target=self._write_loop, name="meerkat-sqlite-writer", daemon=True
        )
        self._writer.start()

    # ---------------------------------------------------------------- setup

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._target,
                uri=self._uri,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            raise StoreInternalError(f"cannot open {self.path}: {exc}") from None
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """After the version check, so a refused (newer) file is left untouched.
        SQLite keeps the old journal mode where WAL is impossible (some
        network file systems): refuse such a file, since the store's
        concurrency rests on WAL (readers beside the writer, and a write
        connection that only ever waits at BEGIN)."""
        if self._uri:
            return
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            raise StoreInternalError(
                f"cannot use {self.path}: SQLite could not switch it to WAL "
                f"mode (journal_mode stays {mode!r}); put it on a local file system"
            )

    def _retrying(self, step: Callable[[], None]) -> None:
        """Run a setup step, waiting out another connection's lock: SQLite does
        not call its busy handler for every lock a schema or journal-mode
        change takes, so two processes opening a new file could collide."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                step()
                return
            except StoreInternalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise StoreInternalError(
                        f"cannot open {self.path}: {exc}"
                    ) from None
            time.sleep(0.01)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Refuse a newer file without writing to it; otherwise migrate under
        the write lock, reading the version again there: another store or
        process may have migrated meanwhile, and a migration (ALTER TABLE)
        must not run twice."""
        try:
            if self._refuse_newer(conn) == SCHEMA_VERSION:
                return
            conn.execute("BEGIN IMMEDIATE")
            version = self._refuse_newer(conn)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreInternalError(
                f"cannot prepare the schema of {self.path}: {exc}"
            ) from exc  # _retrying asks the cause whether the file was busy

    def _refuse_newer(self, conn: sqlite3.Connection) -> int:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SchemaTooNewError(
                f"{self.path} has schema version {version}, newer than this "
                f"meerkat-runtime supports ({SCHEMA_VERSION}); upgrade meerkat-runtime"
            )
        return version

    # ---------------------------------------------------------------- writer

    def _write_loop(self) -> None:
        while True:
            first = self._requests.get()
            if first is _STOP:
                break
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._requests.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._requests.put(_STOP)
                    break
                group.append(nxt)
            with self._conn_lock:
                answers = self._commit_group(
                    [g for g in group if isinstance(g, Request)]
                )
            # Answer after releasing the connection, so a caller that goes on
            # writing alone finds it free and may commit inline.
            answer_all(answers)
        with self._conn_lock:  # a lone caller may be committing inline on it
            # Set under the lock (an inline caller checks it there) and
            # before the drain (a late caller checks it after queueing).
            self._writer_done = True
            self._writer_conn.close()
        self._refuse_leftovers()

    def _refuse_leftovers(self) -> None:
        """Nothing may wait for ever on a stopped writer (``_write`` checks
        ``_closed`` after its last yield, so this is a second line)."""
        closed = StoreInternalError(f"store {self.path} is closed")
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if isinstance(request, Request):
                answer_all([(request, False, closed)])

    def _commit_group(self, group: list[Request]) -> list[Answer]:
        """Run and commit a group; each request's answer, to give only now
        that the whole group is durable (or failed as one)."""
        conn = self._writer_conn
        results: list[Answer] = []
        try:
            begin(conn, time.monotonic() + BUSY_TIMEOUT_MS / 1000)
            if len(group) == 1:  # alone: the transaction itself is the unit
                results.append(self._run_alone(conn, group[0]))
            elif _merged_rows(conn, group):
                results = [(request, True, None) for request in group]
            else:
                for request in group:
                    results.append(self._run_one(conn, request))
            conn.execute("COMMIT" if any(ok for _, ok, _ in results) else "ROLLBACK")
        except Exception as exc:
            # A failed ROLLBACK must not stop the writer: every caller of the
            # group still gets its answer.
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            error = WriteFailedError(f"commit failed: {exc}")
            return [(request, False, error) for request in group]
        return results

    @staticmethod
    def _run_alone(conn: sqlite3.Connection, request: Request) -> Answer:
        try:
            return request, True, request.work(conn)
        except Exception as exc:
            return request, False, as_store_error(exc)

    @staticmethod
    def _run_one(conn: sqlite3.Connection, request: Request) -> Answer:
        # One savepoint name for all: each is released before the next, and
        # fixed statements stay in sqlite3's statement cache (names r0..r511
        # would not fit its 128 entries and were compiled again every time).
        conn.execute("SAVEPOINT request")
        try:
            value = request.work(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO request")
            conn.execute("RELEASE request")
            return request, False, as_store_error(exc)
        conn.execute("RELEASE request")
        return request, True, value

    async def _write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        commits: bool = True,
        row: tuple[str, str, bytes] | None = None,
    ) -> T:
        """Group commit through the writer thread; or, for a caller that has
        been writing alone for a while, inline: two thread hand-offs cost
        more than the flush they would share with nobody (bench/durable.py's
        one-caller figure compares the result with raw sqlite3).
        Concurrent writers always go through the thread, so they share flushes."""
        self._check_open()
        self._started += 1
        self._solo_streak = self._solo_streak + 1 if self._inflight == 0 else 0
        if self._solo_streak > SOLO_STREAK:
            done = await self._alone(work)
            if not isinstance(done, Busy):
                return done
            self._solo_streak = 0
        return await self._queued(work, commits, row)

    async def _alone(self, work: Callable[[sqlite3.Connection], T]) -> T | Busy:
        """Commit inline, unless company turns up. An inline commit blocks the
        event loop for the flush, so no one else could queue behind it:
        first let every ready coroutine run once, and stay inline only if
        none of them started a write (``Busy`` otherwise, or when another
        process holds the file's write lock)."""
        started = self._started
        await asyncio.sleep(0)
        self._check_open()  # close() may have run during the yield
        if (
            self._started != started
            or self._inflight != 0
            or not self._requests.empty()
            or not self._conn_lock.acquire(blocking=False)
        ):
            return BUSY
        try:
            if self._writer_done:  # close() from another thread got here first
                raise StoreInternalError(f"store {self.path} is closed")
            return self._commit_inline(work)
        finally:
            self._conn_lock.release()

    async def _queued(
        self,
        work: Callable[[sqlite3.Connection], T],
        commits: bool,
        row: tuple[str, str, bytes] | None,
    ) -> T:
        """Through the writer thread: answered after its group commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._inflight += 1
        request = Request(work, loop, future, self._answered, row=row)
        self._requests.put(request)
        if self._writer_done:
            # close() ran since _check_open and the writer has refused its
            # leftovers already: it would never see this one.
            self._refuse_leftovers()
        # Only for an accept's row: the writer merges those into a statement
        # or two, so its turn is short; for other writes it needs the GIL
        # per statement, and an early start only made the threads trade it
        # (bench/sessions.py end to end: handing over for every write was
        # slower).
        if row is not None and self._inflight % HAND_OVER_EVERY == 0:
            self._hand_over()
        try:
            return await future
        except asyncio.CancelledError:
            # The writer runs the request anyway (or has run it: a task can be
            # cancelled after its answer arrived, before it resumed), so ask
            # the request, not the future, how it ended.
            if commits and await request.outcome_after_cancel():
                raise CommittedThenCancelled from None
            raise

    def _hand_over(self) -> None:
        """Let the writer thread in for a moment. It cannot take the GIL from
        a busy event loop for up to 5 ms (the switch interval), so it would
        start only once the loop runs dry, and then every caller waits for
        one group; let in now and then, it commits the first requests while
        the loop queues the next (bench/durable.py's 64-session figure gains
        from it). ``time.sleep(0)`` releases the GIL to a
        waiting thread (``os.sched_yield`` does not: no gain, measured). Any
        runnable thread may take it, though: when one keeps it (a CPU-bound
        thread of the application), hand-overs stop for a while, so such a
        thread stalls this loop at most once per ``HAND_OVER_PAUSE_S``."""
        now = time.monotonic()
        if now < self._hand_over_paused_until:
            return
        release_gil()
        if time.monotonic() - now > HAND_OVER_SLOW_S:
            self._hand_over_paused_until = time.monotonic() + HAND_OVER_PAUSE_S

    def _check_open(self) -> None:
        if self._closed:
            raise StoreInternalError(f"store {self.path} is closed")
        if not self._writer.is_alive():
            raise StoreInternalError(
                f"store {self.path}: the writer thread has stopped"
            )

    def _answered(self) -> None:
        self._inflight -= 1

    def _commit_inline(self, work: Callable[[sqlite3.Connection], T]) -> T | Busy:
        """One write on the caller's thread. It never waits for a lock held by
        another process (that would freeze the event loop): busy means the
        caller goes through the writer thread instead."""
        conn = self._writer_conn
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    return BUSY
                raise
            try:
                value = work(conn)
            except Exception as exc:
                conn.execute("ROLLBACK")
                raise as_store_error(exc) from exc
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise WriteFailedError(f"commit failed: {exc}") from None
        return value

    # ---------------------------------------------------------------- readers

    def _reader_pair(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """This thread's reader connection (opened on first use) and its lock."""
        pair: tuple[sqlite3.Connection, threading.Lock] | None = getattr(
            self._readers, "pair", None
        )
        if pair is None:
            conn = self._connect()
            conn.execute(f"PRAGMA mmap_size = {self.read_mmap_bytes}")
            pair = (conn, threading.Lock())
            with self._reader_lock:
                if self._closed:  # close() has already closed the others
                    conn.close()
                    raise StoreInternalError(f"store {self.path} is closed")
                self._reader_conns.append(pair)
            self._readers.pair = pair
        return pair

    def _reader(self) -> sqlite3.Connection:
        return self._reader_pair()[0]

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's reader connection, held against close() meanwhile."""
        with self._reader_pair()[1]:
            if self._closed:
                raise StoreInternalError(f"store {self.path} is closed")
            yield self._reader()

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreInternalError(f"store {self.path} is closed")
        if self._uri:
            # A shared-cache memory database locks whole tables and fails at
            # once instead of waiting; reading through the writer serialises.
            return await self._write(work, commits=False)

        def run() -> T:
            try:
                with self._reading() as conn:
                    return work(conn)
            except sqlite3.Error as exc:
                raise ReadFailedError(f"{self.path}: {exc}") from None

        return await asyncio.to_thread(run)

    async def _read_chunks(
        self, sql: str, params: tuple[Any, ...], consume: Callable[[list[Any]], None]
    ) -> None:
        """Hand the rows of one query to ``consume`` in chunks, fetched by a
        reader thread while ``consume`` works on the chunk before: SQLite
        steps without the GIL, so fetching and decoding overlap (recovery of
        100k inputs is the case). One statement: one consistent snapshot."""
        if self._closed:
            raise StoreInternalError(f"store {self.path} is closed")
        if self._uri:
            consume(await self._read(lambda conn: conn.execute(sql, params).fetchall()))
            return
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[list[Any] | BaseException | None] = asyncio.Queue()
        stop = threading.Event()  # ``consume`` raised: no more chunks wanted

        def deliver(item: list[Any] | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(chunks.put_nowait, item)

        def produce() -> None:
            # Every way out hands something over: a caller waiting on the
            # queue must never be left waiting (with the GC paused, as
            # recovery reads).
            try:
                with self._reading() as conn:
                    cursor = conn.execute(sql, params)
                    while not stop.is_set() and (rows := cursor.fetchmany(READ_CHUNK)):
                        deliver(rows)
                    cursor.close()
                deliver(None)
            except sqlite3.Error as exc:
                deliver(ReadFailedError(f"{self.path}: {exc}"))
            except BaseException as exc:  # e.g. no reader connection: told, not lost
                deliver(exc)

        producer = loop.run_in_executor(None, produce)
        try:
            while (item := await chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                consume(item)
        finally:
            stop.set()
            await wait_out(producer)  # the reader connection is free again

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

        await self._write(work, row=row)

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        rid = str(runtime_id)
        await self._write(
            lambda conn: conn.execute(UPSERT_PHASE, (rid, records.encode_phase(state)))
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

        await self._write(work)

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

        await self._write(work)

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,  # noqa: ARG002 - unused, as upstream (S-6)
    ) -> None:
        rid = str(runtime_id)
        states = list(input_updates)
        with store_errors():  # a bad value fails before anything is queued
            encoded = records.encode_receipt(receipt)
            snapshot = snapshot_of(session_delta)

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
            for state in states:
                conn.execute(
                    UPSERT_INPUT,
                    (rid, *records.input_row(state)),
                )

        await self._write(work)

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

        return await self._write(work)

    async def load_input_states(self, runtime_id: LogicalRuntimeId) -> list[InputState]:
        rid = str(runtime_id)
        query = (f"{SELECT_INPUTS} ORDER BY input_id", (rid,))
        states: list[InputState] = []

        def decode(rows: list[Any]) -> None:
            states.extend([decode_input_row(rid, row) for row in rows])

        with gc_paused():  # a bulk decode: see codec.gc_paused
            await self._read_chunks(*query, decode)
        # A damaged index can hide rows: count them again by the table.
        await self._read(lambda c: check_input_count(c, rid, len(states)))
        return states

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

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        rid = str(runtime_id)
        sequence = records.receipt_sequence(sequence)
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT receipt_json FROM runtime_boundary_receipts "
                "WHERE runtime_id = ? AND run_id = ? AND sequence = ?",
                (rid, str(run_id), sequence),
            ).fetchone()
        )
        return (
            None
            if row is None
            else records.decode_receipt(rid, f"{run_id}/{sequence}", row[0])
        )

    async def load_boundary_receipts(
        self, runtime_id: LogicalRuntimeId
    ) -> list[RunBoundaryReceipt]:
        rid = str(runtime_id)
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT run_id, sequence, receipt_json FROM runtime_boundary_receipts "
                "WHERE runtime_id = ? ORDER BY run_id, sequence",
                (rid,),
            ).fetchall()
        )
        return [
            records.decode_receipt(rid, f"{run}/{seq}", data) for run, seq, data in rows
        ]

    async def load_session_snapshot(self, runtime_id: LogicalRuntimeId) -> bytes | None:
        rid = str(runtime_id)
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT session_snapshot FROM runtime_session_snapshots WHERE runtime_id = ?",
                (rid,),
            ).fetchone()
        )
        return (
            None
            if row is None
            else records.stored_bytes(row[0], records.SNAPSHOTS, rid)
        )

    async def load_runtime_state(
        self, runtime_id: LogicalRuntimeId
    ) -> RuntimeState | None:
        rid = str(runtime_id)
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT runtime_state_json FROM runtime_states WHERE runtime_id = ?",
                (rid,),
            ).fetchone()
        )
        return None if row is None else records.decode_phase(rid, row[0])

    # ---------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Stop the writer (every queued write answered) and close every
        connection. Safe to call again, also after a cancelled call: each
        call finishes whatever an earlier one left undone."""
        if not self._closed:
            self._closed = True
            self._requests.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        await asyncio.to_thread(self._close_readers)

    def _close_readers(self) -> None:
        """Each once no thread is reading on it (see ``_reader_conns``); a
        connection leaves the list only once closed, so a close() after a
        cancelled one still waits for it."""
        with self._reader_lock:
            pairs = list(self._reader_conns)
        for pair in pairs:
            conn, lock = pair
            with lock:
                conn.close()
            with self._reader_lock:
                if pair in self._reader_conns:
                    self._reader_conns.remove(pair)

    # ---------------------------------------------------------------- backdoor

    def raw_rows(self, table: str, runtime_id: LogicalRuntimeId) -> dict[str, bytes]:
        """Stored bytes by record id, read on a fresh connection (tests)."""
        queries = {
            records.INPUTS: "SELECT input_id, state_json FROM runtime_input_states WHERE runtime_id = ?",
            records.RECEIPTS: "SELECT run_id || '/' || sequence, receipt_json FROM runtime_boundary_receipts WHERE runtime_id = ?",
            records.STATES: "SELECT runtime_id, runtime_state_json FROM runtime_states WHERE runtime_id = ?",
            records.SNAPSHOTS: "SELECT runtime_id, session_snapshot FROM runtime_session_snapshots WHERE runtime_id = ?",
        }
        conn = self._connect()
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
        conn = self._connect()
        try:
            rid = str(runtime_id)
            if table == records.INPUTS:  # the row keeps its recovery epoch
                conn.execute(
                    "INSERT INTO runtime_input_states (runtime_id, input_id, state_json) "
                    "VALUES (?, ?, ?) ON CONFLICT (runtime_id, input_id) "
                    "DO UPDATE SET state_json = excluded.state_json",
                    (rid, record_id, data),
                )
            elif table == records.STATES:
                conn.execute(UPSERT_PHASE, (rid, data))
            else:
                run, seq = record_id.rsplit("/", 1)
                conn.execute(
                    "UPDATE runtime_boundary_receipts SET receipt_json = ? "
                    "WHERE runtime_id = ? AND run_id = ? AND sequence = ?",
                    (data, rid, run, int(seq)),
                )
        finally:
            conn.close()


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
    conn.execute("SAVEPOINT merged")
    try:
        start = 0
        for size in merged_sizes(len(rows)):
            part = rows[start : start + size]
            start += size
            conn.execute(
                upsert_inputs_sql(size),
                [value for row in part for value in (*row, row[0])],
            )
    except Exception:
        conn.execute("ROLLBACK TO merged")
        conn.execute("RELEASE merged")
        return False
    conn.execute("RELEASE merged")
    return True


def release_gil() -> None:
    """Give the GIL to a thread waiting for it, if any."""
    time.sleep(0)


def merged_sizes(count: int) -> list[int]:
    """Statement sizes for ``count`` merged rows: ``MERGED_ROWS`` at a time,
    then powers of two, so at most eight distinct statements exist (one per
    size would crowd sqlite3's statement cache of 128, and preparing a
    large statement again costs more than running it)."""
    sizes = [MERGED_ROWS] * (count // MERGED_ROWS)
    rest, power = count % MERGED_ROWS, 64
    while rest:
        while power > rest:
            power //= 2
        sizes.append(power)
        rest -= power
    return sizes
