"""``meerkat-runtime audit`` of a SQLite file and of a PostgreSQL store:
the same exit statuses (0 clean, 1 wrong content, 2 unreadable), and every
runtime's owner, epoch and lease expiry in the text and in ``--json``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msgspec
import pytest

from meerkat_runtime.cli import main
from meerkat_runtime.input_state import InputState
from meerkat_runtime.store import SqliteRuntimeStore, records
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.testing.conformance import A, B, rich_state
from tests.store.postgres import dsn_url

OWNER = "worker-7"
TTL = 600.0


def _illegal(state: InputState) -> InputState:
    """``state`` with its history cut short: the replay cannot reach it."""
    record = msgspec.structs.replace(state.to_record(), history=[])
    return InputState.from_record(record)


async def _fill(store: RuntimeStore, *, illegal: bool = False) -> int:
    """Runtime A owned by OWNER (the epoch is returned), runtime B never
    claimed; with ``illegal``, B holds a record whose history is wrong."""
    epoch = await store.claim(A, OWNER, TTL)
    await store.persist_input_state(A, rich_state(2))
    state = rich_state(3)
    await store.persist_input_state(B, _illegal(state) if illegal else state)
    return epoch


def _sqlite(path: Path, *, illegal: bool = False) -> int:
    async def run() -> int:
        store = SqliteRuntimeStore(path)
        try:
            return await _fill(store, illegal=illegal)
        finally:
            await store.close()

    return asyncio.run(run())


def _postgres(dsn: str, schema: str, *, illegal: bool = False) -> int:
    async def run() -> int:
        store = await PostgresRuntimeStore.open(dsn, schema=schema)
        try:
            return await _fill(store, illegal=illegal)
        finally:
            await store.close()

    return asyncio.run(run())


def _check_leases(text: str, report: dict[str, object], epoch: int) -> None:
    """A's owner, epoch and expiry in the text and the JSON; B unowned."""
    assert f"owner: {OWNER} (epoch {epoch}, held, until " in text
    assert "owner: (never claimed)" in text
    runtimes = {r["runtime_id"]: r for r in report["runtimes"]}  # type: ignore[attr-defined]
    lease = runtimes[str(A)]["lease"]
    assert (lease["owner"], lease["epoch"], lease["released"]) == (OWNER, epoch, False)
    assert time.time() < lease["expires_at"] <= time.time() + TTL + 60
    assert runtimes[str(B)]["lease"] is None


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().out


# ---------------------------------------------------------------- SQLite


def test_audit_of_a_sqlite_file_shows_owners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.db"
    epoch = _sqlite(path)
    status, text = _run(["audit", str(path)], capsys)
    assert status == 0
    assert text.count("audit: clean") == 2
    status, out = _run(["audit", "--json", str(path)], capsys)
    assert status == 0
    _check_leases(text, json.loads(out), epoch)


def test_audit_refuses_a_schema_for_a_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.db"
    _sqlite(path)
    assert main(["audit", str(path), "--schema", "meerkat"]) == 2
    assert "--schema names a PostgreSQL schema" in capsys.readouterr().err


# ---------------------------------------------------------------- PostgreSQL


def test_audit_of_a_clean_postgresql_store_exits_0_with_owners(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    epoch = _postgres(pg_dsn, pg_schema)
    target = ["audit", dsn_url(pg_dsn), "--schema", pg_schema]
    status, text = _run(target, capsys)
    assert status == 0
    assert text.count("audit: clean") == 2
    status, out = _run([*target, "--json"], capsys)
    assert status == 0
    report = json.loads(out)
    assert report["clean"] is True
    assert pg_schema in report["database"]
    _check_leases(text, report, epoch)


def test_audit_of_a_postgresql_store_with_a_violation_exits_1(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _postgres(pg_dsn, pg_schema, illegal=True)
    target = ["audit", dsn_url(pg_dsn), "--schema", pg_schema]
    status, text = _run(target, capsys)
    assert status == 1
    assert f"runtime {str(B)!r}: audit: 1 violation" in text
    assert "replay_equals_record" in text
    status, out = _run([*target, "--json"], capsys)
    assert status == 1
    runtimes = {r["runtime_id"]: r for r in json.loads(out)["runtimes"]}
    assert runtimes[str(A)]["clean"] is True
    assert runtimes[str(B)]["clean"] is False


def test_audit_of_a_postgresql_row_that_does_not_decode_exits_1(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _postgres(pg_dsn, pg_schema)
    store = PostgresRuntimeStore(pg_dsn, schema=pg_schema)
    store.corrupt_row(records.INPUTS, A, "broken-input", b"not a record")
    assert main(["audit", dsn_url(pg_dsn), "--schema", pg_schema]) == 1
    assert "broken-input" in capsys.readouterr().err


def test_audit_of_an_unreadable_postgresql_target_exits_2(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", dsn_url(pg_dsn), "--schema", "nothing_here"]) == 2
    assert "no meerkat store" in capsys.readouterr().err
    assert main(["audit", dsn_url(pg_dsn), "--schema", "Not-A-Name"]) == 2
    assert "schema must be a lower-case identifier" in capsys.readouterr().err
