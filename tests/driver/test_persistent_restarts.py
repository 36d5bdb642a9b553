"""Persistent driver across restarts (Z-7, Z-8, D-11, D-13) and recovery of
stored state that cannot be (decisions 5 and 22).

A "restart" is a new driver on the same store followed by ``recover()``.
"""

from __future__ import annotations

import pytest

from meerkat_runtime import (
    InputAbandonReason,
    InputDurability,
    InputId,
    InputLifecycleInput,
    InputState,
    InputTerminalOutcome,
    RecoveryReport,
    RunId,
    RuntimeControlCommand,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.store.records import INPUTS, RECEIPTS, STATES
from tests.driver.persistent import (
    _S,
    RID,
    Backend,
    accepted,
    applied_steps,
    assert_store_matches_memory,
    boundary,
    everything,
    new_driver,
    prompt,
    raw,
    receipt,
    restart,
    run,
    staged_alone,
    stored,
    stored_state,
)

# ================================================================ restarts (Z-8)


def test_restart_with_queued_inputs(backend: Backend) -> None:
    """Z-8 / D-11, decisions 4, 18, 24: queued inputs come back queued in the
    same lanes and order with their stored policy; each restart counts one
    more recovery, in memory and on disk."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, steer, c = prompt("a"), prompt("steer", steer=True), prompt("c")
        await accepted(driver, a, steer, c)
        lanes = (driver.observe().queue, driver.observe().steer)
        assert lanes == ((a.id(), c.id()), (steer.id(),))
        policies = {i: driver.input_state(i) for i in (a.id(), steer.id(), c.id())}

        for count in (1, 2):
            driver, report, store = await restart(b)
            assert report == RecoveryReport(inputs_recovered=3)
            assert (driver.observe().queue, driver.observe().steer) == lanes
            for input_id, before in policies.items():
                state = driver.input_state(input_id)
                assert state is not None
                assert before is not None
                assert state.current_state() is _S.QUEUED
                assert state.policy == before.policy
                assert state.recovery_count == count
                assert (await stored(store, input_id)).recovery_count == count
            assert driver.runtime_state() is RuntimeState.IDLE
            assert await store.load_runtime_state(RID) is RuntimeState.IDLE
            assert driver.take_wake_requested()

        dequeued = driver.dequeue_next()
        assert dequeued is not None
        assert dequeued[0] == steer.id()  # the steer lane drains first

    run(backend, body)


def test_restart_with_a_staged_input_brings_it_back_queued(backend: Backend) -> None:
    """D-2 / Z-8: staging is never persisted, so a crash while an input is
    staged brings it back queued at the head of its lane, without the
    attempt: the store still held it as queued (nothing to requeue)."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, c = prompt("a"), prompt("c")
        await staged_alone(driver, a, c)

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=2)
        assert driver.observe().queue == (a.id(), c.id())
        state = driver.input_state(a.id())
        assert state is not None
        assert state.current_state() is _S.QUEUED
        assert state.attempt_count() == 0
        assert state.recovery_count == 1
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_restart_after_committed_boundary_consumes(backend: Backend) -> None:
    """D-11 step 1, decisions 18 and 24: an input applied with its receipt
    committed is consumed by recovery (counted recovered, not requeued) and
    never replayed; a second restart leaves the finished input alone."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, c = prompt("a"), prompt("c")
        run_id = await staged_alone(driver, a, c)
        await driver.on_run_event(boundary(run_id, [a.id()]))

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=2)
        state = driver.input_state(a.id())
        assert state is not None
        assert state.current_state() is _S.CONSUMED
        assert state.terminal_outcome() == InputTerminalOutcome.Consumed()
        assert (state.last_run_id(), state.last_boundary_sequence()) == (run_id, 0)
        assert state.recovery_count == 1
        assert driver.active_input_ids() == [c.id()]
        assert driver.observe().queue == (c.id(),)
        await assert_store_matches_memory(driver, store)

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1)
        assert (await stored(store, a.id())).recovery_count == 1
        assert (await stored(store, c.id())).recovery_count == 2

    run(backend, body)


def test_restart_with_applied_input_without_receipt_requeues(backend: Backend) -> None:
    """D-11 step 1 (spec input RecoverRequeue), decision 24: an applied input
    whose receipt never reached the store runs again: queued, its run,
    boundary and attempt metadata kept, and persisted back that way."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("applied, receipt lost")
        run_id = RunId.new()
        await store.persist_input_state(RID, stored_state(inp, applied_steps(run_id)))

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1, inputs_requeued=1)
        state = driver.input_state(inp.id())
        assert state is not None
        assert state.current_state() is _S.QUEUED
        assert (state.last_run_id(), state.last_boundary_sequence()) == (run_id, 0)
        assert state.attempt_count() == 1
        assert state.history()[-1].from_state is _S.APPLIED_PENDING_CONSUMPTION
        assert state.history()[-1].to_state is _S.QUEUED
        assert driver.observe().queue == (inp.id(),)
        on_disk = await stored(store, inp.id())
        assert on_disk.current_state() is _S.QUEUED
        assert (on_disk.last_run_id(), on_disk.last_boundary_sequence()) == (
            run_id,
            0,
        )
        assert on_disk.recovery_count == 1
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_restart_requeues_applied_input_a_foreign_receipt_does_not_name(
    backend: Backend,
) -> None:
    """D-11 step 1: a receipt at the input's (run, sequence) that does not
    list the input is no proof it was applied: it runs again."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("applied")
        run_id = RunId.new()
        await store.persist_input_state(RID, stored_state(inp, applied_steps(run_id)))
        await store.atomic_apply(RID, None, receipt(run_id, [InputId.new()]), [])

        driver, report, _ = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1, inputs_requeued=1)
        state = driver.input_state(inp.id())
        assert state is not None
        assert state.current_state() is _S.QUEUED

    run(backend, body)


def test_restart_abandons_applied_input_with_attempts_used_up(
    backend: Backend,
) -> None:
    """RecoverRequeue exhausted, decisions 3, 23, 24: an applied input without
    receipt whose attempts are used up is abandoned with
    ``max_attempts_exhausted`` and never queued."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("tried three times")
        await store.persist_input_state(
            RID, stored_state(inp, applied_steps(RunId.new(), attempts=3))
        )

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1, inputs_abandoned=1)
        state = driver.input_state(inp.id())
        assert state is not None
        assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.MaxAttemptsExhausted(attempts=3)
        )
        assert driver.observe().queue == ()
        assert driver.active_input_ids() == []
        assert (await stored(store, inp.id())).current_state() is _S.ABANDONED

    run(backend, body)


