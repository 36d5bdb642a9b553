"""``meerkat-runtime audit`` and recovery against the demo's database, and
two tampered copies of it (issue 14's "Found").

The tampered records are rewritten through the store's own record encoder,
so their checksums are valid: what catches them is the semantic check,
never the CRC.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from meerkat_runtime import LogicalRuntimeId
from meerkat_runtime.audit import audit_database
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.cli import main
from meerkat_runtime.demo import DB_NAME
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import CorruptError, InternalError
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.input_state import (
    InputState,
    InputStateHistoryEntry,
    InputStateRecord,
)
from meerkat_runtime.store import SqliteRuntimeStore, records
from meerkat_runtime.store.integrity import frame_problem

_S = InputLifecycleState
Tamper = Callable[[InputStateRecord], InputStateRecord]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["demo", "--keep", "--dir", str(directory)]) == 0
    return directory / DB_NAME


def _copy(source: Path, target: Path) -> Path:
    """A self-contained copy (the WAL folded in)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target


def _consumed_rows(path: Path) -> list[tuple[str, InputState]]:
    """(runtime id, state) of every input consumed through a run."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            f"SELECT runtime_id, input_id, state_json FROM {records.INPUTS}"
        ).fetchall()
    finally:
        conn.close()
    found = []
    for rid, iid, data in rows:
        state = records.decode_state(rid, iid, data)
        if state.current_state() is _S.CONSUMED and state.last_run_id() is not None:
            found.append((rid, state))
    return sorted(found, key=lambda pair: str(pair[1].input_id))


def _rewrite(path: Path, runtime_id: str, state: InputState, tamper: Tamper) -> None:
    """Store ``tamper(record)`` in place of the input's row, through the
    store's encoder: the row carries a valid checksum."""
    record = tamper(state.to_record())
    encoded = records.encode_state(InputState.from_record(record))
    assert frame_problem(encoded) is None  # a valid checksum
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                f"UPDATE {records.INPUTS} SET state_json = ? "
                "WHERE runtime_id = ? AND input_id = ?",
                (encoded, runtime_id, str(state.input_id)),
            )
    finally:
        conn.close()


def _requeued_after_consumption(record: InputStateRecord) -> InputStateRecord:
    """(a): an extra step consumed -> queued; the outcome stays Consumed."""
    last = record.history[-1]
    extra = InputStateHistoryEntry(
        timestamp=last.timestamp,
        from_state=_S.CONSUMED,
        to_state=_S.QUEUED,
        reason="recover_requeue",
    )
    return msgspec.structs.replace(
        record, current_state=_S.QUEUED, history=[*record.history, extra]
    )


def _applied_without_staging(record: InputStateRecord) -> InputStateRecord:
    """(b): queued -> applied (staged skipped) and attempt_count 7."""
    history = list(record.history)
    staged = next(i for i, e in enumerate(history) if e.to_state is _S.STAGED)
    applied = history[staged + 1]
    assert applied.to_state is _S.APPLIED
    skipped = msgspec.structs.replace(applied, from_state=_S.QUEUED)
    history[staged : staged + 2] = [skipped]
    return msgspec.structs.replace(record, history=history, attempt_count=7)


@pytest.fixture
def tampered_a(demo_db: Path, tmp_path: Path) -> tuple[Path, str, InputState]:
    path = _copy(demo_db, tmp_path / "a.sqlite3")
    rid, state = _consumed_rows(path)[0]
    _rewrite(path, rid, state, _requeued_after_consumption)
    return path, rid, state


@pytest.fixture
def tampered_b(demo_db: Path, tmp_path: Path) -> tuple[Path, str, InputState]:
    path = _copy(demo_db, tmp_path / "b.sqlite3")
    rid, state = _consumed_rows(path)[-1]
    _rewrite(path, rid, state, _applied_without_staging)
    return path, rid, state


# ---------------------------------------------------------------- audit


