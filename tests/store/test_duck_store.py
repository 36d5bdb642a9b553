"""API.md: ``RuntimeStore`` is a protocol. A store written against its ten
methods alone, without subclassing it, serves the persistent driver: it is
taken as not cancel-safe (its writes run in a task the driver waits out),
and a first recovery ends with the default ``commit_recovery`` (every
recovered state written through ``atomic_lifecycle_commit``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from meerkat_runtime import (
    InMemoryRuntimeStore,
    LogicalRuntimeId,
    MemoryBlobStore,
    PersistentRuntimeDriver,
    PromptInput,
    RuntimeState,
)
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from tests.cancelling import cancelled_mid_write

RID = LogicalRuntimeId("duck")


# API.md's ten methods, and the writes among them.
PROTOCOL = frozenset(
    {
        "commit_session_boundary",
        "atomic_apply",
        "load_input_states",
        "load_boundary_receipt",
        "load_session_snapshot",
        "persist_input_state",
        "load_input_state",
        "persist_runtime_state",
        "load_runtime_state",
        "atomic_lifecycle_commit",
    }
)
WRITES = frozenset(
    {
        "commit_session_boundary",
        "atomic_apply",
        "persist_input_state",
        "persist_runtime_state",
        "atomic_lifecycle_commit",
    }
)


class DuckStore:
    """Exactly the ten protocol methods (anything else is missing, as in a
    store written against API.md alone), delegating to an in-memory store;
    it logs the writes, and ``gate`` holds them until set."""

    def __init__(self) -> None:
        self.inner = InMemoryRuntimeStore()
        self.writes: list[str] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()  # a write reached the gate

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name not in PROTOCOL:
            raise AttributeError(name)
        method: Callable[..., Awaitable[Any]] = getattr(self.inner, name)
        if name not in WRITES:
            return method

        async def write(*args: Any, **kwargs: Any) -> Any:
            self.writes.append(name)
            if self.gate is not None:
                self.entered.set()
                await self.gate.wait()
            return await method(*args, **kwargs)

        return write


def driver_on(store: DuckStore) -> PersistentRuntimeDriver:
    return PersistentRuntimeDriver(RID, store, MemoryBlobStore())  # type: ignore[arg-type]


def test_a_store_with_only_the_protocol_methods_serves_the_driver() -> None:
    """D-5, D-9 and D-11 through a duck-typed store: accepts are durable,
    retire commits, and a new driver recovers the queue and the phase."""

    async def scenario() -> None:
        store = DuckStore()
        driver = driver_on(store)
        first, second = PromptInput.new("one"), PromptInput.new("two")
        for inp in (first, second):
            assert (await driver.accept_input(inp)).is_accepted()
        await driver.retire()
        assert store.writes == [
            "persist_input_state",
            "persist_input_state",
            "atomic_lifecycle_commit",
        ]

        again = driver_on(store)
        report = await again.recover()
        assert report.inputs_recovered == 2
        assert again.runtime_state() is RuntimeState.RETIRED
        assert again.queued_input_ids() == [first.id(), second.id()]
        stored = await store.load_input_state(RID, first.id())
        assert stored is not None
        assert stored.recovery_count == 1
        assert stored.current_state() is InputLifecycleState.QUEUED

    asyncio.run(scenario())


def test_a_cancelled_accept_on_a_duck_store_follows_the_store() -> None:
    """Decision 14 under cancellation: not declared cancel-safe, the store's
    write runs to its end in a task even though its caller was cancelled
    mid-write, and memory keeps the input the store now holds."""

    async def scenario() -> None:
        store = DuckStore()
        store.gate = asyncio.Event()
        driver = driver_on(store)
        inp = PromptInput.new("cancel me")
        await cancelled_mid_write(driver.accept_input(inp), store.entered, store.gate)
        assert store.writes == ["persist_input_state"]
        assert await store.load_input_state(RID, inp.id()) is not None
        assert driver.input_state(inp.id()) is not None

    asyncio.run(scenario())
