"""Two real processes race to own one runtime of one SQLite file, or of one
PostgreSQL schema: exactly one wins, the other is refused naming the winner
(PD-36; on PostgreSQL both may find no lease row yet, PD-55)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from meerkat_runtime import SqliteRuntimeStore
from meerkat_runtime.store.postgres import PostgresRuntimeStore

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3


def race_target(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The store both workers open, made before the race (the race is for
    the runtime, not for creating the schema)."""
    if store == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")

        async def create() -> None:
            await (await PostgresRuntimeStore.open(dsn, schema=schema)).close()

        asyncio.run(create())
        return f"postgres:{schema}:{dsn}"
    db = tmp_path / "race.db"
    SqliteRuntimeStore(db).writer.stop()
    return str(db)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_processes_racing_for_one_runtime_one_wins(
    tmp_path: Path, round_: int, store: str, request: pytest.FixtureRequest
) -> None:
    target = race_target(store, tmp_path, request)
    workers = {
        owner: subprocess.Popen(
            [sys.executable, "-m", "tests.ownership.race_child", target, owner],
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