def test_restart_normalises_pre_run_records(backend: Backend) -> None:
    """D-11 step 2, decision 24: stored accepted and staged records (an older
    writer's) come back queued and count as requeued; a record without a
    payload cannot run and is abandoned ``cancelled`` with a detail line."""

    async def body(b: Backend) -> None:
        store = b.open()
        accepted_only, staged = prompt("accepted"), prompt("staged")
        await store.persist_input_state(RID, stored_state(accepted_only, []))
        await store.persist_input_state(
            RID,
            stored_state(
                staged,
                [
                    InputLifecycleInput.QueueAccepted(),
                    InputLifecycleInput.StageForRun(run_id=RunId.new()),
                ],
            ),
        )
        bare = InputState.new_accepted(InputId.new())
        bare.durability = InputDurability.DURABLE
        await store.persist_input_state(RID, bare)

        driver, report, store = await restart(b)
        assert report.inputs_recovered == 3
        assert report.inputs_requeued == 2
        assert report.inputs_abandoned == 1
        assert len(report.details) == 1
        assert str(bare.input_id) in report.details[0]
        assert driver.observe().queue == (accepted_only.id(), staged.id())
        state = driver.input_state(staged.id())
        assert state is not None
        assert state.attempt_count() == 1
        lost = driver.input_state(bare.input_id)
        assert lost is not None
        assert lost.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.Cancelled()
        )
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_restart_of_a_retired_runtime(backend: Backend) -> None:
    """Z-8 / D-11 step 9: a retired runtime comes back retired with its queue
    intact, refusing new input."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, c = prompt("a"), prompt("c")
        await accepted(driver, a, c)
        await driver.retire()

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=2)
        assert driver.runtime_state() is RuntimeState.RETIRED
        assert driver.observe().queue == (a.id(), c.id())
        assert await store.load_runtime_state(RID) is RuntimeState.RETIRED
        with pytest.raises(RuntimeDriverError.NotReady):
            await driver.accept_input(prompt("late"))

    run(backend, body)


@pytest.mark.parametrize("how", ["stop", "destroy"])
def test_restart_of_a_stopped_or_destroyed_runtime(backend: Backend, how: str) -> None:
    """Z-5 / D-11 step 9: a stopped or destroyed runtime comes back in that
    phase, its inputs abandoned as stored, nothing active."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a = prompt("a")
        await accepted(driver, a)
        if how == "stop":
            await driver.on_runtime_control(RuntimeControlCommand.STOP)
            phase = RuntimeState.STOPPED
        else:
            await driver.destroy()
            phase = RuntimeState.DESTROYED

        driver, report, store = await restart(b)
        assert report == RecoveryReport()
        assert driver.runtime_state() is phase
        assert await store.load_runtime_state(RID) is phase
        assert driver.active_input_ids() == []
        state = driver.input_state(a.id())
        assert state is not None
        assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.Destroyed()
        )

    run(backend, body)


