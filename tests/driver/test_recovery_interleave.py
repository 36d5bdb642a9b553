"""Calls that interleave with a driver's first recovery are refused. A
driver's first recovery runs without a checkpoint, so nothing refused an
``accept_input`` (or a second ``recover()``) started while it awaited its
load. On SQLite the accepted row was then stamped with the old recovery epoch
and loaded with a recovery it never had (decision 18); two first recoveries
would count one restart twice. Such calls now fail as every other
interleaving does, before they change anything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meerkat_runtime import InputState, LogicalRuntimeId, PromptInput
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.store import SqliteRuntimeStore

RID = LogicalRuntimeId("r")


class GatedLoadStore(SqliteRuntimeStore):
    """Loading input states waits for a gate (a slow disk)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()

    async def load_input_states(self, runtime_id: LogicalRuntimeId) -> list[InputState]:
        await self.gate.wait()
        return await super().load_input_states(runtime_id)


def test_calls_during_a_first_recovery_are_refused(tmp_path: Path) -> None:
    async def body() -> None:
        store = GatedLoadStore(tmp_path / "r.db")
        async with store:
            driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
            recovery = asyncio.ensure_future(driver.recover())
            await asyncio.sleep(0)  # the recovery now waits for its load
            early = PromptInput.new("too early")
            with pytest.raises(AssertionError, match="interleave"):
                await driver.accept_input(early)
            with pytest.raises(AssertionError, match="interleave"):
                await driver.recover()
            store.gate.set()
            await recovery
            assert await store.load_input_state(RID, early.id()) is None
            late = PromptInput.new("after recovery")
            assert (await driver.accept_input(late)).is_accepted()
            stored = await store.load_input_state(RID, late.id())
            assert stored is not None
            assert stored.recovery_count == 0

    asyncio.run(body())
