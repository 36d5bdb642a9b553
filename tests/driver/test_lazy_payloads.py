"""Lazy payloads (PD-64, PD-65): a lazy persistent driver recovers records
without their payloads and reads a payload back only when it is needed (a
run, a write of its record), one read per batch.

The store is SQLite (the memory store loads everything: PD-64); a restart
is a new store object on the same file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    InputId,
    PersistentRuntimeDriver,
    RunId,
    RuntimeDriverError,
    SqliteRuntimeStore,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PAYLOADS_KEPT
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.policy_table import PolicyDecision, QueueMode
from meerkat_runtime.input_state import InputState, PolicySnapshot
from meerkat_runtime.inputs import Input, PromptInput
from meerkat_runtime.policy import DefaultPolicyTable, PolicySubject
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStore, RuntimeStoreError
from meerkat_runtime.store.integrity import frame
from meerkat_runtime.testing.faults import FaultyStore
from tests.driver.persistent import _S, RID, prompt


def lazy_driver(
    store: RuntimeStore, table: Any = None, max_pending: int = 100_000
) -> PersistentRuntimeDriver:
    return PersistentRuntimeDriver(
        RID,
        store,
        MemoryBlobStore(),
        policy_table=table,
        lazy_payloads=True,
        max_pending_inputs=max_pending,
    )


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


async def accepted_file(path: Path, inputs: list[PromptInput]) -> None:
    """A file holding ``inputs`` queued, written by a driver now gone."""
    store = SqliteRuntimeStore(path)
    try:
        driver = lazy_driver(store)
        await driver.recover()
        for inp in inputs:
            assert (await driver.accept_input(inp)).is_accepted()
    finally:
        await store.close()


def test_recovery_leaves_payloads_in_the_store_until_they_are_loaded(
    tmp_path: Path,
) -> None:
    """PD-64: recovered queued inputs keep their kind and lane but not their
    payload; ``load_payloads`` brings back exactly what was accepted, and
    only then do ``payload`` and ``dequeue_next`` answer it."""
    path = tmp_path / "lazy.db"
    inputs = [prompt(f"text {i}") for i in range(3)]

    async def body() -> None:
        await accepted_file(path, inputs)
        store = SqliteRuntimeStore(path)
        try:
            driver = lazy_driver(store)
            report = await driver.recover()
            assert report.inputs_recovered == 3
            ids = [inp.id() for inp in inputs]
            assert driver.queued_input_ids() == ids
            first = driver.input_state(ids[0])
            assert first is not None
            assert not first.payload_loaded()
            assert driver.input_kind(ids[0]) == "prompt"
            with pytest.raises(
                RuntimeDriverError.ValidationFailed, match="load_payloads"
            ):
                driver.payload(ids[0])
            await driver.load_payloads(ids[:2])
            assert driver.payload(ids[0]) == inputs[0]
            assert driver.payload(ids[1]) == inputs[1]
            third = driver.input_state(ids[2])
            assert third is not None
            assert not third.payload_loaded()
            full = await driver.input_state_with_payload(ids[2])
            assert full is not None
            assert full.persisted_input == inputs[2]
            assert driver.dequeue_next() == (ids[0], inputs[0])
        finally:
            await store.close()

    run(body)


class CountingStore(SqliteRuntimeStore):
    """Counts the reads it makes (one statement each, a bulk one too)."""

    reads = 0

    async def _read(self, work: Callable[[Any], Any], *, scan: bool = False) -> Any:
        CountingStore.reads += 1
        return await super()._read(work, scan=scan)

    async def _read_chunks(self, *args: Any) -> None:
        CountingStore.reads += 1
        await super()._read_chunks(*args)


@pytest.mark.parametrize("pending", [30, 300])
def test_recovery_reads_a_constant_number_of_times_and_decodes_no_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pending: int
) -> None:
    """Linear recovery (PD-64): the number of store reads does not grow with
    the queue, and no payload is decoded (only skeletons)."""
    path = tmp_path / "count.db"
    full_decodes: list[str] = []
    decode_state = records.decode_state

    def counted(runtime_id: str, record_id: str, data: object) -> Any:
        full_decodes.append(record_id)
        return decode_state(runtime_id, record_id, data)

    async def body() -> None:
        await accepted_file(path, [prompt(f"p{i}") for i in range(pending)])
        monkeypatch.setattr(records, "decode_state", counted)
        CountingStore.reads = 0
        store = CountingStore(path)
        try:
            report = await lazy_driver(store).recover()
        finally:
            await store.close()
        assert report.inputs_recovered == pending
        assert full_decodes == []
        # states, their count check, the phase, the receipts, the inbox (PD-72)
        assert CountingStore.reads == 5

    run(body)


def test_a_payload_load_that_fails_changes_nothing(tmp_path: Path) -> None:
    """A store fault at fetch (PD-64): the error is the store's own, with its
    ``retryable``; the input stays queued, still unloaded, and a later load
    succeeds."""
    path = tmp_path / "fault.db"
    inp = prompt("kept")

    async def body() -> None:
        await accepted_file(path, [inp])
        store = FaultyStore(SqliteRuntimeStore(path))
        try:
            driver = lazy_driver(store)
            await driver.recover()
            store.payload_fault = RuntimeStoreError.Unavailable("injected")
            with pytest.raises(RuntimeStoreError.Unavailable) as caught:
                await driver.load_payloads([inp.id()])
            assert caught.value.retryable
            state = driver.input_state(inp.id())
            assert state is not None
            assert not state.payload_loaded()
            assert state.current_state() is _S.QUEUED
            assert driver.queued_input_ids() == [inp.id()]
            await driver.load_payloads([inp.id()])
            assert driver.payload(inp.id()) == inp
        finally:
            await store.close()

    run(body)


def damaged_payload(state_record: bytes) -> bytes:
    """The record with its prompt's text a number: a checksum that matches,
    a record that parses, a payload that fails its strict decoding."""
    document = state_record[:-16]
    assert b'"text":"victim"' in document
    return frame(document.replace(b'"text":"victim"', b'"text":7'))


def test_a_corrupt_payload_found_when_loading_is_corrupt_naming_the_input(
    tmp_path: Path,
) -> None:
    """PD-64: a payload that fails its checks when it is fetched is
    ``Corrupt`` naming the input (never treated as absent); nothing changes."""
    path = tmp_path / "corrupt.db"
    good, victim = prompt("fine"), prompt("victim")

    async def body() -> None:
        await accepted_file(path, [good, victim])
        store = SqliteRuntimeStore(path)
        try:
            driver = lazy_driver(store)
            await driver.recover()
            row = store.raw_rows(records.INPUTS, RID)[str(victim.id())]
            store.corrupt_row(
                records.INPUTS, RID, str(victim.id()), damaged_payload(row)
            )
            with pytest.raises(RuntimeStoreError.Corrupt, match=str(victim.id())):
                await driver.load_payloads([good.id(), victim.id()])
            for inp in (good, victim):
                state = driver.input_state(inp.id())
                assert state is not None
                assert not state.payload_loaded()
        finally:
            await store.close()

    run(body)


class SupersedingPrompts:
    def resolve(self, input: PolicySubject, runtime_idle: bool) -> PolicyDecision:
        import msgspec

        decision = DefaultPolicyTable.resolve(input, runtime_idle)
        return msgspec.structs.replace(decision, queue_mode=QueueMode.SUPERSEDE)


def test_writing_an_input_left_in_the_store_keeps_its_payload(tmp_path: Path) -> None:
    """A record is written whole: superseding a recovered (unloaded) input
    writes it with its payload, and so does a reset of the whole queue."""
    path = tmp_path / "write.db"
    older, other = prompt("older", scope="s"), prompt("other")

    async def body() -> None:
        await accepted_file(path, [older, other])
        store = SqliteRuntimeStore(path)
        try:
            driver = lazy_driver(store, SupersedingPrompts())
            await driver.recover()
            newer = prompt("newer", scope="s")
            assert (await driver.accept_input(newer)).is_accepted()
            assert driver.input_state(older.id()).current_state() is _S.SUPERSEDED  # type: ignore[union-attr]
            await driver.reset()
            stored = {s.input_id: s for s in await store.load_input_states(RID)}
            assert stored[older.id()].persisted_input == older
            assert stored[other.id()].persisted_input == other
            assert stored[other.id()].current_state() is _S.ABANDONED
            state = driver.input_state(other.id())
            assert state is not None
            assert not state.payload_loaded()
        finally:
            await store.close()

    run(body)


def test_durable_accepts_into_a_deep_queue_leave_their_payloads_in_the_store(
    tmp_path: Path,
) -> None:
    """PD-65: past ``PAYLOADS_KEPT`` unfinished inputs a durable accept keeps
    only the payload's key; a shorter queue keeps payloads in memory. A run
    of a shed input gets its payload back."""
    path = tmp_path / "deep.db"

    async def body() -> None:
        store = SqliteRuntimeStore(path)
        try:
            driver = lazy_driver(store)
            await driver.recover()
            inputs: list[Input] = [
                PromptInput.new(f"p{i}") for i in range(PAYLOADS_KEPT + 3)
            ]
            for inp in inputs:
                assert (await driver.accept_input(inp)).is_accepted()
            loaded = [driver.input_state(i.id()).payload_loaded() for i in inputs]  # type: ignore[union-attr]
            assert loaded == [True] * PAYLOADS_KEPT + [False] * 3
            last = inputs[-1].id()
            await driver.load_payloads([last])
            assert driver.payload(last) == inputs[-1]
        finally:
            await store.close()

    run(body)


def test_a_recovered_batch_runs_with_its_payloads(tmp_path: Path) -> None:
    """Staging after ``load_payloads``: the run applies the stored inputs and
    its boundary writes them whole."""
    path = tmp_path / "run.db"
    inputs = [prompt("one"), prompt("two")]

    async def body() -> None:
        await accepted_file(path, inputs)
        store = SqliteRuntimeStore(path)
        try:
            driver = lazy_driver(store)
            await driver.recover()
            ids: list[InputId] = [inputs[0].id()]
            await driver.load_payloads(ids)
            run_id = RunId.new()
            driver.start_run(run_id)
            driver.stage_batch(ids, run_id)
            assert driver.payload(ids[0]) == inputs[0]
            stored = await store.load_input_state(RID, inputs[1].id())
            assert stored is not None
            assert stored.persisted_input == inputs[1]
        finally:
            await store.close()

    run(body)


def test_a_skeleton_shares_what_equal_records_repeat() -> None:
    """Memory per pending input (PD-64): a skeleton reads back the same
    record, but its policy, its accept's timestamp and its history's reason
    are objects shared with other skeletons (or its own ``created_at``)."""
    states = []
    for text in ("a", "b"):
        accepted_state = InputState.new_accepted(InputId.new())
        accepted_state.policy = PolicySnapshot(
            version=1, decision=DefaultPolicyTable.resolve(prompt(text), True)
        )
        accepted_state.persisted_input = prompt(text)
        accepted_state.apply(il.QueueAccepted(), now=accepted_state.created_at)
        states.append(accepted_state)
    skeletons = [
        records.decode_skeleton_state("r", str(s.input_id), records.encode_state(s))
        for s in states
    ]
    for state, skeleton in zip(states, skeletons, strict=True):
        assert skeleton.history() == state.history()
        assert skeleton.payload_key() == state.payload_key()
        (entry,) = skeleton.history()
        assert entry.timestamp is skeleton.created_at
        assert skeleton.updated_at() is skeleton.created_at
    first, second = skeletons
    assert first.policy is second.policy
    assert first.history()[0].reason is second.history()[0].reason
