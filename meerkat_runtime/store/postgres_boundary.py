"""The PostgreSQL store's error boundary: the only place that looks at
psycopg's exceptions and turns them into store errors (PD-51).

Classified by SQLSTATE class, never by message:

* the connection is gone or could not be had (no SQLSTATE: the socket
  closed, the pool timed out), class 08 (connection exception), 57 (operator
  intervention: admin or crash shutdown, cannot connect now, a cancelled
  statement), 53 (insufficient resources: disk full, too many connections)
  and 40 (transaction rollback: serialization failure, deadlock):
  ``Unavailable``, retryable;
* class 23 (integrity constraint violation): ``Conflict``;
* XX001 / XX002 (data or index corrupted): ``Corrupt``;
* anything else: the failure of what was being done (``WriteFailed`` /
  ``ReadFailed`` / ``Internal``).

``lost`` says whether an error means the connection went away mid-way: then
a write's outcome is unknown and is resolved before anyone is answered.
"""

from __future__ import annotations

import psycopg

from meerkat_runtime.store.base import (
    ConflictError,
    CorruptError,
    RuntimeStoreError,
    UnavailableError,
    as_store_error,
)
from meerkat_runtime.store.redaction import redact

_UNAVAILABLE_CLASSES = ("08", "40", "53", "57")
_CORRUPT = ("XX001", "XX002")

Failure = type[RuntimeStoreError]


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


def is_unavailable(exc: BaseException) -> bool:
    """An error that trying again later, on a new connection, may cure."""
    if not isinstance(exc, psycopg.Error):
        return isinstance(exc, UnavailableError)
    state = _sqlstate(exc)
    if state is None:  # client side: no server answered
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state[:2] in _UNAVAILABLE_CLASSES


def lost(exc: BaseException, conn: psycopg.AsyncConnection[object] | None) -> bool:
    """The connection broke: what was sent on it may or may not have been
    executed (and committed) by the server."""
    if conn is not None and (conn.broken or conn.closed):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = _sqlstate(exc)
    if state is None:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state[:2] == "08" or state in ("57P01", "57P02", "57P03")


def store_error(
    exc: BaseException, context: str, failure: Failure
) -> RuntimeStoreError:
    """``exc`` as a store error (see the module notes)."""
    if isinstance(exc, RuntimeStoreError):
        return exc
    if not isinstance(exc, psycopg.Error):
        if isinstance(exc, Exception):
            return as_store_error(exc)
        return failure(redact(f"{context}: {type(exc).__name__}: {exc}"))
    state = _sqlstate(exc)
    # libpq quotes the conninfo, password and all, in some messages.
    message = redact(f"{context}: {str(exc).strip() or type(exc).__name__}")
    if is_unavailable(exc):
        return UnavailableError(message)
    if state is not None and state[:2] == "23":
        return ConflictError(message)
    if state in _CORRUPT:
        return CorruptError(message)
    return failure(message)
