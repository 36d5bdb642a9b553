"""The loop and payloads left in the store (PD-64): a recovered session
reads a batch's payloads when it stages the batch. A corrupt payload stops
the runtime's loop with ``Corrupt`` naming the input (nothing abandoned); a
store that cannot answer for now keeps the batch queued until it can.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from meerkat_runtime import (
    InputLifecycleState,
    LogicalRuntimeId,
    RunResult,
    RuntimeSessionAdapter,
    RuntimeStore,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.sessions.adapter import StoreBackoff
from meerkat_runtime.sessions.completion import Completed, RuntimeTerminated
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.store.integrity import frame
from meerkat_runtime.testing.faults import FaultyStore

from .executors import ToyExecutor
from .helpers import outcome_of, prompt

SID = SessionId("lazy-session")
RID = LogicalRuntimeId(str(SID))
FAST = StoreBackoff(initial=0.001, maximum=0.01)


def adapter_over(store: RuntimeStore) -> RuntimeSessionAdapter:
    return RuntimeSessionAdapter.persistent(
        store, MemoryBlobStore(), retry_delay=0.001, store_backoff=FAST
    )


async def queued_file(path: Path, texts: list[str]) -> list[PromptInput]:
    """A file with ``texts`` queued as prompts by a session now closed."""
    store = SqliteRuntimeStore(path)
    inputs = [prompt(text) for text in texts]
    try:
        adapter = adapter_over(store)
        await adapter.register_session(SID)
        for inp in inputs:
            assert (await adapter.accept_input(SID, inp)).is_accepted()
        await adapter.close()
    finally:
        await store.close()
    return inputs


def test_a_recovered_queue_runs_with_its_stored_payloads(tmp_path: Path) -> None:
    """The executor receives what was accepted before the restart, although
    the recovery left the payloads in the store; the adapter's
    ``input_state`` shows the payload too."""
    path = tmp_path / "run.db"

    async def body() -> None:
        inputs = await queued_file(path, ["first", "second"])
        store = SqliteRuntimeStore(path)
        try:
            adapter = adapter_over(store)
            await adapter.register_session(SID)
            ids = [inp.id() for inp in inputs]
            state = await adapter.input_state(SID, ids[0])
            assert state is not None
            assert state.persisted_input == inputs[0]
            handles = [await adapter.completion_for(SID, i) for i in ids]
            executor = ToyExecutor(result=RunResult(text="ok"))
            await adapter.register_session_with_executor(SID, executor)
            for handle in handles:
                assert isinstance(await outcome_of(handle), Completed)
            texts = [a.text for c in executor.calls for a in c.primitive.appends]
            assert texts == ["first", "second"]
            await adapter.close()
        finally:
            await store.close()

    asyncio.run(body())


def test_a_corrupt_payload_found_at_staging_stops_the_runtime_naming_it(
    tmp_path: Path,
) -> None:
    """The record is damaged after recovery (its checksum matches, its
    payload does not decode): the loop stops with ``Corrupt`` naming the
    input, the waiter learns it, the executor never runs, and the input
    is still queued, in memory and in the store (never abandoned)."""
    path = tmp_path / "corrupt.db"

    async def body() -> None:
        (victim,) = await queued_file(path, ["victim"])
        vid = victim.id()
        store = SqliteRuntimeStore(path)
        try:
            adapter = adapter_over(store)
            await adapter.register_session(SID)
            row = store.raw_rows(records.INPUTS, RID)[str(vid)]
            document = row[:-16].replace(b'"text":"victim"', b'"text":7')
            store.corrupt_row(records.INPUTS, RID, str(vid), frame(document))
            handle = await adapter.completion_for(SID, vid)
            executor = ToyExecutor()
            await adapter.register_session_with_executor(SID, executor)
            outcome = await outcome_of(handle)
            assert isinstance(outcome, RuntimeTerminated)
            assert "Corrupt" in outcome.reason
            assert str(vid) in outcome.reason
            assert executor.calls == []
            loop = adapter.sessions[SID].loop
            assert loop is not None
            assert loop.task is not None
            error = loop.task.exception()
            assert isinstance(error, RuntimeStoreError.Corrupt)
            assert str(vid) in str(error)
            driver = adapter.sessions[SID].driver
            assert driver.queued_input_ids() == [vid]
            raw = store.raw_rows(records.INPUTS, RID)[str(vid)]
            assert b'"current_state":"queued"' in raw
            await adapter.close()
        finally:
            await store.close()

    asyncio.run(body())


def test_a_store_fault_when_loading_payloads_keeps_the_batch_queued(
    tmp_path: Path,
) -> None:
    """A retryable fault at fetch: nothing is staged, the loop waits and
    reads again, and the input then runs with its payload."""
    path = tmp_path / "fault.db"

    async def body() -> None:
        (kept,) = await queued_file(path, ["kept"])
        kid = kept.id()
        store = FaultyStore(SqliteRuntimeStore(path))
        try:
            adapter = adapter_over(store)
            await adapter.register_session(SID)
            store.payload_fault = RuntimeStoreError.Unavailable("injected")
            handle = await adapter.completion_for(SID, kid)
            executor = ToyExecutor(result=RunResult(text="ok"))
            await adapter.register_session_with_executor(SID, executor)
            assert isinstance(await outcome_of(handle), Completed)
            assert store.payload_loads == 2
            assert [c.ids for c in executor.calls] == [[kid]]
            assert executor.calls[0].primitive.appends[0].text == "kept"
            stored = await store.load_input_state(RID, kid)
            assert stored is not None
            assert stored.current_state() is InputLifecycleState.CONSUMED
            await adapter.close()
        finally:
            await store.close()

    asyncio.run(body())


def test_a_waiter_registered_after_the_loop_stopped_is_answered(
    tmp_path: Path,
) -> None:
    """The loop stopped on a corrupt payload; an input accepted afterwards
    (durable, queued behind the damaged one) gets a handle that is answered
    at once with the loop's error, as the earlier waiters were, instead of
    waiting until the adapter closes."""
    path = tmp_path / "late.db"

    async def body() -> None:
        (victim,) = await queued_file(path, ["victim"])
        vid = victim.id()
        store = SqliteRuntimeStore(path)
        try:
            adapter = adapter_over(store)
            await adapter.register_session(SID)
            row = store.raw_rows(records.INPUTS, RID)[str(vid)]
            document = row[:-16].replace(b'"text":"victim"', b'"text":7')
            store.corrupt_row(records.INPUTS, RID, str(vid), frame(document))
            first = await adapter.completion_for(SID, vid)
            await adapter.register_session_with_executor(SID, ToyExecutor())
            assert isinstance(await outcome_of(first), RuntimeTerminated)
            late = prompt("late")
            outcome, handle = await adapter.accept_input_with_completion(SID, late)
            assert outcome.is_accepted()
            assert handle is not None
            answer = await outcome_of(handle)
            assert isinstance(answer, RuntimeTerminated)
            assert str(vid) in answer.reason
            again = await adapter.completion_for(SID, late.id())
            assert again is not None
            assert isinstance(await outcome_of(again), RuntimeTerminated)
            await adapter.close()
        finally:
            await store.close()

    asyncio.run(body())
