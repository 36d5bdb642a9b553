"""Every benchmark still runs (at its ``--quick`` sizes), so a change to the
library cannot silently break one. Nothing here is timed: the figures are
printed by the benchmarks (`make bench`), never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# helpers of the SQLite benchmarks, not benchmarks themselves
SHARED = {"sqlite_tools.py", "durable_parts.py", "durable_floors.py"}
BENCHMARKS = sorted(
    p.name for p in (ROOT / "bench").glob("*.py") if p.name not in SHARED
)


def test_every_benchmark_is_covered() -> None:
    assert BENCHMARKS == ["authority.py", "driver.py", "durable.py", "sessions.py"]


@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmark_runs_at_quick_sizes(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "goal" in done.stdout, done.stdout[-3000:]
    if script == "durable.py":  # each unmet goal is shown beside its floor
        assert done.stdout.count("floor:") == 4, done.stdout[-3000:]