def test_recycle_persists_idle_and_survives_a_restart(backend: Backend) -> None:
    """Decision 7 / D-13: recycling a retired runtime makes it idle and
    accepting with its work, and that idle phase is what a restart finds."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a = prompt("a")
        await accepted(driver, a)
        await driver.retire()
        assert await driver.recycle_preserving_work() == 1
        assert driver.runtime_state() is RuntimeState.IDLE
        assert driver.observe().queue == (a.id(),)

        driver, report, store = await restart(b)
        assert driver.runtime_state() is RuntimeState.IDLE
        assert await store.load_runtime_state(RID) is RuntimeState.IDLE
        assert report == RecoveryReport(inputs_recovered=1)
        assert (await driver.accept_input(prompt("b"))).is_accepted()

    run(backend, body)


# ================================================================ decisions 5 and 22


@pytest.mark.parametrize("phase", [RuntimeState.STOPPED, RuntimeState.DESTROYED])
def test_terminal_runtime_with_active_inputs_is_store_corruption(
    backend: Backend, phase: RuntimeState
) -> None:
    """Decision 5 (D-11 step 10) with decision 22: recovery fails closed with
    an error naming store corruption, and changes nothing in memory or on
    disk."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("left behind")
        await store.persist_input_state(
            RID, stored_state(inp, [InputLifecycleInput.QueueAccepted()])
        )
        await store.persist_runtime_state(RID, phase)
        rows = raw(store)
        driver = new_driver(store)
        before = everything(driver)

        with pytest.raises(RuntimeDriverError.Internal, match="store corruption"):
            await driver.recover()
        assert everything(driver) == before
        assert driver.input_state(inp.id()) is None
        assert driver.runtime_state() is RuntimeState.IDLE
        assert raw(store) == rows

    run(backend, body)


@pytest.mark.parametrize("table", [INPUTS, RECEIPTS, STATES])
def test_corrupt_row_fails_recovery_without_side_effects(
    backend: Backend, table: str
) -> None:
    """Decision 22 (and the records module's ReadFailed naming the table): a
    corrupt stored row makes recovery raise; nothing is loaded into memory
    and nothing is written."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a, c = prompt("a"), prompt("c")
        run_id = await staged_alone(driver, a, c)
        await driver.on_run_event(boundary(run_id, [a.id()]))
        await driver.retire()
        record = {
            INPUTS: str(c.id()),
            RECEIPTS: f"{run_id}/0",
            STATES: str(RID),
        }[table]
        store.corrupt_row(table, RID, record, b"{not json")
        rows = raw(store)

        fresh = new_driver(b.open())
        before = everything(fresh)
        with pytest.raises(RuntimeDriverError.Internal) as err:
            await fresh.recover()
        assert table in str(err.value)
        assert everything(fresh) == before
        assert fresh.observe().inputs == ()
        assert raw(store) == rows

    run(backend, body)
