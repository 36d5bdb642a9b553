"""``meerkat-runtime worker DB`` (PD-67): it runs a runtime's queued work
with the default echo executor, exits 0 on SIGTERM and on SIGINT with its
leases released, and refuses bad options once, by name, with exit 2."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from meerkat_runtime.cli import main
from meerkat_runtime.store.sqlite import SqliteRuntimeStore
from meerkat_runtime.testing.fleet import (
    check_exactly_once,
    load_sessions,
    session_ids,
)
from meerkat_runtime.testing.fleet_processes import WorkerProcesses


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_runs_the_work_and_releases_its_leases_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    path = tmp_path / "w.db"

    async def main_() -> None:
        store = await SqliteRuntimeStore.open(path)
        async with store:
            acked = await load_sessions(store, session_ids(3), 2)
            fleet = WorkerProcesses(str(path), tmp_path, ["--idle-release", "60"])
            try:
                fleet.start(1)
                while await store.list_runtimes_with_work():
                    await asyncio.sleep(0.05)
                [worker] = fleet.workers
                worker.process.send_signal(signum)
                code = await asyncio.to_thread(worker.process.wait, 60)
            finally:
                fleet.kill_all()
            assert code == 0, worker.text()
            assert "stopped: 3 claimed, 3 released at shutdown" in worker.text()
            leases = await store.load_leases()
            assert {lease.owner for lease in leases} == {worker.owner}
            assert all(lease.released for lease in leases)
            assert (await check_exactly_once(store, acked)).problems == []

    asyncio.run(main_())


def test_the_default_executor_answers_the_prompt_back() -> None:
    """The echo executor's result is what a completion handle would carry."""
    from meerkat_runtime.ids import RunId, SessionId
    from meerkat_runtime.inputs import PromptInput
    from meerkat_runtime.ledger import Lane
    from meerkat_runtime.sessions.executor import StagedInput
    from meerkat_runtime.sessions.fleet import echo_executor
    from meerkat_runtime.sessions.primitive import build_primitive

    prompt = PromptInput.new("hello")
    primitive = build_primitive([(prompt.header.id, prompt)], Lane.QUEUE)
    assert isinstance(primitive, StagedInput)
    output = asyncio.run(echo_executor(SessionId("s")).apply(RunId.new(), primitive))
    assert output.run_result is not None
    assert output.run_result.text == "echo: hello"
    assert output.receipt.contributing_input_ids == [prompt.header.id]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--executor", "nocolon"], "--executor must be module:factory"),
        (["--executor", "no_such_module_xyz:f"], "cannot import no_such_module_xyz"),
        (["--executor", "meerkat_runtime.cli:nothing"], "has no callable nothing"),
        (["--schema", "s"], "--schema names a PostgreSQL schema"),
    ],
)
def test_bad_worker_options_exit_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    target = tmp_path / "w.db"
    assert main(["worker", str(target), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert err.count("error:") == 1
    assert not target.exists()  # nothing left behind


def test_a_database_of_something_else_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "other.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ann')")
    conn.close()
    assert main(["worker", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert "not a meerkat database" in err
    with sqlite3.connect(target) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master").fetchall()
    conn.close()
    assert tables == [("users",)]
    assert not Path(f"{target}.blobs").exists()


@pytest.mark.parametrize("option", ["--lease-ttl", "--max-runtimes"])
def test_non_positive_numbers_are_usage_errors(option: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meerkat_runtime.cli", "worker", "x.db", option, "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert option in done.stderr


@pytest.mark.parametrize("option", ["--idle-release", "--drain"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_bad_seconds_are_usage_errors_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meerkat_runtime.cli", "worker", "x.db", option, value],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert option in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()  # nothing left behind


@pytest.mark.parametrize(
    ("owner", "says"),
    [("", "must not be blank"), ("a\nb", "control characters"), ("x" * 5000, "longer")],
)
def test_a_bad_owner_is_a_usage_error(tmp_path: Path, owner: str, says: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meerkat_runtime.cli",
            "worker",
            "x.db",
            "--owner",
            owner,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--owner" in done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()  # nothing left behind
