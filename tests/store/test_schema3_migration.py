"""Schema 2 -> 3 (PD-42, PD-40): arrival numbers and records in the current
form, on the committed legacy fixture (``tests/fixtures/legacy``, copied to
a temporary directory first: the fixture itself is never opened).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    FileBlobStore,
    InputId,
    InputLifecycleState,
    LogicalRuntimeId,
    RuntimeSessionAdapter,
    SqliteRuntimeStore,
)
from meerkat_runtime.store import records, sqlite_schema
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.store.integrity import frame_problem
from meerkat_runtime.store.sqlite_schema import SCHEMA_VERSION
from tests.store.test_wire_legacy import DONE, EXPECTED, LEGACY, PENDING, copy_legacy


def open_and_close(db: Path) -> None:
    """Opened off the event loop, so a busy file is waited for."""
    store = SqliteRuntimeStore(db)
    asyncio.run(store.close())


def user_version(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def is_framed(data: bytes) -> bool:
    """Written by this version: the checksum suffix is there and matches
    (a record of before framing ends with ``}`` or ``"``)."""
    return data[-1:] not in (b"}", b'"') and frame_problem(data) is None


def test_the_fixture_is_schema_2_with_unframed_records_in_the_old_form() -> None:
    """What the migration starts from (read-only: nothing is written)."""
    uri = f"{(LEGACY / 'schema2.sqlite').resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        states = [
            bytes(d)
            for (d,) in conn.execute("SELECT state_json FROM runtime_input_states")
        ]
    assert states
    assert not any(is_framed(d) for d in states)
    assert all(b'"from_state"' in d for d in states)


def test_opening_rewrites_every_record_in_the_current_form(tmp_path: Path) -> None:
    """After opening: schema 3, every record (inputs, receipts, phases) framed
    with a matching checksum, history under ``from``/``to``, both counts
    written."""
    db, _ = copy_legacy(tmp_path)
    open_and_close(db)
    assert user_version(db) == SCHEMA_VERSION == 4
    inputs = [
        bytes(d) for (d,) in rows(db, "SELECT state_json FROM runtime_input_states")
    ]
    receipts = [
        bytes(d)
        for (d,) in rows(db, "SELECT receipt_json FROM runtime_boundary_receipts")
    ]
    phases = [
        bytes(d) for (d,) in rows(db, "SELECT runtime_state_json FROM runtime_states")
    ]
    assert (len(inputs), len(receipts), len(phases)) == (6, 3, 2)
    assert all(is_framed(d) for d in inputs + receipts + phases)
    for data in inputs:
        record = json.loads(data)
        assert {"attempt_count", "recovery_count"} <= set(record)
        for entry in record["history"]:
            assert set(entry) == {"timestamp", "from", "to", "reason"}


def test_arrival_numbers_follow_the_old_id_order(tmp_path: Path) -> None:
    """Schema 2 loaded by input id: that order is what the file knew."""
    db, _ = copy_legacy(tmp_path)
    open_and_close(db)
    for runtime, kind in ((DONE, "consumed"), (PENDING, "queued")):
        loaded = rows(
            db,
            "SELECT input_id FROM runtime_input_states "
            f"WHERE runtime_id = '{runtime}' ORDER BY arrival",
        )
        assert [i for (i,) in loaded] == sorted(EXPECTED[kind][str(runtime)])
    numbers = [n for (n,) in rows(db, "SELECT arrival FROM runtime_input_states")]
    assert len(set(numbers)) == len(numbers)
    assert 0 not in numbers


def test_recovery_after_the_migration_returns_exactly_the_expected_inputs(
    tmp_path: Path,
) -> None:
    """The queued inputs come back queued, in order, and a new input queues
    behind them; the consumed ones stay consumed."""
    db, blobs = copy_legacy(tmp_path)

    async def body() -> None:
        async with SqliteRuntimeStore(db) as store:
            adapter = RuntimeSessionAdapter.persistent(store, FileBlobStore(str(blobs)))
            await adapter.register_session(DONE)
            await adapter.register_session(PENDING)
            queued = [InputId(i) for i in EXPECTED["queued"][str(PENDING)]]
            assert await adapter.list_active_inputs(PENDING) == queued
            assert await adapter.list_active_inputs(DONE) == []
            for raw in EXPECTED["consumed"][str(DONE)]:
                state = await adapter.input_state(DONE, InputId(raw))
                assert state is not None
                assert state.current_state() is InputLifecycleState.CONSUMED
            loaded = await store.load_input_states(LogicalRuntimeId(str(PENDING)))
            assert [s.input_id for s in loaded] == queued
            await adapter.close()

    asyncio.run(body())


def test_a_damaged_legacy_record_is_left_for_its_recovery_to_report(
    tmp_path: Path,
) -> None:
    """One record that does not decode does not keep the file from opening:
    it keeps its bytes (and gets its number), everything else is migrated,
    and loading its runtime names it, as before the migration."""
    db, _ = copy_legacy(tmp_path)
    victim = EXPECTED["queued"][str(PENDING)][1]
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE runtime_input_states SET state_json = "
            "CAST(replace(CAST(state_json AS TEXT), 'persisted_input', 'persisted_inpux') AS BLOB) "
            "WHERE input_id = ?",
            (victim,),
        )
        (damaged,) = conn.execute(
            "SELECT state_json FROM runtime_input_states WHERE input_id = ?", (victim,)
        ).fetchone()
    open_and_close(db)
    assert user_version(db) == SCHEMA_VERSION
    after = dict(rows(db, "SELECT input_id, state_json FROM runtime_input_states"))
    assert after.pop(victim) == damaged
    assert all(is_framed(bytes(d)) for d in after.values())

    async def body() -> None:
        async with SqliteRuntimeStore(db) as store:
            with pytest.raises(RuntimeStoreError.Corrupt) as failure:
                await store.load_input_states(LogicalRuntimeId(str(PENDING)))
            assert victim in str(failure.value)
            done = await store.load_input_states(LogicalRuntimeId(str(DONE)))
            assert len(done) == 3

    asyncio.run(body())


def test_a_failing_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction: a failure after the inputs were rewritten (here, in
    the receipts) leaves the file as it was, at schema 2."""
    db, _ = copy_legacy(tmp_path)
    before = rows(db, "SELECT * FROM runtime_input_states ORDER BY input_id")

    def broken(_receipt: object) -> bytes:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(records, "encode_receipt", broken)
    with pytest.raises(Exception, match="disk on fire"):
        open_and_close(db)
    assert user_version(db) == 2
    assert rows(db, "SELECT * FROM runtime_input_states ORDER BY input_id") == before


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    db, _ = copy_legacy(tmp_path)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    with pytest.raises(sqlite_schema.SchemaTooNewError):
        open_and_close(db)
    assert db.read_bytes() == before
