"""Persistent driver: what reaches the store and in how many commits -
ephemeral inputs never (decision 13), supersession in one commit (decision 23),
receipts (decision 16), idempotency keys (T-15, decision 12), images as blob
references (T-20).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from meerkat_runtime import (
    InputDurability,
    InputTerminalOutcome,
    PromptInput,
    QueueMode,
    RecoveryReport,
    RunId,
    RuntimeDriverError,
)
from meerkat_runtime.blobs import (
    FileBlobStore,
    MemoryBlobStore,
)
from meerkat_runtime.driver.images import hydrate_images
from meerkat_runtime.inputs import (
    BlobImage,
    ImageBlock,
)
from meerkat_runtime.runs import (
    BoundaryApplied,
    RunCompleted,
)
from meerkat_runtime.store.records import INPUTS
from tests.driver.persistent import (
    _S,
    RID,
    Backend,
    FaultyStore,
    RoutingTable,
    accepted,
    assert_store_matches_memory,
    boundary,
    everything,
    image_prompt,
    message_for,
    new_driver,
    prompt,
    raw,
    receipt,
    restart,
    run,
    staged_alone,
    stored,
)

# ================================================================ decision 13


def test_ephemeral_input_never_reaches_the_store(backend: Backend) -> None:
    """Decision 13 / D-5: an ephemeral input is accepted, staged, applied and
    consumed in memory, yet never written (neither at accept nor in a later
    commit); neither is one abandoned by reset. A restart has no trace of
    them, not even their idempotency keys."""

    async def body(b: Backend) -> None:
        store = FaultyStore(b.open())
        driver = new_driver(store)
        durable = prompt("durable")
        fleeting = prompt(
            "fleeting", key="eph-key", durability=InputDurability.EPHEMERAL
        )
        await accepted(driver, durable, fleeting)
        assert set(store.inner.raw_rows(INPUTS, RID)) == {str(durable.id())}
        assert store.calls == ["persist_input_state"]

        run_id = RunId.new()
        ids = [durable.id(), fleeting.id()]
        driver.start_run(run_id)
        driver.stage_batch(ids, run_id)
        await driver.on_run_event(boundary(run_id, ids))
        await driver.on_run_event(RunCompleted(run_id=run_id, consumed_input_ids=ids))
        state = driver.input_state(fleeting.id())
        assert state is not None
        assert state.current_state() is _S.CONSUMED

        later = prompt("later", durability=InputDurability.EPHEMERAL)
        await accepted(driver, later)
        assert (await driver.reset()).inputs_abandoned == 1
        assert set(store.inner.raw_rows(INPUTS, RID)) == {str(durable.id())}
        assert await store.load_input_state(RID, fleeting.id()) is None
        assert (await stored(store, durable.id())).current_state() is _S.CONSUMED

        restarted, report, _ = await restart(b)
        assert restarted.input_state(fleeting.id()) is None
        assert restarted.input_state(later.id()) is None
        assert report == RecoveryReport()
        again = prompt("same key, new process", key="eph-key")
        assert (await restarted.accept_input(again)).is_accepted()

    run(backend, body)


# ================================================================ decision 23


def test_supersession_writes_both_inputs_in_one_commit(backend: Backend) -> None:
    """Decisions 20 and 23 (with 14): a replacement prompt supersedes the
    older one; the superseded state and the new input reach the store in the
    same atomic commit. If that commit fails neither is written and memory is
    unchanged; once it succeeds both are stored and survive a restart."""

    async def body(b: Backend) -> None:
        inner = b.open()
        store = FaultyStore(inner)
        table = RoutingTable({"prompt": QueueMode.SUPERSEDE})
        driver = new_driver(store, table=table)
        older, newer = prompt("v1", scope="draft"), prompt("v2", scope="draft")
        await accepted(driver, older)
        before, rows = everything(driver), raw(inner)

        store.fail = {"atomic_lifecycle_commit"}
        store.calls.clear()
        with pytest.raises(RuntimeDriverError.Internal) as err:
            await driver.accept_input(newer)
        assert message_for("atomic_lifecycle_commit") in str(err.value)
        assert store.calls == ["atomic_lifecycle_commit"]
        assert everything(driver) == before
        assert raw(inner) == rows

        store.fail = set()
        store.calls.clear()
        assert (await driver.accept_input(newer)).is_accepted()
        assert store.calls == ["atomic_lifecycle_commit"]
        old_state = await stored(inner, older.id())
        assert old_state.terminal_outcome() == InputTerminalOutcome.Superseded(
            superseded_by=newer.id()
        )
        assert (await stored(inner, newer.id())).current_state() is _S.QUEUED
        assert driver.observe().queue == (newer.id(),)

        restarted, report, _ = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1)
        assert restarted.observe().queue == (newer.id(),)

    run(backend, body)


# ================================================================ decision 16


def test_boundary_with_identical_stored_receipt_persists_states(
    backend: Backend,
) -> None:
    """Decision 16 / D-6 step 3: the session layer committed the receipt
    first; BoundaryApplied with the identical receipt succeeds and the input
    states are persisted anyway (memory never runs ahead of the store)."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a = prompt("a")
        run_id = await staged_alone(driver, a)
        await store.atomic_apply(RID, None, receipt(run_id, [a.id()]), [])

        await driver.on_run_event(
            BoundaryApplied(run_id=run_id, receipt=receipt(run_id, [a.id()]))
        )
        on_disk = await stored(store, a.id())
        assert on_disk.current_state() is _S.APPLIED_PENDING_CONSUMPTION
        assert await store.load_boundary_receipt(RID, run_id, 0) == receipt(
            run_id, [a.id()]
        )
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_boundary_with_conflicting_stored_receipt_fails_and_restores(
    backend: Backend,
) -> None:
    """Decision 16 with 14: a different receipt already stored for the same
    (run, sequence) is a write conflict; the driver raises Internal, memory
    is restored (still staged) and the store keeps its receipt."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a = prompt("a")
        run_id = await staged_alone(driver, a)
        theirs = msgspec.structs.replace(receipt(run_id, [a.id()]), message_count=7)
        await store.atomic_apply(RID, None, theirs, [])
        before, rows = everything(driver), raw(store)

        with pytest.raises(RuntimeDriverError.Internal, match="receipt conflict"):
            await driver.on_run_event(boundary(run_id, [a.id()]))
        assert everything(driver) == before
        assert raw(store) == rows
        state = driver.input_state(a.id())
        assert state is not None
        assert state.current_state() is _S.STAGED

    run(backend, body)


# ================================================================ T-15 / decision 12


def test_idempotency_keys_survive_restarts(backend: Backend) -> None:
    """T-15 / decision 12 / D-11 step 5: after a restart a key still
    deduplicates, against a queued input, a consumed one and one abandoned by
    reset; the duplicate is not stored."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        done, reset_one = prompt("done", key="k-done"), prompt("r", key="k-reset")
        await accepted(driver, done)
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_input(done.id(), run_id)
        await driver.on_run_event(boundary(run_id, [done.id()]))
        await driver.on_run_event(
            RunCompleted(run_id=run_id, consumed_input_ids=[done.id()])
        )
        await accepted(driver, reset_one)
        await driver.reset()
        waiting = prompt("waiting", key="k-wait")
        await accepted(driver, waiting)

        driver, _, store = await restart(b)
        rows = raw(store)[INPUTS]
        for key, original in (
            ("k-done", done),
            ("k-reset", reset_one),
            ("k-wait", waiting),
        ):
            duplicate = prompt("again", key=key)
            outcome = await driver.accept_input(duplicate)
            assert outcome.is_deduplicated(), key
            assert getattr(outcome, "existing_id", None) == original.id()
            assert await store.load_input_state(RID, duplicate.id()) is None
        assert raw(store)[INPUTS] == rows

    run(backend, body)


