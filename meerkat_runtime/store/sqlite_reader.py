"""The SQLite store's readers: one connection per worker thread.

Theory of operation: reads run in worker threads, each on its own
connection, opened on first use. In WAL mode they see the last committed
state and never block the writer. Bulk reads stream: a reader thread
fetches chunks while the caller decodes the chunk before (SQLite steps
without the GIL, so fetching and decoding overlap), at most ``READ_AHEAD``
chunks ahead, so the rows of a deep queue never all wait in memory.

Readers memory-map the file (``mmap_bytes``; a whole-table scan turns the
map off while it runs, PD-66): SQLite only reads through the map, so durability is unchanged; the trade-off is that an I/O error while
reading a mapped page arrives as a signal (SIGBUS) instead of an error, so
put the file on a local disk, or set it to 0.

Each connection is paired with a lock held while a thread uses it:
``close`` takes it before closing, since closing a connection another
thread is stepping crashes the process (sqlite3 frees the statement under
it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from meerkat_runtime.store.base import ReadFailedError
from meerkat_runtime.store.sqlite_boundary import Translated, closed_error
from meerkat_runtime.store.sqlite_requests import wait_out

T = TypeVar("T")
Pair = tuple[sqlite3.Connection, threading.Lock]

READ_CHUNK = 1000  # rows a reader thread hands over at a time
# Chunks a reader thread may fetch ahead of the caller's decoding (PD-66):
# fetching is faster than decoding, so without a bound a deep queue's rows
# would all wait in memory at once, beside what was decoded from them.
READ_AHEAD = 4


@dataclass(slots=True)
class ReaderHooks:
    """Seams for tests; None in production."""

    # Reader thread, before each chunk of a bulk read is fetched.
    chunk: Callable[[], None] | None = None
    # Reader thread, with its connection, when a bulk read starts.
    bulk_started: Callable[[sqlite3.Connection], None] | None = None
    # Closing thread, before it waits for a connection's reader to finish.
    close_wait: Callable[[], None] | None = None


class SqliteReaders:
    """Reader connections of one store; ``connect`` opens one."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], path: str, mmap_bytes: int
    ) -> None:
        self.connect = connect
        self.path = path
        self.mmap_bytes = mmap_bytes
        self.hooks = ReaderHooks()
        self.closed = False
        self._local = threading.local()
        self._pairs: list[Pair] = []
        self._pairs_lock = threading.Lock()

    def _pair(self) -> Pair:
        """This thread's connection (opened on first use) and its lock."""
        pair: Pair | None = getattr(self._local, "pair", None)
        if pair is None:
            conn = self.connect()
            with Translated(f"cannot open {self.path}", ReadFailedError):
                conn.execute(f"PRAGMA mmap_size = {self.mmap_bytes}")
            pair = (conn, threading.Lock())
            with self._pairs_lock:
                if self.closed:  # close() has already closed the others
                    conn.close()
                    raise closed_error(self.path)
                self._pairs.append(pair)
            self._local.pair = pair
        return pair

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held against close() meanwhile; a
        ``sqlite3`` error is a ``ReadFailed`` (or as classified)."""
        conn, lock = self._pair()
        with lock:
            if self.closed:
                raise closed_error(self.path)
            with Translated(self.path, ReadFailedError):
                yield conn

    async def read(
        self, work: Callable[[sqlite3.Connection], T], *, scan: bool = False
    ) -> T:
        """``work`` on a reader connection; ``scan``: it reads a whole table
        (see ``_unmapped``)."""
        if self.closed:
            raise closed_error(self.path)

        def run() -> T:
            with self._reading() as conn:
                if not scan:
                    return work(conn)
                with self._unmapped(conn):
                    return work(conn)

        return await asyncio.to_thread(run)

    async def read_chunks(
        self, sql: str, params: tuple[Any, ...], consume: Callable[[list[Any]], None]
    ) -> None:
        """Hand the rows of one query to ``consume`` in chunks, fetched by a
        reader thread meanwhile. One statement: one consistent snapshot."""
        if self.closed:
            raise closed_error(self.path)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[list[Any] | BaseException | None] = asyncio.Queue()
        stop = threading.Event()  # ``consume`` raised: no more chunks wanted
        room = threading.Semaphore(READ_AHEAD)  # chunks not yet consumed

        def deliver(item: list[Any] | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(chunks.put_nowait, item)

        def produce() -> None:
            # Every way out hands something over: a caller waiting on the
            # queue must never be left waiting (with the GC paused, as
            # recovery reads).
            try:
                with self._reading() as conn, self._unmapped(conn):
                    if self.hooks.bulk_started is not None:
                        self.hooks.bulk_started(conn)
                    cursor = conn.execute(sql, params)
                    while room.acquire() and not stop.is_set():
                        rows = self._fetch(cursor)
                        if not rows:
                            break
                        deliver(rows)
                    cursor.close()
                deliver(None)
            except BaseException as exc:  # e.g. no connection: told, not lost
                deliver(exc)

        producer = loop.run_in_executor(None, produce)
        try:
            while (item := await chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                consume(item)
                room.release()
        finally:
            stop.set()
            room.release()  # a producer waiting for room sees ``stop``
            await wait_out(producer)  # the reader connection is free again

    @contextlib.contextmanager
    def _unmapped(self, conn: sqlite3.Connection) -> Iterator[None]:
        """PD-66: a bulk read reads through SQLite's page cache, not the map: a
        scan touches every page of the table once, and mapped pages would
        all count in the process's resident memory, as much again as the
        table, with no gain in speed for a single pass."""
        if not self.mmap_bytes:
            yield
            return
        conn.execute("PRAGMA mmap_size = 0")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA mmap_size = {self.mmap_bytes}")

    def _fetch(self, cursor: sqlite3.Cursor) -> list[Any]:
        if self.hooks.chunk is not None:
            self.hooks.chunk()
        return cursor.fetchmany(READ_CHUNK)

    def close(self) -> None:
        """Close each connection once no thread is reading on it; one leaves
        the list only once closed, so a close() after a cancelled one still
        waits for it."""
        self.closed = True
        with self._pairs_lock:
            pairs = list(self._pairs)
        for pair in pairs:
            conn, lock = pair
            if self.hooks.close_wait is not None:
                self.hooks.close_wait()
            with lock:
                conn.close()
            with self._pairs_lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)

    # ---------------------------------------------------------------- testing

    def open_connections(self) -> int:
        return len(self._pairs)

    def in_use(self) -> int:
        """Connections a thread is reading on right now."""
        with self._pairs_lock:
            return sum(1 for _, lock in self._pairs if lock.locked())

    def setting(self, pragma: str) -> Any:
        """A PRAGMA's value on this thread's connection (opened if need be)."""
        with self._reading() as conn:
            return conn.execute(f"PRAGMA {pragma}").fetchone()[0]
