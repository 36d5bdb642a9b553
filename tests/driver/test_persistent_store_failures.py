"""Persistent driver: a store that refuses a write leaves memory as it was and
writes nothing (decision 14, D-5), for every operation that writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from meerkat_runtime import (
    InputAbandonReason,
    InputId,
    InputLifecycleInput,
    RunId,
    RuntimeControlCommand,
    RuntimeDriverError,
)
from meerkat_runtime.blobs import (
    BlobRef,
    BlobStoreError,
    MemoryBlobStore,
)
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.runs import (
    RunCancelled,
    RunCompleted,
    RunFailed,
)
from tests.driver.persistent import (
    RID,
    Backend,
    FaultyStore,
    accepted,
    assert_store_matches_memory,
    boundary,
    everything,
    image_prompt,
    message_for,
    new_driver,
    prompt,
    raw,
    run,
    stored_state,
)

# ================================================================ decision 14

Call = Callable[[], Awaitable[object]]
Prepare = Callable[[FaultyStore], Awaitable[tuple[PersistentRuntimeDriver, Call]]]


async def _prep_accept(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("earlier", key="k-earlier"))
    inp = prompt("new", key="k-new")
    return driver, lambda: driver.accept_input(inp)


async def _running(
    store: FaultyStore, count: int, staged: int = 1
) -> tuple[PersistentRuntimeDriver, RunId, list[InputId]]:
    """A driver with ``count`` accepted prompts, the first ``staged`` staged
    for a current run."""
    driver = new_driver(store)
    inputs = [prompt(f"p{i}") for i in range(count)]
    await accepted(driver, *inputs)
    ids = [i.id() for i in inputs]
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_batch(ids[:staged], run_id)
    return driver, run_id, ids


async def _prep_boundary(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, ids = await _running(store, 2)
    event = boundary(run_id, ids[:1])
    return driver, lambda: driver.on_run_event(event)


async def _prep_completed(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, ids = await _running(store, 2)
    await driver.on_run_event(boundary(run_id, ids[:1]))
    event = RunCompleted(run_id=run_id, consumed_input_ids=ids[:1])
    return driver, lambda: driver.on_run_event(event)


async def _prep_failed(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, _ = await _running(store, 3, staged=2)
    event = RunFailed(run_id=run_id, error="boom", recoverable=True)
    return driver, lambda: driver.on_run_event(event)


async def _prep_cancelled(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, _ = await _running(store, 2)
    event = RunCancelled(run_id=run_id)
    return driver, lambda: driver.on_run_event(event)


async def _prep_withdraw(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, _ = await _running(store, 3, staged=2)
    return driver, lambda: driver.withdraw_run(run_id)


async def _prep_retire(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, _, _ = await _running(store, 2)
    return driver, driver.retire


async def _prep_reset(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("a", key="k-a"), prompt("b"))
    return driver, driver.reset


async def _prep_destroy(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("a", key="k-a"), prompt("b"))
    return driver, driver.destroy


async def _prep_stop(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, _, _ = await _running(store, 2)
    return driver, lambda: driver.on_runtime_control(RuntimeControlCommand.STOP)


async def _prep_recycle(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("a"), prompt("b"))
    await driver.retire()
    return driver, driver.recycle_preserving_work


async def _prep_abandon(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, _, _ = await _running(store, 3)
    return driver, lambda: driver.abandon_pending_inputs(InputAbandonReason.Cancelled())


async def _prep_recover(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    """An earlier process left: one input applied with its receipt, one
    staged (stored as queued), one queued, and a retired runtime."""
    earlier, run_id, ids = await _running(store, 3)
    await earlier.on_run_event(boundary(run_id, ids[:1]))
    await earlier.retire()
    driver = new_driver(store)
    return driver, driver.recover


async def _prep_recover_after_accept(
    store: FaultyStore,
) -> tuple[PersistentRuntimeDriver, Call]:
    """As ``_prep_recover``, but the new driver already holds an input."""
    driver, call = await _prep_recover(store)
    await accepted(driver, prompt("accepted before recover", key="k-early"))
    return driver, call


# case -> (the failing store method, the operation, what the driver's
# Internal error says before the store's own text: D-5 .. D-9, D-11)
CASES: dict[str, tuple[str, Prepare, str]] = {
    "accept": ("persist_input_state", _prep_accept, ""),
    "boundary_applied": (
        "atomic_apply",
        _prep_boundary,
        "runtime boundary commit failed: ",
    ),
    "run_completed": (
        "atomic_lifecycle_commit",
        _prep_completed,
        "terminal event persist failed: ",
    ),
    "run_failed": (
        "atomic_lifecycle_commit",
        _prep_failed,
        "terminal event persist failed: ",
    ),
    "run_cancelled": (
        "atomic_lifecycle_commit",
        _prep_cancelled,
        "terminal event persist failed: ",
    ),
    "withdraw_run": (
        "atomic_lifecycle_commit",
        _prep_withdraw,
        "run withdrawal persist failed: ",
    ),
    "retire": ("atomic_lifecycle_commit", _prep_retire, "retire persist failed: "),
    "reset": ("atomic_lifecycle_commit", _prep_reset, "reset persist failed: "),
    "destroy": ("atomic_lifecycle_commit", _prep_destroy, "destroy persist failed: "),
    "stop": ("atomic_lifecycle_commit", _prep_stop, "control op persist failed: "),
    "recycle_preserving_work": (
        "atomic_lifecycle_commit",
        _prep_recycle,
        "recycle persist failed: ",
    ),
    "abandon_pending_inputs": (
        "atomic_lifecycle_commit",
        _prep_abandon,
        "pending input abandon persist failed: ",
    ),
    "recover": ("atomic_lifecycle_commit", _prep_recover, "recovery persist failed: "),
    "recover_load_states": ("load_input_states", _prep_recover, ""),
    "recover_load_receipt": ("load_boundary_receipt", _prep_recover, ""),
    "recover_load_runtime_state": ("load_runtime_state", _prep_recover, ""),
    "recover_after_accept": (
        "atomic_lifecycle_commit",
        _prep_recover_after_accept,
        "recovery persist failed: ",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_store_failure_restores_memory_and_writes_nothing(
    backend: Backend, case: str
) -> None:
    """Decision 14 (D-4 .. D-9, D-11, D-13) and decision 22: whatever
    operation's store call fails, the caller gets ``Internal`` with the
    operation's text and then the store's (D-5: the store's alone; D-11 step
    11: "recovery persist failed"; a failed read: the store's alone), memory
    is exactly as before the call (states, lanes, batch, phase, signal, event
    buffer), nothing reached the store, and the same call succeeds once the
    store works again."""
    failing, prepare, context = CASES[case]

    async def body(b: Backend) -> None:
        inner = b.open()
        store = FaultyStore(inner)
        driver, call = await prepare(store)
        before = everything(driver)
        rows_before = raw(inner)

        store.fail = {failing}
        with pytest.raises(RuntimeDriverError.Internal) as err:
            await call()
        kind = "read" if failing.startswith("load_") else "write"
        assert str(err.value) == (
            f"Internal error: {context}Store {kind} failed: {message_for(failing)}"
        )
        assert everything(driver) == before
        assert raw(inner) == rows_before
        assert len(driver.drain_events()) == before[0].events

        store.fail = set()
        await call()
        assert raw(inner) != rows_before
        await assert_store_matches_memory(driver, inner)

    run(backend, body)


def test_failed_destroy_keeps_idempotency_keys(backend: Backend) -> None:
    """Decisions 12 and 14: destroy forgets keys, so a destroy the store
    refused must give them back: the key still deduplicates afterwards."""

    async def body(b: Backend) -> None:
        store = FaultyStore(b.open())
        driver = new_driver(store)
        original = prompt("a", key="k-keep")
        await accepted(driver, original)
        store.fail = {"atomic_lifecycle_commit"}
        with pytest.raises(RuntimeDriverError.Internal):
            await driver.destroy()
        store.fail = set()
        outcome = await driver.accept_input(prompt("again", key="k-keep"))
        assert outcome.is_deduplicated()
        assert getattr(outcome, "existing_id", None) == original.id()

    run(backend, body)


def test_failed_recover_keeps_keys_of_inputs_accepted_before_it(
    backend: Backend,
) -> None:
    """Decision 22: a recovery that fails leaves the driver as before,
    including the idempotency index of the inputs it already held, even when
    a stored record it loaded (and dropped again) carries the same key."""

    async def body(b: Backend) -> None:
        inner = b.open()
        older = prompt("from the last process", key="shared-key")
        await inner.persist_input_state(
            RID, stored_state(older, [InputLifecycleInput.QueueAccepted()])
        )
        store = FaultyStore(inner)
        driver = new_driver(store)
        mine = prompt("accepted before recover", key="shared-key")
        await accepted(driver, mine)
        store.fail = {"atomic_lifecycle_commit"}
        with pytest.raises(RuntimeDriverError.Internal):
            await driver.recover()
        # The stored input it queued (in one step) is out of the lane again.
        assert driver.queued_input_ids() == [mine.id()]
        store.fail = set()
        outcome = await driver.accept_input(prompt("dup", key="shared-key"))
        assert outcome.is_deduplicated()
        assert getattr(outcome, "existing_id", None) == mine.id()

    run(backend, body)


def test_live_recover_with_nothing_new_keeps_what_dequeue_handed_out(
    backend: Backend,
) -> None:
    """R-5 (review finding): ``dequeue_next`` marks what it handed out until
    the lanes change; a live ``recover()`` that queues nothing new leaves
    the lanes, so the next dequeue still moves on to the next input."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        first, second = prompt("first"), prompt("second")
        await accepted(driver, first, second)
        taken = driver.dequeue_next()
        assert taken is not None
        assert taken[0] == first.id()
        await driver.recover()
        after = driver.dequeue_next()
        assert after is not None
        assert after[0] == second.id()

    run(backend, body)


class FailingBlobStore(MemoryBlobStore):
    async def put_image(self, media_type: str, data: str) -> BlobRef:
        raise BlobStoreError.Internal(
            f"injected blob failure ({media_type}, {len(data)} chars): disk full"
        )


def test_blob_failure_at_accept_restores_memory(backend: Backend) -> None:
    """D-5 step 3 with decision 14: when an image cannot be externalised the
    accept fails with Internal carrying the blob store's text, and leaves no
    ledger entry, lane entry, event or store row."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store, FailingBlobStore())
        await accepted(driver, prompt("text only"))
        before, rows = everything(driver), raw(store)
        with pytest.raises(RuntimeDriverError.Internal, match="disk full"):
            await driver.accept_input(image_prompt(b"img"))
        assert everything(driver) == before
        assert raw(store) == rows

    run(backend, body)
