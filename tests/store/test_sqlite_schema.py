"""The SQLite store's file: schema versions and migration, reopening, WAL and
the ``synchronous`` setting (S-10 and the port's additions). The shared
contract is covered by the conformance suite (test_store_conformance.py).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from meerkat_runtime import (
    RuntimeState,
)
from meerkat_runtime.store import (
    SqliteRuntimeStore,
)
from meerkat_runtime.store.base import (
    RuntimeStoreError,
    SessionDelta,
)
from meerkat_runtime.store.records import (
    INPUTS,
    RECEIPTS,
    SNAPSHOTS,
    STATES,
    encode_state,
)
from meerkat_runtime.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, apply_step
from meerkat_runtime.testing.conformance import receipt_for, rich_state
from tests.store.sqlite import (
    A,
    make_newer_file,
    queued_state,
    run,
    user_version,
)
from tests.store.test_wire_legacy import EXPECTED as LEGACY_EXPECTED
from tests.store.test_wire_legacy import PENDING as LEGACY_PENDING
from tests.store.test_wire_legacy import copy_legacy

# ---------------------------------------------------------------- schema


def test_newer_schema_is_refused_with_both_versions(tmp_path: Path) -> None:
    """Schema versioning: a file written by a newer release is refused with
    an error naming its version, the supported one, and the remedy."""
    path = tmp_path / "future.db"
    newer = SCHEMA_VERSION + 41
    make_newer_file(path, newer)
    with pytest.raises(RuntimeStoreError) as err:
        SqliteRuntimeStore(path)
    message = str(err.value)
    assert str(newer) in message
    assert f"({SCHEMA_VERSION})" in message
    assert "upgrade" in message
    assert user_version(path) == newer


def test_newer_schema_file_is_not_modified(tmp_path: Path) -> None:
    """Schema versioning: refusing a newer file must not change it (an older
    release must not touch what it does not understand)."""
    path = tmp_path / "future.db"
    make_newer_file(path, SCHEMA_VERSION + 1)
    before = path.read_bytes()
    with pytest.raises(RuntimeStoreError):
        SqliteRuntimeStore(path)
    assert sorted(os.listdir(tmp_path)) == ["future.db"]
    assert path.read_bytes() == before


def test_fresh_file_gets_current_schema(tmp_path: Path) -> None:
    """S-10: a new file has every runtime table and the current version."""
    path = tmp_path / "fresh.db"

    async def body() -> None:
        store = SqliteRuntimeStore(path)
        await store.close()

    run(body)
    assert user_version(path) == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    try:
        tables = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    finally:
        conn.close()
    assert {INPUTS, RECEIPTS, STATES, SNAPSHOTS} <= tables


def test_version_1_file_is_migrated_with_its_rows(tmp_path: Path) -> None:
    """Schema versioning: a file of schema 1 (before recovery epochs) opens
    as the current version with every row intact and its stored recovery
    count as written; the first recovery commit then counts from there."""
    path = tmp_path / "v1.db"
    state = queued_state()
    state.recovery_count = 3
    conn = sqlite3.connect(path)
    try:
        for step in MIGRATIONS[1]:
            apply_step(conn, step)
        conn.execute(
            f"INSERT INTO {INPUTS} VALUES (?, ?, ?)",
            (str(A), str(state.input_id), encode_state(state)),
        )
        conn.execute(f"INSERT INTO {STATES} VALUES (?, ?)", (str(A), b'"idle"'))
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    finally:
        conn.close()

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            assert await store.load_input_states(A) == [state]
            state.recovery_count = 4
            await store.commit_recovery(A, RuntimeState.IDLE, [], [state])
        async with SqliteRuntimeStore(path) as store:
            assert await store.load_input_states(A) == [state]

    run(body)
    assert user_version(path) == SCHEMA_VERSION == 4


@pytest.mark.parametrize("start", [0, 1, 2])
def test_two_stores_migrating_one_file_at_once_both_open(
    tmp_path: Path, start: int
) -> None:
    """Schema versioning with several openers: two stores that both read an
    old version (a new file, schema 1, or the schema-2 fixture with its
    records) while a third connection holds the write lock must not both
    migrate; the second finds the work done. (A migration that ran twice
    failed with "duplicate column name".)"""
    path = tmp_path / "shared.db"
    if start == 2:
        path, _ = copy_legacy(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    for version in range(1, start + 1 if start < 2 else 1):
        for step in MIGRATIONS[version]:
            apply_step(holder, step)
    holder.execute(f"PRAGMA user_version = {start}")
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("BEGIN IMMEDIATE")  # both openers now wait to migrate
    outcomes: dict[str, str] = {}

    def open_store(name: str) -> None:
        try:
            run(SqliteRuntimeStore(path).close)
            outcomes[name] = "opened"
        except RuntimeStoreError as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=open_store, args=(n,)) for n in "AB"]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # let both read the old version and queue on the lock
    holder.execute("COMMIT")
    holder.close()
    for thread in threads:
        thread.join()
    assert outcomes == {"A": "opened", "B": "opened"}
    assert user_version(path) == SCHEMA_VERSION
    if start == 2:  # numbered once, in the old id order (PD-42)
        with closing(sqlite3.connect(path)) as conn:
            numbered = conn.execute(
                f"SELECT input_id FROM {INPUTS} WHERE runtime_id = ? ORDER BY arrival",
                (str(LEGACY_PENDING),),
            ).fetchall()
        assert [i for (i,) in numbered] == LEGACY_EXPECTED["queued"][
            str(LEGACY_PENDING)
        ]


def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    """S-8 / S-10: everything written survives close and reopen, and a
    reopened current-version file is not migrated again."""
    path = tmp_path / "runtime.db"
    state = rich_state(4)
    run_id = state.last_run_id()
    assert run_id is not None
    receipt = receipt_for(run_id, [state.input_id])

    async def write() -> None:
        async with SqliteRuntimeStore(path) as store:
            await store.atomic_apply(
                A, SessionDelta(session_snapshot=b"snap"), receipt, [state]
            )
            await store.persist_runtime_state(A, RuntimeState.RETIRED)

    async def read() -> None:
        async with SqliteRuntimeStore(path) as store:
            assert await store.load_input_states(A) == [state]
            assert await store.load_boundary_receipt(A, run_id, 0) == receipt
            assert await store.load_session_snapshot(A) == b"snap"
            assert await store.load_runtime_state(A) is RuntimeState.RETIRED

    run(write)
    run(read)
    assert user_version(path) == SCHEMA_VERSION


# ---------------------------------------------------------------- pragmas


def test_file_database_uses_wal(tmp_path: Path) -> None:
    """S-10: file databases run in WAL mode (readers never block the writer)."""
    path = tmp_path / "runtime.db"

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            await store.persist_input_state(A, queued_state())
            conn = sqlite3.connect(path)
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            finally:
                conn.close()
            assert mode == "wal"

    run(body)


@pytest.mark.parametrize(
    ("requested", "expected"), [(None, 2), ("FULL", 2), ("NORMAL", 1)]
)
def test_synchronous_setting(
    tmp_path: Path, requested: str | None, expected: int
) -> None:
    """S-10: ``synchronous`` is FULL by default (an acknowledged write
    survives power loss) and NORMAL when asked; it applies to the writer."""

    async def body() -> None:
        store = (
            SqliteRuntimeStore(tmp_path / "runtime.db")
            if requested is None
            else SqliteRuntimeStore(tmp_path / "runtime.db", synchronous=requested)  # type: ignore[arg-type]
        )
        try:
            value = store.writer_setting("synchronous")
            assert value == expected
            assert store.synchronous == (requested or "FULL")
        finally:
            await store.close()

    run(body)


@pytest.mark.parametrize("bad", ["EXTRA", "", "fast"])
def test_bad_synchronous_value_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteRuntimeStore(tmp_path / "runtime.db", synchronous=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "runtime.db").exists()
