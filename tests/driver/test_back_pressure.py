"""Back-pressure (PD-43) and replacements at any queue length.

A runtime holds at most ``max_pending_inputs`` unfinished inputs: one more
accept is refused with ``RuntimeDriverError.PendingLimit`` naming the limit,
and nothing is kept. A recovery never drops input to get under the limit.
A superseding or coalescing accept finds the input it replaces through the
ledger's scope index, so it does the same work at any queue length.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import sys
from collections.abc import Callable
from types import FrameType

import pytest

from meerkat_runtime import RuntimeDriverError, RuntimeSessionAdapter, SessionId
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.core import DEFAULT_MAX_PENDING_INPUTS
from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.generated.policy_table import QueueMode
from meerkat_runtime.ids import InputId, LogicalRuntimeId
from meerkat_runtime.inputs import Input
from meerkat_runtime.ledger import Lane, Lanes
from meerkat_runtime.outcomes import Deduplicated
from meerkat_runtime.store.base import RuntimeStore
from tests.driver.helpers import (
    RoutingPolicyTable,
    accept_all,
    everything,
    new_driver,
    prompt,
    run_to_completion,
    stage_run,
)
from tests.driver.persistent import (
    RID,
    Backend,
    accepted,
    backend,
    raw,
    run,
)
from tests.driver.persistent import (
    new_driver as new_persistent,
)

__all__ = ["backend"]  # the fixture, imported for its use here

LIMIT = 3


def limited(limit: int = LIMIT, **routes: QueueMode) -> EphemeralRuntimeDriver:
    table = RoutingPolicyTable(routes) if routes else None
    return EphemeralRuntimeDriver(
        LogicalRuntimeId("rt-test"), policy_table=table, max_pending_inputs=limit
    )


def persistent(store: RuntimeStore, limit: int) -> PersistentRuntimeDriver:
    return PersistentRuntimeDriver(
        RID, store, MemoryBlobStore(), max_pending_inputs=limit
    )


def test_an_accept_over_the_limit_is_refused_naming_it() -> None:
    driver = limited()
    accept_all(driver, *(prompt(str(n)) for n in range(LIMIT)))
    before = everything(driver)
    with pytest.raises(RuntimeDriverError.PendingLimit) as caught:
        driver.accept_now(prompt("one too many"))
    assert caught.value.limit == LIMIT
    assert caught.value.retryable
    assert str(caught.value) == (
        "Runtime rt-test has reached its pending input limit "
        "(max_pending_inputs=3): retry once some inputs have finished"
    )
    assert everything(driver) == before  # nothing kept, no event


def test_finished_inputs_make_room_again() -> None:
    driver = limited()
    ids = accept_all(driver, *(prompt(str(n)) for n in range(LIMIT)))
    run_to_completion(driver, ids[:1])
    accept_all(driver, prompt("fits again"))
    with pytest.raises(RuntimeDriverError.PendingLimit):
        driver.accept_now(prompt("full again"))


def test_at_the_limit_a_retry_is_still_answered_and_a_replacement_fits() -> None:
    """What adds no unfinished input is not refused: a retry of an accepted
    input (its duplicate answer) and an input that replaces a waiting one."""
    driver = limited(prompt=QueueMode.COALESCE)
    first = prompt("a", scope="s")
    accept_all(driver, first, prompt("b", scope="t"), prompt("c", scope="u"))
    assert isinstance(driver.accept_now(first), Deduplicated)
    newer = prompt("a2", scope="s")
    accept_all(driver, newer)
    state = driver.input_state(first.id())
    assert state is not None
    assert state.current_state() is InputLifecycleState.COALESCED
    with pytest.raises(RuntimeDriverError.PendingLimit):
        driver.accept_now(prompt("d", scope="v"))


def test_the_default_limit_and_a_bad_one() -> None:
    assert DEFAULT_MAX_PENDING_INPUTS == 100_000
    with pytest.raises(ValueError, match="max_pending_inputs must be a positive int"):
        limited(0)


def test_the_error_survives_pickling() -> None:
    error = RuntimeDriverError.PendingLimit("rt", 7)
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.limit) == (type(error), str(error), 7)


def test_a_refused_accept_stores_nothing(backend: Backend) -> None:
    async def body(b: Backend) -> None:
        store = b.open()
        driver = persistent(store, LIMIT)
        await accepted(driver, *(prompt(str(n)) for n in range(LIMIT)))
        rows = raw(store)
        with pytest.raises(RuntimeDriverError.PendingLimit):
            await driver.accept_input(prompt("refused"))
        assert raw(store) == rows

    run(backend, body)


def test_a_recovery_above_the_limit_keeps_everything(backend: Backend) -> None:
    """A store written with a bigger limit (or by an older version): every
    input comes back; accepts are refused until the runtime is under it."""

    async def body(b: Backend) -> None:
        await accepted(new_persistent(b.open()), *(prompt(str(n)) for n in range(5)))
        from meerkat_runtime.blobs import MemoryBlobStore
        from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
        from tests.driver.persistent import RID

        restarted = PersistentRuntimeDriver(
            RID, b.open(), MemoryBlobStore(), max_pending_inputs=LIMIT
        )
        report = await restarted.recover()
        assert report.inputs_recovered == 5
        assert len(restarted.queued_input_ids()) == 5
        with pytest.raises(RuntimeDriverError.PendingLimit):
            await restarted.accept_input(prompt("refused"))

    run(backend, body)


def test_the_adapter_passes_its_limit_to_every_session() -> None:
    async def main() -> None:
        adapter = RuntimeSessionAdapter.ephemeral(max_pending_inputs=2)
        sid = SessionId.new()
        await adapter.register_session(sid)
        await adapter.accept_input(sid, prompt("a"))
        await adapter.accept_input(sid, prompt("b"))
        with pytest.raises(RuntimeDriverError.PendingLimit, match="=2"):
            await adapter.accept_input(sid, prompt("c"))
        await adapter.close()

    asyncio.run(main())


# ---------------------------------------------------------------- scope index


def python_calls(action: Callable[[], object]) -> int:
    """How many Python functions ``action`` calls (a measure of work that
    does not depend on the machine's speed)."""
    calls = 0

    def profile(_frame: FrameType, event: str, _arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    # A collection during the action would count finalizers and weakref
    # callbacks that have nothing to do with it (seen on a loaded machine).
    gc.collect()
    gc.disable()
    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
        gc.enable()
    return calls


def replacing_accept_work(queued: int, mode: QueueMode) -> int:
    """The work of an accept that replaces the newest of ``queued`` inputs."""
    driver = new_driver(prompt=mode)
    accept_all(driver, *(prompt(str(n), scope=f"other-{n}") for n in range(queued)))
    accept_all(driver, prompt("older", scope="s"))
    newer: Input = prompt("newer", scope="s")
    work = python_calls(lambda: driver.accept_now(newer))
    assert driver.queued_input_ids()[-1] == newer.id()
    assert len(driver.queued_input_ids()) == queued + 1
    return work


@pytest.mark.parametrize("mode", [QueueMode.SUPERSEDE, QueueMode.COALESCE])
def test_a_replacing_accept_does_the_same_work_at_any_queue_length(
    mode: QueueMode,
) -> None:
    """It scanned the whole queue for its scope and searched the lane for
    the replaced id: work grew with the number of queued inputs."""
    assert replacing_accept_work(1_000, mode) == replacing_accept_work(10, mode)


def test_the_oldest_waiting_input_of_a_scope_is_replaced() -> None:
    """Two inputs of one scope can wait together when the first was queued
    without replacing (here: accepted while its kind was plain FIFO)."""
    fifo = new_driver()
    a, b = prompt("a", scope="s"), prompt("b", scope="s")
    accept_all(fifo, a, b)
    table = RoutingPolicyTable({"prompt": QueueMode.SUPERSEDE})
    fifo._core._policy = table
    c = prompt("c", scope="s")
    accept_all(fifo, c)
    assert fifo.queued_input_ids() == [b.id(), c.id()]


def test_a_withdrawn_input_keeps_its_place_in_its_scope() -> None:
    """A withdrawn run puts its input back as it was (PD-38), and the input
    stays the oldest of its scope (PD-44): it was indexed afresh at the end,
    so a later replacing accept took the newer one instead."""
    fifo = new_driver()
    a, b = prompt("a", scope="s"), prompt("b", scope="s")
    accept_all(fifo, a, b)
    run_id = stage_run(fifo, [a.id()])
    asyncio.run(fifo.withdraw_run(run_id))
    assert fifo.queued_input_ids() == [a.id(), b.id()]
    fifo._core._policy = RoutingPolicyTable({"prompt": QueueMode.SUPERSEDE})
    c = prompt("c", scope="s")
    accept_all(fifo, c)
    assert fifo.queued_input_ids() == [b.id(), c.id()]
    replaced = fifo.peek_input_state(a.id())
    assert replaced is not None
    assert replaced.current_state() is InputLifecycleState.SUPERSEDED


def test_an_undone_replacement_leaves_the_oldest_first() -> None:
    """A refused replacing accept is undone (decision 14): the input it had
    replaced is waiting again and still the oldest of its scope, so the
    next replacing accept takes it, not a newer one."""
    driver = new_driver()
    a, b = prompt("a", scope="s"), prompt("b", scope="s")
    accept_all(driver, a, b)
    core = driver._core
    core._policy = RoutingPolicyTable({"prompt": QueueMode.SUPERSEDE})
    checkpoint = core.checkpoint()
    core.accept(prompt("refused", scope="s"))
    core.restore(checkpoint)
    assert driver.queued_input_ids() == [a.id(), b.id()]
    d = prompt("d", scope="s")
    accept_all(driver, d)
    assert driver.queued_input_ids() == [b.id(), d.id()]


# ---------------------------------------------------------------- gone ids


def test_gone_ids_are_skipped_and_every_change_undoes_exactly() -> None:
    """Removed ids stay in the deque, marked gone: reads skip them, popping
    drops them, a rebuild (past ``_COMPACT_AT`` gone ids) removes them, and
    undoing any of that in reverse gives back the lanes as they were."""
    lanes = Lanes()
    ids = [InputId.new() for _ in range(100)]
    lanes.push_all(ids, Lane.QUEUE)
    lanes.journal = []
    gone = [i for n, i in enumerate(ids) if n % 4]  # 75: past _COMPACT_AT
    for input_id in gone:
        lanes.remove(input_id, Lane.QUEUE)
    waiting = [i for i in ids if i not in set(gone)]
    assert lanes.ids(Lane.QUEUE) == waiting
    assert len(lanes) == len(waiting)
    assert lanes.is_prefix(waiting[:3])
    lanes.pop_prefix(3)
    assert lanes.ids(Lane.QUEUE) == waiting[3:]
    assert lanes.take_next() == waiting[3]
    assert not lanes.take(gone[-1])
    for undo in reversed(lanes.journal):
        undo()
    assert lanes.ids(Lane.QUEUE) == ids
    assert len(lanes) == len(ids)
