"""The child process of the SIGKILL test: a driver on a SQLite file that
accepts inputs and completes runs, reporting every acknowledgement on stdout
only after ``accept_input`` returned, and every completed run after
``RunCompleted`` returned. ``python -m tests.stateful.kill_child TARGET SEED MODE``
(TARGET: a SQLite path, or ``postgres:<schema>:<dsn>``)
with MODE ``work`` (until killed), ``drain`` (finish everything, then exit) or
``broken`` (``work`` on a store that acknowledges before it commits)."""

from __future__ import annotations

import asyncio
import random
import sys

from meerkat_runtime import (
    FlowStepInput,
    InputHeader,
    LogicalRuntimeId,
    PromptInput,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunEvent,
    RunId,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.inputs import Input
from meerkat_runtime.ledger import Lane
from meerkat_runtime.store import RuntimeStore, SqliteRuntimeStore
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.testing.faults import BrokenStore, Defect

RID = LogicalRuntimeId("killed")


def say(*words: object) -> None:
    print(*words, flush=True)


def make_input(rng: random.Random) -> Input:
    if rng.random() < 0.5:
        return PromptInput(header=InputHeader.new(), text="x" * rng.randint(1, 2000))
    return FlowStepInput(header=InputHeader.new(), step_id="s", instructions="do it")


async def run_once(driver: PersistentRuntimeDriver) -> None:
    lane = driver.queued_input_ids(Lane.STEER) or driver.queued_input_ids(Lane.QUEUE)
    if not lane:
        return
    batch = lane[:3]
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_batch(batch, run_id)
    receipt = RunBoundaryReceipt(
        run_id=run_id,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=batch,
        message_count=len(batch),
        sequence=0,
    )
    await driver.on_run_event(RunEvent.BoundaryApplied(run_id=run_id, receipt=receipt))
    await driver.on_run_event(
        RunEvent.RunCompleted(run_id=run_id, consumed_input_ids=batch)
    )
    say("DONE", *batch)


def open_target(target: str) -> RuntimeStore:
    """The store a TARGET names (see the module notes)."""
    if target.startswith("postgres:"):
        schema, dsn = target.removeprefix("postgres:").split(":", 1)
        return PostgresRuntimeStore(dsn, schema=schema)
    return SqliteRuntimeStore(target)


async def main(target: str, seed: int, mode: str) -> None:
    rng = random.Random(seed)
    store = open_target(target)
    if mode == "broken":
        store = BrokenStore(store, Defect.ACK_BEFORE_COMMIT)
    driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
    await driver.recover()
    say("READY")
    while True:
        if mode == "drain":
            if not driver.queued_input_ids(Lane.QUEUE) and not driver.queued_input_ids(
                Lane.STEER
            ):
                break
        else:
            for _ in range(rng.randint(1, 4)):
                inp = make_input(rng)
                await driver.accept_input(inp)
                say("ACK", inp.id())
            if isinstance(store, BrokenStore) and rng.random() < 0.3:
                await store.flush()  # the broken store's late, real write
        await run_once(driver)
    await store.close()
    say("IDLE")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
