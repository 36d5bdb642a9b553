"""Undo of lane changes and of failed commits: failures the fuzzers found,
each pinned as a plain sequence of calls (a shrunk Hypothesis example) before
it was fixed (issue 5). Each test names where it was found."""

from __future__ import annotations

import asyncio

import pytest

from meerkat_runtime import FlowStepInput, InputHeader, LogicalRuntimeId
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.ledger import Lane, Lanes
from meerkat_runtime.store import InMemoryRuntimeStore
from meerkat_runtime.testing.faults import Fault, FaultyStore


def test_undo_of_clear_restores_the_same_lane_objects() -> None:
    """Found in review of the checkpoint journal: undoing ``Lanes.clear()``
    swapped in new deques, so earlier undo steps of the same checkpoint
    edited deques no longer in use and the restore came out wrong."""
    lanes = Lanes()
    lanes.push(
        FlowStepInput(header=InputHeader.new(), step_id="a", instructions="").id(),
        Lane.QUEUE,
    )
    before = lanes.ids(Lane.QUEUE)
    lanes.journal = []
    extra = InputHeader.new().id
    lanes.push(extra, Lane.QUEUE)
    lanes.clear()
    for undo in reversed(lanes.journal):
        undo()
    assert lanes.ids(Lane.QUEUE) == before


def test_failed_reset_commit_restores_abandoned_inputs() -> None:
    """Decision 14, found while writing the crash fuzzer's model: a reset whose
    lifecycle commit fails must leave every input queued and in its lane."""

    async def scenario() -> None:
        store = FaultyStore(InMemoryRuntimeStore())
        driver = PersistentRuntimeDriver(
            LogicalRuntimeId("r"), store, MemoryBlobStore()
        )
        inputs = [
            FlowStepInput(header=InputHeader.new(), step_id=str(n), instructions="")
            for n in range(3)
        ]
        for inp in inputs:
            await driver.accept_input(inp)
        before = driver.observe()
        store.arm(Fault.FAIL, "atomic_lifecycle_commit")
        with pytest.raises(Exception, match="injected failure"):
            await driver.reset()
        assert driver.observe() == before
        assert driver.queued_input_ids(Lane.QUEUE) == [i.id() for i in inputs]

    asyncio.run(scenario())


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_crash_mid_commit_leaves_nothing_behind(
    store_kind: str, tmp_path: object
) -> None:
    """Issue 5: a crash inside a multi-row commit (the reset's lifecycle
    commit of three inputs) leaves the store as before, for both stores."""
    from pathlib import Path

    from meerkat_runtime.store import SqliteRuntimeStore
    from meerkat_runtime.testing.faults import SimulatedCrash

    async def scenario() -> None:
        inner = (
            InMemoryRuntimeStore()
            if store_kind == "memory"
            else SqliteRuntimeStore(Path(str(tmp_path)) / "db")
        )
        store = FaultyStore(inner)
        driver = PersistentRuntimeDriver(
            LogicalRuntimeId("r"), store, MemoryBlobStore()
        )
        for n in range(3):
            await driver.accept_input(
                FlowStepInput(header=InputHeader.new(), step_id=str(n), instructions="")
            )
        before = [
            s.to_record() for s in await inner.load_input_states(LogicalRuntimeId("r"))
        ]
        store.arm(Fault.CRASH_MID_COMMIT, "atomic_lifecycle_commit")
        with pytest.raises(SimulatedCrash):
            await driver.reset()
        after = [
            s.to_record() for s in await inner.load_input_states(LogicalRuntimeId("r"))
        ]
        assert after == before
        await inner.close()

    asyncio.run(scenario())
