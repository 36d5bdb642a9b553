"""Restarts that are large or that find the store contradicting memory.

* A crash between a boundary commit and the run's completion leaves a big
  applied batch; its restart reads each committed receipt once, however
  many inputs the receipt names (it used to read and decode the receipt
  once per input: quadratic in the batch size).
* A live ``recover()`` over a store that says the runtime is stopped or
  destroyed while inputs are unfinished fails closed, as a first recovery
  does (decision 5), and changes nothing in memory or on disk.
"""

from __future__ import annotations

import pytest

from meerkat_runtime import RuntimeDriverError
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.testing.faults import FaultyStore
from tests.driver.persistent import (
    RID,
    Backend,
    accepted,
    backend,
    boundary,
    everything,
    new_driver,
    prompt,
    raw,
    run,
)

__all__ = ["backend"]  # the fixture, imported for its use here

BATCH = 240


class CountingStore(FaultyStore):
    """Delegates everything; counts the receipt reads."""

    def __init__(self, inner: RuntimeStore) -> None:
        super().__init__(inner)
        self.receipt_reads = 0

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        self.receipt_reads += 1
        return await super().load_boundary_receipt(runtime_id, run_id, sequence)

    async def load_boundary_receipts(
        self, runtime_id: LogicalRuntimeId
    ) -> list[RunBoundaryReceipt]:
        self.receipt_reads += 1
        return await super().load_boundary_receipts(runtime_id)


async def applied_in_two_boundaries(
    driver: PersistentRuntimeDriver, n: int
) -> tuple[RunId, list[InputId]]:
    """``n`` prompts accepted, staged in one run and applied by its two
    boundaries (half each); the run does not complete."""
    inputs = [prompt(f"p{i}") for i in range(n)]
    await accepted(driver, *inputs)
    ids = [inp.id() for inp in inputs]
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_batch(ids, run_id)
    await driver.on_run_event(boundary(run_id, ids[: n // 2], sequence=0))
    await driver.on_run_event(boundary(run_id, ids[n // 2 :], sequence=1))
    return run_id, ids


def test_restart_after_a_big_applied_batch_reads_each_receipt_once(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two boundaries of one run apply 240 inputs, then the process dies
    before the run completes: the restart consumes all 240 and decodes each
    of the two receipts once (it read one per input): one listing of the
    runtime's receipts, which the recovery check (PD-49) and D-11 step 1
    share."""

    async def body(b: Backend) -> None:
        run_id, ids = await applied_in_two_boundaries(new_driver(b.open()), BATCH)
        # the process dies here: no RunCompleted

        decoded: list[str] = []
        decode = records.decode_receipt

        def counted(runtime: str, record: str, data: bytes) -> RunBoundaryReceipt:
            decoded.append(record)
            return decode(runtime, record, data)

        monkeypatch.setattr(records, "decode_receipt", counted)
        store = CountingStore(b.open())
        restarted = new_driver(store)
        report = await restarted.recover()

        assert store.receipt_reads == 1
        assert sorted(decoded) == [f"{run_id}/0", f"{run_id}/1"]
        assert report.inputs_recovered == BATCH
        assert report.inputs_requeued == 0
        assert restarted.queued_input_ids() == []
        for input_id in ids:
            state = restarted.input_state(input_id)
            assert state is not None
            assert state.current_state() is InputLifecycleState.CONSUMED

    run(backend, body)


def test_inputs_a_receipt_does_not_name_run_again(backend: Backend) -> None:
    """Grouping by receipt keeps D-11 step 1 exact: an input stamped with a
    (run, sequence) whose receipt does not name it is queued again."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        inputs = [prompt(f"p{i}") for i in range(4)]
        await accepted(driver, *inputs)
        ids = [inp.id() for inp in inputs]
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_batch(ids, run_id)
        await driver.on_run_event(boundary(run_id, ids))
        # An earlier process's receipt for the same (run, sequence) that
        # names only the first two (as a store written by another version).
        named = boundary(run_id, ids[:2]).receipt
        key = f"{run_id}/0"
        store.corrupt_row(records.RECEIPTS, RID, key, records.encode_receipt(named))

        restarted = new_driver(b.open())
        report = await restarted.recover()
        assert report.inputs_requeued == 2
        assert restarted.queued_input_ids() == ids[2:]

    run(backend, body)


@pytest.mark.parametrize("phase", [RuntimeState.STOPPED, RuntimeState.DESTROYED])
def test_live_recover_over_a_terminal_stored_phase_fails_closed(
    backend: Backend, phase: RuntimeState
) -> None:
    """Decision 5 for a live driver: the store says stopped or destroyed
    while this driver holds a queued input. The live ``recover()`` used to
    restore the terminal phase, keep the input queued and write that back;
    it refuses, naming store corruption, and changes nothing."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        inp = prompt("waiting")
        await accepted(driver, inp)
        await store.persist_runtime_state(RID, phase)
        rows = raw(store)
        before = everything(driver)

        with pytest.raises(RuntimeDriverError.Internal, match="store corruption"):
            await driver.recover()

        assert everything(driver) == before
        assert driver.runtime_state() is RuntimeState.IDLE
        assert raw(store) == rows

    run(backend, body)


def test_the_default_receipt_listing_reads_each_named_receipt_once(
    backend: Backend,
) -> None:
    """``RuntimeStore.load_boundary_receipts``'s default (for a store that
    cannot list its receipt rows): the receipts the stored inputs name, in
    the order those inputs were stored, each read once."""

    async def body(b: Backend) -> None:
        run_id, _ = await applied_in_two_boundaries(new_driver(b.open()), 6)

        store = CountingStore(b.open())
        listed = await RuntimeStore.load_boundary_receipts(store, RID)
        assert [(r.run_id, r.sequence) for r in listed] == [(run_id, 0), (run_id, 1)]
        assert store.receipt_reads == 2
        assert listed == await b.open().load_boundary_receipts(RID)

    run(backend, body)