def test_the_demo_database_passes_with_every_guard_re_evaluated(
    demo_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audits = audit_database(demo_db)
    assert audits
    assert all(a.clean for a in audits)
    assert sum(a.inputs for a in audits) >= 10
    assert [n for a in audits for n in a.notes] == []  # parameters recorded
    assert main(["audit", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert out.count("audit: clean") == len(audits)


def _violations(path: Path, input_id: str) -> dict[str, str]:
    """rule -> text, of the violations naming ``input_id``."""
    found = [v for a in audit_database(path) for v in a.violations]
    assert found
    assert all(v.input_id == input_id for v in found), found
    return {v.rule: str(v) for v in found}


def test_audit_finds_the_consumed_input_put_back_in_the_queue(
    tampered_a: tuple[Path, str, InputState],
) -> None:
    path, _, state = tampered_a
    rules = _violations(path, str(state.input_id))
    step = len(state.history())  # the appended entry
    assert f"step {step}" in rules["terminal_is_final"]
    assert "consumed → queued (recover_requeue)" in rules["terminal_is_final"]
    assert "terminal_iff_outcome" in rules  # queued, outcome still Consumed
    assert "recovery would run it a second time" in rules["receipt_names_waiting_input"]


def test_audit_finds_the_input_applied_without_staging(
    tampered_b: tuple[Path, str, InputState],
) -> None:
    path, _, state = tampered_b
    rules = _violations(path, str(state.input_id))
    skipped = rules["no_such_transition"]
    assert "step 1: no_such_transition: queued → applied (mark_applied)" in skipped
    assert (
        "attempt_count = 7 is outside its declared range 0..3" in rules["field_range"]
    )
    assert "staged_at_most_max_attempts" in rules


def test_audit_command_exits_1_and_reports_json(
    tampered_a: tuple[Path, str, InputState], capsys: pytest.CaptureFixture[str]
) -> None:
    path, rid, state = tampered_a
    assert main(["audit", str(path)]) == 1
    text = capsys.readouterr().out
    assert (
        f"input {state.input_id} step {len(state.history())}: terminal_is_final" in text
    )
    assert main(["audit", "--json", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is False
    (runtime,) = [r for r in report["runtimes"] if not r["clean"]]
    assert runtime["runtime_id"] == rid
    assert {v["rule"] for v in runtime["violations"]} >= {"terminal_is_final"}


def test_audit_command_exits_2_on_a_file_it_cannot_read(tmp_path: Path) -> None:
    assert main(["audit", str(tmp_path / "missing.sqlite3")]) == 2
    assert main(["audit"]) == 2


def test_inspect_shows_a_one_line_verdict_per_runtime(
    tampered_b: tuple[Path, str, InputState], capsys: pytest.CaptureFixture[str]
) -> None:
    path, rid, _ = tampered_b
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    verdicts = [line for line in out.splitlines() if "audit:" in line]
    assert len(verdicts) == len(audit_database(path))
    assert sum("violation" in line for line in verdicts) == 1
    assert any(rid in line and "violation" in line for line in verdicts)


# ---------------------------------------------------------------- recovery


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [
            row
            for table in (records.INPUTS, records.RECEIPTS, records.STATES)
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
        ]
    finally:
        conn.close()


@pytest.mark.parametrize("which", ["tampered_a", "tampered_b"])
def test_recovery_refuses_a_tampered_runtime_and_changes_nothing(
    which: str, request: pytest.FixtureRequest
) -> None:
    path, rid, state = request.getfixturevalue(which)
    before = _rows(path)

    async def recover() -> PersistentRuntimeDriver:
        store = SqliteRuntimeStore(path)
        driver = PersistentRuntimeDriver(
            LogicalRuntimeId(rid), store, MemoryBlobStore()
        )
        try:
            with pytest.raises(InternalError) as caught:
                await driver.recover()
        finally:
            await store.close()
        cause = caught.value.__cause__
        assert isinstance(cause, CorruptError)
        assert f"runtime {rid!r}" in str(cause)
        assert f"input {str(state.input_id)!r}" in str(cause)
        assert "breaks " in str(cause)
        return driver

    driver = asyncio.run(recover())
    assert driver.active_input_ids() == []  # nothing entered memory
    assert _rows(path) == before  # nor the file
