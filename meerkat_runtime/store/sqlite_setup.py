"""Opening a SQLite store's file: connections, the schema, WAL mode.

Several processes may open one new file at once. SQLite does not call its
busy handler for every lock a schema or journal-mode change takes, so a
setup step that finds the file busy is tried again for up to
``BUSY_TIMEOUT_MS`` - but only where waiting is allowed: never on an event
loop's thread (a sleep there would freeze every session of the process).
There a busy file is ``Unavailable`` at once, and the caller uses
``await SqliteRuntimeStore.open(...)``, which sets up in a worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from meerkat_runtime.store.base import RuntimeStoreError, StoreInternalError
from meerkat_runtime.store.sqlite_boundary import Transaction, Translated, is_busy
from meerkat_runtime.store.sqlite_leases import create_leases_table
from meerkat_runtime.store.sqlite_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SchemaTooNewError,
    apply_step,
)

Synchronous = Literal["FULL", "NORMAL", "OFF"]
BUSY_TIMEOUT_MS = 5000
SETUP_RETRY_S = 0.01  # pause between two setup attempts on a busy file


def on_event_loop_thread() -> bool:
    """Whether this thread runs an event loop (where nothing may sleep)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def checked_path(path: object) -> str:
    """The store's path as text; refused by name when it is not a path, or
    when its directory does not exist (the store creates no directories: a
    typo would otherwise leave a database somewhere unexpected)."""
    if not isinstance(path, str | Path):
        raise TypeError(
            f"SqliteRuntimeStore path must be a str or Path, not {type(path).__name__}"
        )
    text = str(path)
    if text == ":memory:":
        return text
    directory = Path(text).parent
    if not directory.is_dir():
        raise StoreInternalError(
            f"cannot open {text}: its directory {directory} does not exist"
        )
    return text


def connect(
    target: str, *, uri: bool, path: str, synchronous: Synchronous, busy_ms: int
) -> sqlite3.Connection:
    with Translated(f"cannot open {path}", StoreInternalError):
        conn = sqlite3.connect(
            target, uri=uri, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
        except BaseException:
            conn.close()
            raise
    return conn


def prepare(conn: sqlite3.Connection, path: str, *, wal: bool, wait: bool) -> None:
    """Migrate the schema, then switch to WAL (after the version check, so
    a refused newer file is left untouched)."""
    _retrying(lambda: migrate(conn, path), path, wait)
    _retrying(lambda: leases_table(conn, path), path, wait)
    if wal:
        _retrying(lambda: enable_wal(conn, path), path, wait)


def _retrying(step: Callable[[], None], path: str, wait: bool) -> None:
    """Run a setup step, waiting out another connection's lock if ``wait``
    (see the module notes); busy is told by SQLite's result code."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            step()
            return
        except RuntimeStoreError as exc:
            if not is_busy(exc):
                raise
            if not wait:
                exc.add_note(
                    f"{path} is being set up by another connection; "
                    "`await SqliteRuntimeStore.open(...)` waits for it"
                )
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(SETUP_RETRY_S)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a newer file without writing to it; otherwise migrate under
    the write lock, reading the version again there: another store or
    process may have migrated meanwhile, and a migration (ALTER TABLE)
    must not run twice."""
    context = f"cannot prepare the schema of {path}"
    with Translated(context, StoreInternalError):
        if _refuse_newer(conn, path) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
    with Transaction(conn, context, StoreInternalError):
        version = _refuse_newer(conn, path)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for step in MIGRATIONS[target]:
                apply_step(conn, step)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def leases_table(conn: sqlite3.Connection, path: str) -> None:
    """The lease table (PD-36), whatever the schema version (sqlite_leases)."""
    with Translated(f"cannot prepare the lease table of {path}", StoreInternalError):
        create_leases_table(conn)


def _refuse_newer(conn: sqlite3.Connection, path: str) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path} has schema version {version}, newer than this "
            f"meerkat-runtime supports ({SCHEMA_VERSION}); upgrade meerkat-runtime"
        )
    return version


def enable_wal(conn: sqlite3.Connection, path: str) -> None:
    """SQLite keeps the old journal mode where WAL is impossible (some
    network file systems): refuse such a file, since the store's
    concurrency rests on WAL (readers beside the writer, and a write
    connection that only ever waits at BEGIN)."""
    with Translated(f"cannot open {path}", StoreInternalError):
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if mode.lower() != "wal":
        raise StoreInternalError(
            f"cannot use {path}: SQLite could not switch it to WAL "
            f"mode (journal_mode stays {mode!r}); put it on a local file system"
        )
