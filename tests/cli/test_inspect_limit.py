"""``inspect`` streams: each runtime's rows are decoded one at a time and
counted, only the first ``--limit`` are kept and shown, and the counts
always cover every row (issue 12: ``inspect`` held every input of a file in
memory at once, over 5 GB for a million)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from meerkat_runtime import LogicalRuntimeId, PromptInput
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.cli import main
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.inspection import load_database
from meerkat_runtime.store import SqliteRuntimeStore, records

RID = LogicalRuntimeId("many")
TOTAL = 7


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "runtime.db"

    async def build() -> None:
        store = SqliteRuntimeStore(path)
        driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
        for n in range(TOTAL):
            assert (await driver.accept_input(PromptInput.new(f"p{n}"))).is_accepted()
        await store.close()

    asyncio.run(build())
    return path


def test_a_limit_keeps_the_first_rows_and_counts_them_all(database: Path) -> None:
    (view,) = load_database(database, limit=2)
    assert len(view.inputs) == 2
    assert view.input_total() == TOTAL
    assert view.input_counts() == {"queued": TOTAL}
    (everything,) = load_database(database)
    assert [s.input_id for s in everything.inputs][:2] == [
        s.input_id for s in view.inputs
    ]


def test_inspect_shows_the_limit_and_the_totals(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--limit", "3", str(database)]) == 0
    out = capsys.readouterr().out
    assert f"(the first 3 of {TOTAL}: see --limit)" in out
    assert f"{TOTAL} queued" in out
    assert main(["inspect", "--limit", "3", "--json", str(database)]) == 0
    (runtime,) = json.loads(capsys.readouterr().out)["runtimes"]
    assert runtime["input_count"] == TOTAL
    assert runtime["inputs_by_state"] == {"queued": TOTAL}
    assert len(runtime["inputs"]) == 3


def test_a_damaged_row_past_the_limit_is_still_reported(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(database)
    (last,) = conn.execute(
        f"SELECT input_id FROM {records.INPUTS} ORDER BY input_id DESC LIMIT 1"
    ).fetchone()
    conn.execute(
        f"UPDATE {records.INPUTS} SET state_json = ? WHERE input_id = ?",
        (b"{not json", last),
    )
    conn.commit()
    conn.close()
    assert main(["inspect", "--limit", "1", str(database)]) == 1
    assert last in capsys.readouterr().err


def test_a_negative_limit_is_a_usage_error(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--limit", "-1", str(database)]) == 2
    assert "expected a count (0 or more), not '-1'" in capsys.readouterr().err
