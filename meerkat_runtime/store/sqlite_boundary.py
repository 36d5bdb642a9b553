"""The SQLite store's transaction boundary: the one place where ``sqlite3``
exceptions are looked at and become store errors.

Every statement the store runs is inside one of these:

* ``Transaction``: ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the write
  connection; leaving it with an error rolls back, and whatever escapes is a
  ``RuntimeStoreError`` (eventsourcing's recorders do the same in their
  transaction's ``__exit__``).
* ``attempt``: one request inside a group's transaction, under its own
  savepoint when it shares the transaction: its failure is its answer, and
  only its own rows are rolled back.
* ``Translated``: anything else (opening a file, reads): a ``sqlite3``
  error leaving the block is raised as a store error.

How an error is classified, by SQLite's result code (never its message,
which may hold a path saying "locked"): a lock held elsewhere, a full disk,
an I/O error or no memory is ``Unavailable`` (retryable); a damaged file, or
a stored text value that is not UTF-8 (which sqlite3 reports with no code
at all), is ``Corrupt``; anything else is the failure of what was being done
(``WriteFailed``, ``ReadFailed``, or ``Internal`` while opening).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from meerkat_runtime.store.base import (
    CorruptError,
    RuntimeStoreError,
    StoreInternalError,
    UnavailableError,
    WriteFailedError,
    as_store_error,
)

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_UNAVAILABLE = (*_BUSY, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOMEM)
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

Failure = type[RuntimeStoreError]


def _code(exc: BaseException | None) -> int | None:
    """The primary SQLite result code behind ``exc`` (its causes included)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # a cause may be itself
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorcode", None)
            return None if code is None else code & 0xFF
        seen.add(id(exc))
        exc = exc.__cause__
    return None


# What sqlite3 itself (not SQLite) raises when a stored text value does not
# decode, with no result code: the only message this module reads, and only
# on an error that carries no code (none of SQLite's own errors lacks one).
_UNDECODABLE = re.compile(r"Could not decode to UTF-8 column '([^']*)'")


def _undecodable_column(exc: sqlite3.Error) -> str | None:
    """The column whose text sqlite3 could not decode, when that is ``exc``."""
    if not isinstance(exc, sqlite3.OperationalError) or _code(exc) is not None:
        return None
    found = _UNDECODABLE.match(str(exc))
    return None if found is None else found.group(1)


def is_busy(exc: BaseException | None) -> bool:
    """Another connection holds a lock SQLite would have to wait for."""
    return _code(exc) in _BUSY


def store_error(exc: Exception, context: str, failure: Failure) -> RuntimeStoreError:
    """``exc`` as a store error: a store error stays itself, a ``sqlite3``
    error is classified (see the module notes), anything else is the
    store-independent ``as_store_error`` (a value that cannot be written)."""
    if isinstance(exc, RuntimeStoreError):
        return exc
    if not isinstance(exc, sqlite3.Error):
        return as_store_error(exc)
    column = _undecodable_column(exc)
    if column is not None:
        return CorruptError(
            f"{context}: corrupt record: its column {column} holds text that "
            "is not UTF-8"
        )
    code = _code(exc)
    if code in _UNAVAILABLE:
        failure = UnavailableError
    elif code in _CORRUPT:
        failure = CorruptError
    return failure(f"{context}: {exc}")


class Translated:
    """``with Translated(context, failure):`` a ``sqlite3`` error leaving the
    block is raised as a store error (``failure`` unless classified)."""

    __slots__ = ("context", "failure")

    def __init__(self, context: str, failure: Failure) -> None:
        self.context, self.failure = context, failure

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise store_error(exc, self.context, self.failure) from exc
        if isinstance(exc, UnicodeDecodeError):
            # sqlite3 could not decode SQLite's text: a message quoting a
            # damaged schema statement, or a damaged text value.
            raise CorruptError(
                f"{self.context}: the file holds text that is not UTF-8 "
                "(its schema or a record is damaged)"
            ) from exc


class Transaction:
    """One write transaction on ``conn``: ``begin`` (or ``try_begin``), then
    ``with transaction:`` around the work. A clean exit commits, unless
    ``rollback_only`` was set (no request of a group succeeded); an error
    rolls back and is raised as a store error. A COMMIT that fails fails
    the whole transaction."""

    __slots__ = ("conn", "context", "failure", "rollback_only")

    def __init__(
        self, conn: sqlite3.Connection, context: str, failure: Failure
    ) -> None:
        self.conn, self.context, self.failure = conn, context, failure
        self.rollback_only = False

    def try_begin(self) -> bool:
        """``BEGIN IMMEDIATE`` without waiting: False when another connection
        holds the write lock (the caller goes another way)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if is_busy(exc):
                return False
            raise store_error(exc, self.context, self.failure) from exc
        return True

    def begin(self, deadline: float) -> None:
        """``BEGIN IMMEDIATE``, waiting out another connection's write lock
        until ``deadline`` with the backoff SQLite's own busy handler uses
        (the write connection's busy_timeout is 0, so no wait ever happens
        inside SQLite where a caller could not see it)."""
        delay = 0.001
        while not self.try_begin():
            if time.monotonic() >= deadline:
                raise UnavailableError(
                    f"{self.context}: another connection held the write lock too long"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        conn = self.conn
        try:
            if exc is None and not self.rollback_only:
                conn.execute("COMMIT")
            elif conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error as failed:
            # A failed COMMIT (or ROLLBACK) must leave the connection usable
            # for the next transaction.
            # (If even that fails, the connection reports it on its next use.)
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if exc is None:
                raise store_error(failed, self.context, self.failure) from failed
        if isinstance(exc, Exception) and not isinstance(exc, RuntimeStoreError):
            raise store_error(exc, self.context, self.failure) from exc


def closed_error(path: str) -> StoreInternalError:
    """What every call on a closed store raises."""
    return StoreInternalError(f"{path} is closed")


def attempt(
    conn: sqlite3.Connection,
    work: Callable[[sqlite3.Connection], Any],
    savepoint: str | None,
    context: str,
) -> tuple[bool, Any]:
    """(True, value) or (False, store error) of ``work`` inside the current
    transaction. Under ``savepoint`` a failure rolls back only its own rows;
    without one the caller rolls the transaction back. A savepoint that
    cannot be rolled back fails the whole transaction (it is raised)."""
    if savepoint is not None:
        conn.execute(f"SAVEPOINT {savepoint}")
    try:
        value = work(conn)
    except Exception as exc:
        if savepoint is not None:
            conn.execute(f"ROLLBACK TO {savepoint}")
            conn.execute(f"RELEASE {savepoint}")
        return False, store_error(exc, context, WriteFailedError)
    if savepoint is not None:
        conn.execute(f"RELEASE {savepoint}")
    return True, value
