"""A caller cancelled while its write is in flight: memory follows what the
store did. (It once undid memory although the write then committed, so after
a restart an input the caller never saw acknowledged ran anyway, and a retry
with the same key was stored twice.)"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from meerkat_runtime import InputState, LogicalRuntimeId, PromptInput
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.store import InMemoryRuntimeStore
from meerkat_runtime.testing.faults import FaultyStore
from tests.cancelling import cancelled_mid_write

RID = LogicalRuntimeId("r")


class SlowStore(FaultyStore):
    """Input writes wait for a gate, then commit (as a writer thread would)."""

    def __init__(self) -> None:
        super().__init__(InMemoryRuntimeStore())
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        self.started.set()
        await self.gate.wait()
        await self.inner.persist_input_state(runtime_id, state)

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        self.started.set()
        await self.gate.wait()
        await self.inner.atomic_lifecycle_commit(
            runtime_id, runtime_state, input_states
        )


def test_cancelled_accept_whose_write_commits_keeps_the_input() -> None:
    async def scenario() -> None:
        store = SlowStore()
        driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
        inp = PromptInput.new("hello")
        await cancelled_mid_write(driver.accept_input(inp), store.started, store.gate)
        assert await store.load_input_state(RID, inp.id()) is not None
        assert driver.input_state(inp.id()) is not None  # memory follows the store
        assert (await driver.accept_input(inp)).is_deduplicated()

    asyncio.run(scenario())


def test_cancelled_reset_whose_write_commits_stays_reset() -> None:
    async def scenario() -> None:
        store = SlowStore()
        store.gate.set()
        driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
        await driver.accept_input(PromptInput.new("hello"))
        store.gate.clear()
        store.started.clear()
        await cancelled_mid_write(driver.reset(), store.started, store.gate)
        assert driver.active_input_ids() == []
        assert [s.is_terminal() for s in await store.load_input_states(RID)] == [True]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "call",
    [
        "accept_now",
        "run_event_now",
        "retire_now",
        "reset_now",
        "destroy_now",
        "runtime_control_now",
        "recover_now",
        "recycle_now",
    ],
)
def test_persistent_driver_has_no_unpersisted_entry_points(call: str) -> None:
    """Found by the cold review: the ephemeral driver's synchronous entry
    points changed a persistent runtime without writing it. The persistent
    driver holds a core instead of inheriting them: it has none to call."""
    driver = PersistentRuntimeDriver(RID, InMemoryRuntimeStore(), MemoryBlobStore())
    assert hasattr(EphemeralRuntimeDriver(RID), call)
    assert not hasattr(driver, call)
    assert not isinstance(driver, EphemeralRuntimeDriver)
    assert driver.observe().inputs == ()
