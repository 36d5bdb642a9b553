"""The ``meerkat-runtime`` command: demo, inspect, verify, diagrams.

The demo runs once per module (``--keep --dir``): its child process is
SIGKILLed for real, and the kept database feeds the ``inspect`` tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from meerkat_runtime import LogicalRuntimeId, PromptInput, __version__, cli
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.cli import main
from meerkat_runtime.demo import (
    DB_NAME,
    Journal,
    durable_claim,
    integrity_claim,
)
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.ids import InputId
from meerkat_runtime.input_state import (
    InputState,
    InputStateHistoryEntry,
    InputStateRecord,
)
from meerkat_runtime.inspection import (
    RuntimeView,
    load_database,
    print_views,
    runtimes_table,
)
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store import SqliteRuntimeStore, records

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoRun:
    status: int
    output: str
    database: Path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    directory = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["demo", "--keep", "--dir", str(directory)])
    return DemoRun(status, out.getvalue(), directory / DB_NAME)


# ---------------------------------------------------------------- help


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "inspect", "verify", "diagrams"):
        assert command in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "meerkat-runtime"
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-m", "meerkat_runtime.cli"]
    )
    done = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "inspect" in done.stdout
    assert "demo" in done.stdout


# ---------------------------------------------------------------- demo


def test_demo_succeeds_and_explains_what_happened(demo_run: DemoRun) -> None:
    assert demo_run.status == 0, demo_run.output
    out = demo_run.output
    assert "Deduplicated" in out
    assert "superseded" in out
    assert "retry" in out.lower()
    assert "SIGKILL" in out
    assert "crash" in out.lower()
    assert "nothing lost" in out.lower()
    assert "✘" not in out.split("What you just saw")[-1]  # every claim held


def test_demo_keeps_a_consistent_database(demo_run: DemoRun) -> None:
    views = {v.runtime_id: v for v in load_database(demo_run.database)}
    assert set(views) == {"support-bot", "ops-watch", "billing-agent"}
    states = [s.current_state().value for v in views.values() for s in v.inputs]
    assert states.count("superseded") == 1
    assert set(states) == {"consumed", "superseded"}
    billing = views["billing-agent"].inputs
    assert all(s.recovery_count == 1 for s in billing)


def test_demo_refuses_to_reuse_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / DB_NAME).write_text("old")
    assert main(["demo", "--dir", str(tmp_path)]) == 1
    assert str(tmp_path / DB_NAME) in capsys.readouterr().err


def test_durable_claim_fails_for_an_input_missing_after_the_crash(
    demo_run: DemoRun,
) -> None:
    views = load_database(demo_run.database)
    journal = _journal_of(views)
    stored = {str(s.input_id) for v in views for s in v.inputs}
    assert durable_claim(journal, stored).ok
    assert not durable_claim(journal, stored - {min(stored)}).ok


def test_integrity_claim_fails_for_a_lost_or_twice_applied_input(
    demo_run: DemoRun,
) -> None:
    views = load_database(demo_run.database)
    journal = _journal_of(views)
    assert integrity_claim(journal, views).ok
    lost = _journal_of(views)
    lost.acks.append({"input_id": "never-stored", "outcome": "accepted"})
    assert not integrity_claim(lost, views).ok
    assert not integrity_claim(journal, _with_a_second_receipt(views)).ok


def _journal_of(views: list[RuntimeView]) -> Journal:
    acks = [
        {"input_id": str(s.input_id), "outcome": "accepted", "role": ""}
        for v in views
        for s in v.inputs
    ]
    return Journal(acks=acks)


def _with_a_second_receipt(views: list[RuntimeView]) -> list[RuntimeView]:
    first = views[0]
    again = first.receipts[0]
    extra = RunBoundaryReceipt(
        run_id=again.run_id,
        boundary=again.boundary,
        contributing_input_ids=again.contributing_input_ids,
        message_count=again.message_count,
        sequence=again.sequence + 1,
    )
    doctored = RuntimeView(
        first.runtime_id, first.state, first.inputs, [*first.receipts, extra]
    )
    return [doctored, *views[1:]]


# ---------------------------------------------------------------- inspect


def test_inspect_shows_runtimes_inputs_and_receipts(
    demo_run: DemoRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(demo_run.database)]) == 0
    out = capsys.readouterr().out
    for text in (
        "Runtimes",
        "support-bot",
        "ops-watch",
        "billing-agent",
        "inputs and their timelines",
        "queue_accepted",
        "rollback_staged",
        "supersede",
        "boundary receipts",
        "run_checkpoint",
    ):
        assert text in out


def test_inspect_json_is_machine_readable(
    demo_run: DemoRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--json", str(demo_run.database)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["database"] == str(demo_run.database)
    runtimes = {r["runtime_id"]: r for r in data["runtimes"]}
    assert set(runtimes) == {"support-bot", "ops-watch", "billing-agent"}
    ops = runtimes["ops-watch"]
    assert set(ops) == {
        "runtime_id",
        "state",
        "input_count",
        "inputs_by_state",
        "receipt_count",
        "inbox_pending",
        "inputs",
        "receipts",
        "lease",
        "audit",
    }
    assert ops["input_count"] == len(ops["inputs"])
    assert sum(ops["inputs_by_state"].values()) == ops["input_count"]
    assert ops["lease"]["owner"] == "demo-worker"
    assert ops["audit"]["clean"] is True
    assert ops["state"] == "idle"
    first = ops["inputs"][0]
    for key in ("input_id", "current_state", "history", "persisted_input"):
        assert key in first
    assert {"from", "to", "reason", "timestamp"} <= set(first["history"][0])
    receipt = ops["receipts"][0]
    for key in ("run_id", "contributing_input_ids", "sequence", "boundary"):
        assert key in receipt


def test_inspect_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.sqlite3"
    assert main(["inspect", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "no such file" in err
    assert not missing.exists()


def test_inspect_a_sqlite_file_that_is_not_meerkat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.sqlite3"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
    assert main(["inspect", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{other} is not a meerkat database" in err
    with contextlib.closing(sqlite3.connect(other)) as conn:  # left untouched
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}


def test_inspect_a_text_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 20)
    assert main(["inspect", str(text)]) == 2
    err = capsys.readouterr().err
    assert f"{text} is not a meerkat database" in err
    assert "Traceback" not in err


def test_inspect_a_corrupt_row_prints_the_read_failure(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "corrupt.sqlite3"
    with (
        contextlib.closing(sqlite3.connect(demo_run.database)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
        target.execute(
            f"UPDATE {records.INPUTS} SET state_json = ? WHERE runtime_id = ?",
            (b"{broken", "ops-watch"),
        )
        target.commit()
    assert main(["inspect", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "Store read failed: corrupt record in runtime_input_states" in err
    assert "'ops-watch'" in err


def test_inspect_a_damaged_file_is_an_error_not_a_traceback(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review finding: damaged pages made inspect raise sqlite3's
    DatabaseError; it says what is wrong and exits 1 (damaged, as a bad
    record is)."""
    copy = tmp_path / "damaged.sqlite3"
    with (
        contextlib.closing(sqlite3.connect(demo_run.database)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    page = 4096
    data = bytearray(copy.read_bytes())
    data[2 * page : 6 * page] = b"\xa5" * (4 * page)  # pages 3-6: tables' b-trees
    copy.write_bytes(bytes(data))
    assert main(["inspect", str(copy)]) == 1
    err = capsys.readouterr().err
    assert str(copy) in err
    assert "Traceback" not in err
    # audit said 2 here (and 1 for a record that does not decode): both
    # commands now say 1 for a file read and found damaged.
    assert main(["audit", str(copy)]) == 1
    assert "the file is damaged" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["inspect", "audit"])
def test_inspect_and_audit_agree_on_exit_status(
    command: str, demo_run: DemoRun, tmp_path: Path
) -> None:
    """Review finding: a missing file was 1 from inspect, 2 from audit. The
    rule (README, "Exit status"): 2 when the target cannot be read at all,
    1 when what it holds is wrong, 0 otherwise."""
    assert main([command, str(tmp_path / "missing.sqlite3")]) == 2
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 20)
    assert main([command, str(notes)]) == 2
    copy = tmp_path / "corrupt.sqlite3"
    with (
        contextlib.closing(sqlite3.connect(demo_run.database)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
        target.execute(f"UPDATE {records.INPUTS} SET state_json = ?", (b"{broken",))
        target.commit()
    assert main([command, str(copy)]) == 1


def test_schema_is_refused_for_a_sqlite_file(
    demo_run: DemoRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review finding: ``--schema`` was silently ignored for a SQLite file."""
    database = str(demo_run.database)
    assert main(["inspect", database, "--schema", "foo"]) == 2
    captured = capsys.readouterr()
    assert "--schema" in captured.err
    assert captured.out == ""
    assert main(["inspect", database]) == 0


def test_inspect_shows_runtime_ids_literally_not_as_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review finding: an id holding rich markup ("tenant[/]") crashed
    inspect, and "[red]" in one vanished from the output."""
    path = tmp_path / "markup.sqlite3"

    async def build() -> None:
        async with SqliteRuntimeStore(path) as store:
            for rid in ("tenant[/]", "team[red]7"):
                driver = PersistentRuntimeDriver(
                    LogicalRuntimeId(rid), store, MemoryBlobStore()
                )
                await driver.accept_input(PromptInput.new("hello [bold]world[/bold]"))

    asyncio.run(build())
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "tenant[/]: inputs" in out
    assert "team[red]7: inputs" in out


def _queued_view(runtime_id: str, created: datetime) -> RuntimeView:
    """A runtime holding one input, queued 1.5 s after it was accepted."""
    record = InputStateRecord(
        input_id=InputId.new(),
        current_state=InputLifecycleState.QUEUED,
        created_at=created,
        updated_at=created,
        history=[
            InputStateHistoryEntry(
                timestamp=created + timedelta(seconds=1.5),
                from_state=InputLifecycleState.ACCEPTED,
                to_state=InputLifecycleState.QUEUED,
                reason="queue_accepted",
            )
        ],
    )
    return RuntimeView(runtime_id, None, [InputState.from_record(record)], [])


def _rendered(views: list[RuntimeView], width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False)
    console.print(runtimes_table(views))
    print_views(console, views)
    return out.getvalue()


def test_inspect_times_count_from_each_runtimes_first_input() -> None:
    early = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    views = [
        _queued_view("early", early),
        _queued_view("late", early + timedelta(hours=3)),
    ]
    out = _rendered(views, 120)
    assert out.count("+1.500s") == 2  # not +10801.500s for the later runtime
    assert "+10801" not in out


def test_inspect_shows_a_long_runtime_id_whole() -> None:
    long_id = "tenant-" + "0123456789abcdef" * 8 + "-session"
    out = _rendered([_queued_view(long_id, datetime(2025, 1, 1, tzinfo=UTC))], 80)
    runtimes = out.split("inputs and their timelines")[0]
    cells = "".join(
        row.split("│")[1].strip() for row in runtimes.splitlines() if "│" in row
    )
    assert long_id in cells
    assert all(len(line) <= 80 for line in out.splitlines())


# ---------------------------------------------------------------- verify / diagrams


def test_verify_model_checks_the_repository_spec(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert main(["verify", "--root", str(ROOT)]) == 0
    out = capfd.readouterr().out  # printed by the `python -m codegen` child
    assert "input_lifecycle:" in out
    assert "runtime_control:" in out


@pytest.mark.parametrize("command", ["verify", "diagrams"])
def test_without_a_checkout_the_spec_tooling_says_it_needs_one(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As installed from a wheel: the package's parent is site-packages, with
    # no codegen/ (an unrelated `codegen` there is not taken for ours).
    site = tmp_path / "site-packages"
    (site / "codegen").mkdir(parents=True)
    (site / "codegen" / "__main__.py").write_text("raise SystemExit(0)\n")
    monkeypatch.setattr(cli, "PACKAGE_PARENT", site)
    shutil.copytree(ROOT / "spec", tmp_path / "spec")
    assert main([command, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "needs a checkout of the meerkat-runtime repository" in err
    assert str(tmp_path) in err


def test_version_is_the_package_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"meerkat-runtime {__version__}\n"


@pytest.mark.parametrize("command", ["verify", "diagrams"])
def test_a_root_without_a_spec_is_a_clear_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "spec/lifecycle.yaml" in err
    assert str(tmp_path) in err


def test_diagrams_renders_the_spec(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Needs Graphviz's `dot`: `make test` installs it (scripts/install-system-deps)."""
    # A copy of the repository's spec, so the test never rewrites the
    # checkout's files while someone edits spec/; codegen/ is the checkout's.
    shutil.copytree(ROOT / "spec", tmp_path / "spec")
    assert main(["diagrams", "--root", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    assert "rendered diagrams/input_lifecycle.svg" in out
    for name in ("input_lifecycle", "runtime_control", "policy"):
        assert (tmp_path / "diagrams" / f"{name}.svg").stat().st_size > 0


def test_inspection_counts_recoveries_like_the_store(tmp_path: Path) -> None:
    """Decision 18 as ``inspect`` shows it: two restarts of a runtime with a
    queued input read as two recoveries, although the input's row was written
    once (the store counts recoveries per runtime)."""
    path, rid = tmp_path / "r.db", LogicalRuntimeId("r")

    async def start(accept: bool) -> None:
        async with SqliteRuntimeStore(path) as store:
            driver = PersistentRuntimeDriver(rid, store, MemoryBlobStore())
            await driver.recover()
            if accept:
                await driver.accept_input(PromptInput.new("hello"))

    for accept in (True, False, False):
        asyncio.run(start(accept))
    (view,) = load_database(path)
    assert [s.recovery_count for s in view.inputs] == [2]
