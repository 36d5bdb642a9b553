"""Every benchmark still runs (at its ``--quick`` sizes), so a change to the
library cannot silently break one. Nothing here is timed: the figures are
printed by the benchmarks (`make bench`), never asserted; only that each goal
gets its one verdict line and that scratch files go to the temp directory."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# helpers of the benchmarks, not benchmarks themselves
SHARED = {
    "sqlite_tools.py",
    "durable_parts.py",
    "durable_floors.py",
    "durable_fencing.py",
    "goals.py",
    "postgres_peers.py",
}
SHARED |= {"durable_tracing.py"}  # also runs alone, but durable.py runs it
BENCHMARKS = sorted(
    p.name for p in (ROOT / "bench").glob("*.py") if p.name not in SHARED
)
GOALS = {
    "authority.py": 2,
    "driver.py": 3,
    # two the fencing cost, one grouped boundaries, two durable_tracing.py's
    "durable.py": 10,
    "fleet.py": 1,
    "group_commit.py": 5,
    # its one goal compares with LangGraph, an optional peer (the bench extra)
    "peers.py": int(importlib.util.find_spec("langgraph") is not None),
    "postgres.py": 4,
    "scale.py": 5,
    "sessions.py": 1,
}
GOAL_LINE = re.compile(r"GOAL \S.* [≥≤][\d,.]+.*: [\d,.]+.* — (met|NOT MET)")
SQLITE = {
    "durable.py",
    "fleet.py",
    "group_commit.py",
    "scale.py",
    "sessions.py",
}  # the ones that write database files


def test_every_benchmark_is_covered() -> None:
    assert sorted(GOALS) == BENCHMARKS


@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmark_runs_at_quick_sizes(script: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    goals = [line for line in done.stdout.splitlines() if line.startswith("GOAL ")]
    assert len(goals) == GOALS[script], done.stdout[-3000:]
    for line in goals:
        assert GOAL_LINE.fullmatch(line), line
    if script == "durable.py":  # each unmet goal is shown beside its floor
        floors = [
            line
            for line in done.stdout.splitlines()
            if "floor:" in line and not line.startswith("GOAL ")
        ]
        assert len(floors) == 4, done.stdout[-3000:]
    if script in SQLITE:  # under the system temp directory, and cleaned up
        assert f"database files in {tmp_path}{os.sep}meerkat-bench-" in done.stdout
        assert list(tmp_path.iterdir()) == []


def test_peers_absent_print_not_installed_and_nothing_fails(tmp_path: Path) -> None:
    """Issue 18: the peers are optional. Shadowed here by empty packages of
    the same names (as if the ``bench`` extra were not installed), each is
    reported "not installed", meerkat and raw sqlite3 are still measured,
    and the LangGraph goal says it was not measured."""
    shadow = tmp_path / "shadow"
    for name in ("langgraph", "dbos"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text("")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers.py"), "--quick"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(shadow)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    absent = [line.split()[0] for line in lines if line.endswith("not installed")]
    assert absent == ["LangGraph", "LangGraph", "DBOS"] * 2, done.stdout
    assert sum("meerkat accept_input" in line for line in lines) == 2
    assert not any(line.startswith("GOAL ") for line in lines)
    assert "not measured" in done.stdout
