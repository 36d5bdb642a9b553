"""Real processes (PD-58, PD-60): one process submits to a session that
another process owns, over one SQLite file or one PostgreSQL schema; every
input runs once, in arrival order, and every handle is answered, from the
store; submitting the same keys again is deduplicated across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from meerkat_runtime import InputLifecycleState, LogicalRuntimeId
from tests.ownership.test_process_race import ROOT, race_target
from tests.stateful.kill_child import open_target

COUNT = 30
R = LogicalRuntimeId("fleet")


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sessions.inbox_child", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def submitted(target: str) -> list[str]:
    proc = child("submit", target, str(COUNT))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    return out.splitlines()


async def stored(
    target: str,
) -> tuple[list[str], list[InputLifecycleState], list[list[str]], list[object]]:
    store = open_target(target)
    try:
        states = await store.load_input_states(R)
        receipts = await store.load_boundary_receipts(R)
        inbox = await store.load_inbox(R)
    finally:
        await store.close()
    texts = [s.persisted_input.text for s in states]  # type: ignore[union-attr]
    applied = [[str(i) for i in r.contributing_input_ids] for r in receipts]
    return texts, [s.current_state() for s in states], applied, list(inbox)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_submitter_process_and_an_owner_process_share_one_store(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    target = race_target(store, tmp_path, request)
    owner = child("owner", target)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        first = submitted(target)
        again = submitted(target)  # the same keys, once all are done
    finally:
        assert owner.stdin is not None
        owner.stdin.close()
        owner.wait(timeout=60)
        if owner.stdout is not None:
            owner.stdout.close()
    assert owner.returncode == 0
    assert first == ["Submitted CompletedWithoutResult"] * COUNT
    assert again == ["Deduplicated -"] * COUNT
    texts, phases, applied, inbox = asyncio.run(stored(target))
    assert texts == [f"m{i}" for i in range(COUNT)]  # arrival order
    assert set(phases) == {InputLifecycleState.CONSUMED}
    ids = [i for batch in applied for i in batch]
    assert len(ids) == len(set(ids)) == COUNT  # each applied by one receipt
    assert inbox == []