# ================================================================ images (T-20)


def test_stored_payload_has_blob_refs_that_hydrate(backend: Backend) -> None:
    """T-20 / D-5 step 3 / decision 13: the stored payload carries blob refs,
    no inline bytes; ``hydrate_images`` restores exactly the inline data."""

    async def body(b: Backend) -> None:
        store = b.open()
        blobs = MemoryBlobStore()
        driver = new_driver(store, blobs)
        raw_png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
        inp = image_prompt(raw_png)
        await accepted(driver, inp)

        payload = (await stored(store, inp.id())).persisted_input
        assert isinstance(payload, PromptInput)
        assert payload.blocks is not None
        image = payload.blocks[1]
        assert isinstance(image, ImageBlock)
        assert isinstance(image.data, BlobImage)
        assert b"\x89PNG" not in store.raw_rows(INPUTS, RID)[str(inp.id())]
        assert await blobs.exists(image.data.blob_id)

        hydrated = await hydrate_images(blobs, payload)
        assert hydrated == inp

    run(backend, body)


def test_file_blob_store_keeps_images_across_a_restart(
    backend: Backend, tmp_path: Path
) -> None:
    """T-20 / D-11: with a FileBlobStore the image survives the restart: the
    recovered input's blob refs hydrate to the original inline data through a
    new blob store object on the same folder."""

    async def body(b: Backend) -> None:
        root = tmp_path / "blobs"
        driver = new_driver(b.open(), FileBlobStore(root))
        inp = image_prompt(b"pixels" * 50)
        await accepted(driver, inp)

        blobs = FileBlobStore(root)
        driver, report, _ = await restart(b, blobs)
        assert report == RecoveryReport(inputs_recovered=1)
        dequeued = driver.dequeue_next()
        assert dequeued is not None
        assert dequeued[0] == inp.id()
        assert await hydrate_images(blobs, dequeued[1]) == inp

    run(backend, body)
