"""``recover()`` on a live persistent driver runs the in-memory half of
recovery too (D-12, CP-7). It once skipped it, so a staged batch stayed
staged forever."""

from __future__ import annotations

import asyncio

from meerkat_runtime import FlowStepInput, InputHeader, LogicalRuntimeId, RunId
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.ledger import Lane
from meerkat_runtime.store import InMemoryRuntimeStore


def test_recover_on_a_live_driver_requeues_its_staged_batch() -> None:
    async def scenario() -> None:
        driver = PersistentRuntimeDriver(
            LogicalRuntimeId("r"), InMemoryRuntimeStore(), MemoryBlobStore()
        )
        step = FlowStepInput(header=InputHeader.new(), step_id="s", instructions="do")
        await driver.accept_input(step)
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_batch([step.id()], run_id)
        report = await driver.recover()
        state = driver.input_state(step.id())
        assert state is not None
        assert state.current_state() is InputLifecycleState.QUEUED
        assert driver.queued_input_ids(Lane.QUEUE) == [step.id()]
        assert report.inputs_requeued == 1

    asyncio.run(scenario())
