"""Upstream's persistent-driver tests (reference/driver_persistent.rs), ported.

Each test runs against both stores. Rule ids: D-5 (durable before ack), D-6
(boundary commit), D-9 (retire/reset), D-11 (recovery), T-20 (images),
decision 14 (a store failure leaves no trace).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meerkat_runtime import (
    ContentBlock,
    IdempotencyKey,
    ImageData,
    InputDurability,
    InputHeader,
    InputId,
    InputLifecycleInput,
    InputLifecycleState,
    InputOrigin,
    InputState,
    LogicalRuntimeId,
    PromptInput,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunEvent,
    RunId,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.ids import InputId as _InputId
from meerkat_runtime.inputs import AnyContentBlock, BlobImage, ImageBlock, InlineImage
from meerkat_runtime.runs import RunBoundaryReceipt as _Receipt
from meerkat_runtime.store import (
    InMemoryRuntimeStore,
    RuntimeStore,
    SessionDelta,
    SqliteRuntimeStore,
)
from meerkat_runtime.store.base import RuntimeStoreError

RID = LogicalRuntimeId("test")
StoreFactory = Callable[[], RuntimeStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "memory":
        return InMemoryRuntimeStore
    return lambda: SqliteRuntimeStore(tmp_path / "runtime.db")


def run(
    body: Callable[[RuntimeStore], Awaitable[None]], make_store: StoreFactory
) -> None:
    async def main() -> None:
        store = make_store()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def make_prompt(text: str, key: str | None = None) -> PromptInput:
    header = InputHeader(
        id=InputId.new(),
        timestamp=datetime.now(UTC),
        source=InputOrigin.Operator(),
        durability=InputDurability.DURABLE,
        idempotency_key=IdempotencyKey(key) if key else None,
    )
    return PromptInput(header=header, text=text)


def make_multimodal_prompt(text: str, label: str) -> PromptInput:
    blocks: list[AnyContentBlock] = [
        ContentBlock.Text(text=text),
        ContentBlock.Image(
            media_type="image/png", data=ImageData.Inline(data=f"base64-{label}")
        ),
    ]
    return PromptInput(header=make_prompt(text).header, text=text, blocks=blocks)


def driver_for(store: RuntimeStore) -> PersistentRuntimeDriver:
    return PersistentRuntimeDriver(RID, store, MemoryBlobStore())


class FailPersistInputStore(RuntimeStore):
    """Delegates to ``inner`` but refuses ``persist_input_state`` while armed."""

    def __init__(self, inner: RuntimeStore) -> None:
        self.inner = inner
        self.fail_persist_input_state = True

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        if self.fail_persist_input_state:
            raise RuntimeStoreError.WriteFailed("synthetic persist_input_state failure")
        await self.inner.persist_input_state(runtime_id, state)

    async def commit_session_boundary(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta,
        run_id: RunId,
        boundary: RunApplyBoundary,
        contributing_input_ids: Sequence[_InputId],
        input_updates: Sequence[InputState],
    ) -> _Receipt:
        return await self.inner.commit_session_boundary(
            runtime_id,
            session_delta,
            run_id,
            boundary,
            contributing_input_ids,
            input_updates,
        )

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: _Receipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        await self.inner.atomic_apply(
            runtime_id, session_delta, receipt, input_updates, session_store_key
        )

    async def load_input_states(self, runtime_id: LogicalRuntimeId) -> list[InputState]:
        return await self.inner.load_input_states(runtime_id)

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> _Receipt | None:
        return await self.inner.load_boundary_receipt(runtime_id, run_id, sequence)

    async def load_session_snapshot(self, runtime_id: LogicalRuntimeId) -> bytes | None:
        return await self.inner.load_session_snapshot(runtime_id)

    async def load_input_state(
        self, runtime_id: LogicalRuntimeId, input_id: _InputId
    ) -> InputState | None:
        return await self.inner.load_input_state(runtime_id, input_id)

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        await self.inner.persist_runtime_state(runtime_id, state)

    async def load_runtime_state(
        self, runtime_id: LogicalRuntimeId
    ) -> RuntimeState | None:
        return await self.inner.load_runtime_state(runtime_id)

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        await self.inner.atomic_lifecycle_commit(
            runtime_id, runtime_state, input_states
        )


def test_durable_before_ack(make_store: StoreFactory) -> None:
    """D-5: when accept returns, the store holds the state with its payload."""

    async def body(store: RuntimeStore) -> None:
        driver = driver_for(store)
        inp = make_prompt("hello")
        outcome = await driver.accept_input(inp)
        assert outcome.is_accepted()
        stored = await store.load_input_state(RID, inp.id())
        assert stored is not None
        assert stored.persisted_input is not None

    run(body, make_store)


def test_dedup_not_persisted(make_store: StoreFactory) -> None:
    """A-6 / Z-7: a deduplicated input is not stored (one state in the store)."""

    async def body(store: RuntimeStore) -> None:
        driver = driver_for(store)
        await driver.accept_input(make_prompt("hello", key="req-1"))
        outcome = await driver.accept_input(make_prompt("hello again", key="req-1"))
        assert outcome.is_deduplicated()
        assert len(await store.load_input_states(RID)) == 1

    run(body, make_store)


def test_recover_from_store(make_store: StoreFactory) -> None:
    """D-11 / Z-8: a stored accepted input is recovered and can be dequeued."""

    async def body(store: RuntimeStore) -> None:
        inp = make_prompt("hello")
        state = InputState.new_accepted(inp.id())
        state.persisted_input = inp
        state.durability = InputDurability.DURABLE
        await store.persist_input_state(RID, state)

        driver = driver_for(store)  # a restart
        report = await driver.recover()
        assert report.inputs_recovered == 1
        assert driver.input_state(inp.id()) is not None
        dequeued = driver.dequeue_next()
        assert dequeued is not None, "Recovered queued input should be re-enqueued"
        queued_id, queued_input = dequeued
        assert queued_id == inp.id()
        assert queued_input.id() == inp.id()

    run(body, make_store)


def test_recover_rebuilds_dedup_index(make_store: StoreFactory) -> None:
    """T-15 / D-11 step 5: keys deduplicate after a restart."""

    async def body(store: RuntimeStore) -> None:
        state = InputState.new_accepted(InputId.new())
        state.idempotency_key = IdempotencyKey("dedup-key")
        state.durability = InputDurability.DURABLE
        await store.persist_input_state(RID, state)

        driver = driver_for(store)
        await driver.recover()
        outcome = await driver.accept_input(make_prompt("duplicate", key="dedup-key"))
        assert outcome.is_deduplicated(), (
            "After recovery, dedup index should be rebuilt"
        )

    run(body, make_store)


def test_recover_filters_ephemeral_inputs(make_store: StoreFactory) -> None:
    """Decision 13: an ephemeral record does not survive a restart."""

    async def body(store: RuntimeStore) -> None:
        state = InputState.new_accepted(InputId.new())
        state.durability = InputDurability.EPHEMERAL
        await store.persist_input_state(RID, state)

        driver = driver_for(store)
        report = await driver.recover()
        assert driver.input_state(state.input_id) is None, (
            "Ephemeral inputs should be filtered"
        )
        assert report.inputs_recovered == 0

    run(body, make_store)


def test_boundary_applied_persists_atomically(make_store: StoreFactory) -> None:
    """D-6: BoundaryApplied writes the receipt through atomic_apply."""

    async def body(store: RuntimeStore) -> None:
        driver = driver_for(store)
        inp = make_prompt("hello")
        await driver.accept_input(inp)
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_input(inp.id(), run_id)
        receipt = RunBoundaryReceipt(
            run_id=run_id,
            boundary=RunApplyBoundary.RUN_START,
            contributing_input_ids=[inp.id()],
            message_count=1,
            sequence=0,
        )
        await driver.on_run_event(
            RunEvent.BoundaryApplied(
                run_id=run_id, receipt=receipt, session_snapshot=b"session-data"
            )
        )
        loaded = await store.load_boundary_receipt(RID, run_id, 0)
        assert loaded is not None, (
            "BoundaryApplied should persist the receipt via atomic_apply"
        )
        assert loaded == receipt
        stored = await store.load_input_state(RID, inp.id())
        assert stored is not None
        assert stored.current_state() is InputLifecycleState.APPLIED_PENDING_CONSUMPTION
        assert await store.load_session_snapshot(RID) == b"session-data"

    run(body, make_store)


def test_durable_runtime_input_externalizes_inline_images_before_ack(
    make_store: StoreFactory,
) -> None:
    """T-20 / D-5 step 3: the stored payload holds blob refs, no inline bytes."""

    async def body(store: RuntimeStore) -> None:
        driver = driver_for(store)
        inp = make_multimodal_prompt("hello", "driver")
        assert (await driver.accept_input(inp)).is_accepted()
        stored = await store.load_input_state(RID, inp.id())
        assert stored is not None, "persisted input should exist"
        persisted = stored.persisted_input
        assert isinstance(persisted, PromptInput), (
            "accepted durable input should be persisted"
        )
        assert persisted.blocks is not None, "multimodal blocks should persist"
        images = [b for b in persisted.blocks if isinstance(b, ImageBlock)]
        assert any(isinstance(b.data, BlobImage) for b in images), (
            "image bytes should be externalized"
        )
        assert not any(isinstance(b.data, InlineImage) for b in images), (
            "no inline image bytes may remain"
        )

    run(body, make_store)


def test_durable_accept_failure_restores_canonical_ingress_state(
    make_store: StoreFactory,
) -> None:
    """D-5 step 5 / decision 14: a failed persist leaves no trace; a retry works."""

    async def body(inner: RuntimeStore) -> None:
        store = FailPersistInputStore(inner)
        driver = driver_for(store)
        inp = make_prompt("hello")
        with pytest.raises(RuntimeDriverError) as err:
            await driver.accept_input(inp)
        assert "synthetic persist_input_state failure" in str(err.value)
        assert driver.input_state(inp.id()) is None, (
            "no canonical input state may stay behind"
        )
        assert driver.dequeue_next() is None, "no queued phantom input may stay behind"
        assert await inner.load_input_state(RID, inp.id()) is None, (
            "nothing may be persisted"
        )
        assert driver.drain_events() == [], "the failed accept's events are gone too"
        store.fail_persist_input_state = False
        outcome = await driver.accept_input(inp)
        assert outcome.is_accepted(), (
            "retry after failed durable admission should succeed"
        )

    run(body, make_store)


def test_retire_preserves_inputs_for_drain(make_store: StoreFactory) -> None:
    """C-8 / D-9: retire keeps queued work; the store still says queued."""

    async def body(store: RuntimeStore) -> None:
        driver = driver_for(store)
        inp = make_prompt("hello")
        await driver.accept_input(inp)
        report = await driver.retire()
        assert report.inputs_abandoned == 0
        assert report.inputs_pending_drain == 1
        stored = await store.load_input_state(RID, inp.id())
        assert stored is not None
        assert stored.current_state() is InputLifecycleState.QUEUED
        assert await store.load_runtime_state(RID) is RuntimeState.RETIRED

    run(body, make_store)


def test_reset_persists_abandoned_inputs(make_store: StoreFactory) -> None:
    """C-9 / D-9: reset's abandonments reach the store."""

    async def body(store: RuntimeStore) -> None:
        driver = driver_for(store)
        inp = make_prompt("hello")
        await driver.accept_input(inp)
        report = await driver.reset()
        assert report.inputs_abandoned == 1
        stored = await store.load_input_state(RID, inp.id())
        assert stored is not None
        assert stored.current_state() is InputLifecycleState.ABANDONED

    run(body, make_store)


