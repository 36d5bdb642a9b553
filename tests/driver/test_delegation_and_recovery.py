"""The persistent driver's delegations, recovery and refused operations, each
on both stores; what once went wrong:

* pure delegations (D-2: ``apply_input``, ``consume_inputs``,
  ``rollback_staged`` ...) change memory without writing, and the next
  lifecycle commit wrote only what its own operation touched, so their
  changes never reached the disk (upstream writes every ledger state there,
  D-7 .. D-9): a consumed input came back queued and ran twice;
* recovery consumed only pending-consumption inputs named by a receipt, not
  applied ones (D-11 step 1);
* a retired runtime running its drain was stored as running by a Stop/Resume
  or a superseding accept, and a crash then brought it back idle and
  accepting (PD-8: stored as retired);
* a refused operation did not give back what ``dequeue_next`` had handed out
  (decision 14: memory exactly as before).
"""

from __future__ import annotations

import msgspec
import pytest

from meerkat_runtime import (
    QueueMode,
    RunId,
    RuntimeControlCommand,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import (
    MarkApplied,
    QueueAccepted,
    StageForRun,
)
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.runs import BoundaryApplied, RunCompleted, RunFailed
from tests.driver.persistent import (
    _S,
    RID,
    Backend,
    FaultyStore,
    RoutingTable,
    accepted,
    assert_store_matches_memory,
    everything,
    new_driver,
    prompt,
    receipt,
    restart,
    run,
    staged_alone,
    stored,
    stored_state,
)


async def consumed_by_delegation(
    driver: PersistentRuntimeDriver, inp: PromptInput
) -> RunCompleted:
    """Accept ``inp``, then run, apply and consume it through D-2's pure
    delegations (nothing written); the event that ends the run."""
    run_id = await staged_alone(driver, inp)
    driver.apply_input(inp.id(), run_id)
    driver.consume_inputs([inp.id()], run_id)
    return RunCompleted(run_id=run_id, consumed_input_ids=[inp.id()])


def test_inputs_consumed_through_delegation_are_written_by_the_next_commit(
    backend: Backend,
) -> None:
    """D-2 with D-7: ``apply_input`` and ``consume_inputs`` only change
    memory; the run's terminal commit writes them, so a restart finds the
    input consumed and does not run it again."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a = prompt("a")
        await driver.on_run_event(await consumed_by_delegation(driver, a))
        assert (await stored(store, a.id())).current_state() is _S.CONSUMED
        await assert_store_matches_memory(driver, store)

        again, report, _ = await restart(b)
        assert again.queued_input_ids() == []
        assert report.inputs_recovered == 0

    run(backend, body)


def test_attempts_of_a_batch_rolled_back_by_delegation_survive_a_restart(
    backend: Backend,
) -> None:
    """Decision 3 with D-2 and D-7: ``rollback_staged`` of part of a batch,
    then ``RunFailed``: the attempt counted and the run id reach the disk."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a, c = prompt("a"), prompt("c")
        await accepted(driver, a, c)
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_batch([a.id(), c.id()], run_id)
        driver.rollback_staged([a.id()])
        await driver.on_run_event(
            RunFailed(run_id=run_id, error="boom", recoverable=True)
        )
        await assert_store_matches_memory(driver, store)
        assert (await stored(store, a.id())).attempt_count() == 1

    run(backend, body)


def test_a_refused_commit_still_owes_the_delegated_changes(backend: Backend) -> None:
    """Decision 14: when the lifecycle commit carrying delegated changes is
    refused, memory stays as it was, and the retried commit writes them."""

    async def body(b: Backend) -> None:
        inner = b.open()
        store = FaultyStore(inner)
        driver = new_driver(store)
        a = prompt("a")
        event = await consumed_by_delegation(driver, a)
        store.fail = {"atomic_lifecycle_commit"}
        with pytest.raises(Exception, match="terminal event persist failed"):
            await driver.on_run_event(event)
        assert (await stored(inner, a.id())).current_state() is _S.QUEUED
        store.fail = set()
        await driver.on_run_event(event)
        assert (await stored(inner, a.id())).current_state() is _S.CONSUMED

    run(backend, body)


@pytest.mark.parametrize("receipt_committed", [True, False])
def test_recovery_of_a_stamped_applied_input_follows_its_receipt(
    backend: Backend, receipt_committed: bool
) -> None:
    """D-11 step 1: an applied input (not only a pending-consumption one)
    that a store stamped comes back consumed when a committed receipt names
    it, and queued to run again when none does."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp, run_id = prompt("applied"), RunId.new()
        state = stored_state(
            inp,
            [QueueAccepted(), StageForRun(run_id=run_id), MarkApplied(run_id=run_id)],
        )
        state.stamp_receipt_metadata(run_id, 0)  # as commit_session_boundary does
        await store.persist_input_state(RID, state)
        if receipt_committed:
            await store.atomic_apply(RID, None, receipt(run_id, [inp.id()]), [])
        driver, report, _ = await restart(b)
        recovered = driver.input_state(inp.id())
        assert recovered is not None
        if receipt_committed:
            assert recovered.current_state() is _S.CONSUMED
            assert report.inputs_requeued == 0
            assert (await stored(store, inp.id())).current_state() is _S.CONSUMED
        else:
            assert driver.queued_input_ids() == [inp.id()]
            assert report.inputs_requeued == 1

    run(backend, body)


@pytest.mark.parametrize("during_drain", ["resume", "superseding_accept"])
def test_a_retired_runtime_comes_back_retired_after_a_crash_mid_drain(
    backend: Backend, during_drain: str
) -> None:
    """Z-8 and D-11 step 9: a commit made while a retired runtime drains its
    queue stores it as retired (PD-8; a stored ``running`` would
    recover as idle and accept again)."""

    async def body(b: Backend) -> None:
        store = b.open()
        table = RoutingTable({"prompt": QueueMode.SUPERSEDE})
        driver = new_driver(store, table=table)
        a, c = prompt("a", scope="s"), prompt("c")
        await accepted(driver, c, a)  # c heads the queue; a can be superseded
        await driver.retire()
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_input(c.id(), run_id)
        assert driver.runtime_state() is RuntimeState.RUNNING
        if during_drain == "resume":
            await driver.on_runtime_control(RuntimeControlCommand.RESUME)
        else:
            await accepted(driver, prompt("a2", scope="s"))
        assert await store.load_runtime_state(RID) is RuntimeState.RETIRED

        again, _, _ = await restart(b)
        assert again.runtime_state() is RuntimeState.RETIRED
        with pytest.raises(RuntimeDriverError.NotReady):
            await again.accept_input(prompt("late"))

    run(backend, body)


def test_a_refused_accept_gives_back_what_dequeue_handed_out(
    backend: Backend,
) -> None:
    """Decision 14: the read position of ``dequeue_next`` is memory too."""

    async def body(b: Backend) -> None:
        store = FaultyStore(b.open())
        driver = new_driver(store)
        first, second = prompt("first"), prompt("second")
        await accepted(driver, first, second)
        taken = driver.dequeue_next()
        assert taken is not None
        assert taken[0] == first.id()
        store.fail = {"persist_input_state"}
        with pytest.raises(Exception, match="Store write failed"):
            await driver.accept_input(prompt("refused"))
        store.fail = set()
        following = driver.dequeue_next()
        assert following is not None
        assert following[0] == second.id()

    run(backend, body)


@pytest.mark.parametrize("malformed", ["text_snapshot", "text_sequence"])
def test_a_malformed_boundary_is_refused_before_anything_changes(
    backend: Backend, malformed: str
) -> None:
    """D-6 with decision 14 (and D-11): a boundary whose session snapshot is
    text, or whose receipt has a text sequence (an executor's struct is not
    type-checked when built), is ``ValidationFailed``, a driver error the
    session loop handles by failing the run, with memory and store
    untouched. Stored, such a receipt would have failed every recovery."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a = prompt("a")
        run_id = await staged_alone(driver, a)
        before = everything(driver)
        good = receipt(run_id, [a.id()])
        event = (
            BoundaryApplied(
                run_id=run_id,
                receipt=good,
                session_snapshot='{"messages": []}',  # type: ignore[arg-type]
            )
            if malformed == "text_snapshot"
            else BoundaryApplied(
                run_id=run_id, receipt=msgspec.structs.replace(good, sequence="0")
            )
        )
        says = "bytes, not str" if malformed == "text_snapshot" else "receipt"
        with pytest.raises(RuntimeDriverError.ValidationFailed, match=says):
            await driver.on_run_event(event)
        assert everything(driver) == before
        assert await store.load_boundary_receipt(RID, run_id, 0) is None
        _, report, _ = await restart(b)
        assert report.inputs_recovered == 1

    run(backend, body)
