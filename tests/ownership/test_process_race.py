"""Two real processes race to own one runtime of one SQLite file: exactly
one wins, the other is refused naming the winner (PD-36)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meerkat_runtime import SqliteRuntimeStore

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_processes_racing_for_one_runtime_one_wins(
    tmp_path: Path, round_: int
) -> None:
    db = tmp_path / "race.db"
    SqliteRuntimeStore(db).writer.stop()  # the file exists before the race
    workers = {
        owner: subprocess.Popen(
            [sys.executable, "-m", "tests.ownership.race_child", str(db), owner],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for owner in (f"left-{round_}", f"right-{round_}")
    }
    try:
        said = {}
        for owner, proc in workers.items():
            assert proc.stdout is not None
            said[owner] = proc.stdout.readline().strip()
    finally:
        for proc in workers.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
    winners = [owner for owner, line in said.items() if line == "won"]
    assert len(winners) == 1, said
    (loser,) = set(said) - set(winners)
    assert said[loser] == f"owned {winners[0]}"
    assert all(proc.returncode == 0 for proc in workers.values())