def test_recover_consumes_committed_applied_pending_inputs(
    make_store: StoreFactory,
) -> None:
    """D-11 step 1: an applied input whose receipt was committed is consumed,
    not replayed."""

    async def body(store: RuntimeStore) -> None:
        inp = make_prompt("already committed")
        run_id = RunId.new()
        state = InputState.new_accepted(inp.id())
        state.persisted_input = inp
        state.durability = InputDurability.DURABLE
        state.apply(InputLifecycleInput.QueueAccepted())
        state.apply(InputLifecycleInput.StageForRun(run_id=run_id))
        state.apply(InputLifecycleInput.MarkApplied(run_id=run_id))
        state.apply(
            InputLifecycleInput.MarkAppliedPendingConsumption(boundary_sequence=0)
        )
        await store.persist_input_state(RID, state)
        receipt = RunBoundaryReceipt(
            run_id=run_id,
            boundary=RunApplyBoundary.RUN_START,
            contributing_input_ids=[inp.id()],
            message_count=1,
            sequence=0,
        )
        await store.atomic_apply(RID, None, receipt, [state])

        driver = driver_for(store)
        await driver.recover()
        recovered = driver.input_state(inp.id())
        assert recovered is not None, "committed input should remain queryable"
        assert recovered.current_state() is InputLifecycleState.CONSUMED
        assert driver.active_input_ids() == [], (
            "committed applied inputs should not stay active"
        )
        assert driver.dequeue_next() is None, (
            "committed applied inputs should not be replayed"
        )

    run(body, make_store)
