"""Lifecycle operations racing waiters, cancellation and a store that refuses
a run's end. What once went wrong: waiters left pending for ever, a loop that died holding a run, and stop, unregister or
close hanging while a store refuses a run's end.

Rules: K-3/K-4 (every waiter answered exactly once), X-5 (unregister), X-6
(an accept wakes the loop), X-11/X-12/X-14 and CP-5 (lifecycle operations
answer the waiters of the inputs they end), W-4 (stop), W-6/W-7 (a run that
cannot be recorded fails; the loop goes on), decision 14 (a write cancelled
after it committed stands).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from meerkat_runtime import (
    CoreApplyOutput,
    InputLifecycleState,
    InputState,
    LogicalRuntimeId,
    MemoryBlobStore,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RuntimeSessionAdapter,
    RuntimeState,
    SessionId,
)
from meerkat_runtime.sessions.adapter import CLOSED_REASON
from meerkat_runtime.sessions.completion import RuntimeTerminated
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.store.memory import InMemoryRuntimeStore
from meerkat_runtime.testing.faults import FaultyStore
from tests.cancelling import cancelled_mid_write

from .executors import Step, ToyExecutor
from .helpers import eventually, held, outcome_of, prompt

SHORT = 1.0  # seconds: what "promptly" means here


class GatedStore(FaultyStore):
    """In memory; while a gate is set, the matching writes wait at it."""

    def __init__(self) -> None:
        super().__init__(InMemoryRuntimeStore())
        self.accepts: asyncio.Event | None = None
        self.lifecycle: asyncio.Event | None = None
        self.lifecycle_skip = 0  # lifecycle commits let through before the gate
        self.entered = asyncio.Event()

    async def _at(self, gate: asyncio.Event | None) -> None:
        if gate is not None:
            self.entered.set()
            await gate.wait()

    async def persist_input_state(self, runtime_id: Any, state: InputState) -> None:
        await self._at(self.accepts)
        await super().persist_input_state(runtime_id, state)

    async def atomic_lifecycle_commit(
        self, runtime_id: Any, runtime_state: RuntimeState, input_states: Any
    ) -> None:
        if self.lifecycle_skip > 0:
            self.lifecycle_skip -= 1
        else:
            await self._at(self.lifecycle)
        await super().atomic_lifecycle_commit(runtime_id, runtime_state, input_states)


class EndOutageStore(FaultyStore):
    """In memory; while ``down``, refuses every lifecycle commit but a stop."""

    def __init__(self) -> None:
        super().__init__(InMemoryRuntimeStore())
        self.down = False
        self.refused = 0

    async def atomic_lifecycle_commit(
        self, runtime_id: Any, runtime_state: RuntimeState, input_states: Any
    ) -> None:
        if self.down and runtime_state is not RuntimeState.STOPPED:
            self.refused += 1
            raise RuntimeStoreError.Unavailable("store down")
        await super().atomic_lifecycle_commit(runtime_id, runtime_state, input_states)


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


@pytest.mark.parametrize("unregister_cancelled", [False, True])
def test_an_accept_racing_unregister_still_answers_its_waiter(
    unregister_cancelled: bool,
) -> None:
    """X-5 with K-3/K-4: unregister removes the session while an accept holds
    its lock mid-write; the waiter that accept registers learns the same,
    even when unregister is cancelled before its last word."""

    async def body() -> None:
        store = GatedStore()
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid = SessionId.new()
        await adapter.register_session(sid)
        store.accepts = asyncio.Event()
        accept = asyncio.ensure_future(
            adapter.accept_input_with_completion(sid, prompt())
        )
        await asyncio.wait_for(store.entered.wait(), SHORT)
        unregister = asyncio.ensure_future(adapter.unregister_session(sid))
        for _ in range(5):
            await asyncio.sleep(0)
        if unregister_cancelled:
            unregister.cancel()
        store.accepts.set()
        _, handle = await accept
        await asyncio.wait({unregister})
        await adapter.close()
        assert await outcome_of(handle, SHORT) == RuntimeTerminated(
            reason="runtime session unregistered"
        )

    run(body)


def test_an_accept_cancelled_after_it_committed_still_wakes_the_loop() -> None:
    """X-6 with decision 14: the input is queued on disk and in memory, so
    the loop hears of it and runs it."""

    async def body() -> None:
        store = GatedStore()
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid = SessionId.new()
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        store.accepts = gate = asyncio.Event()
        p = prompt()
        await cancelled_mid_write(adapter.accept_input(sid, p), store.entered, gate)
        store.accepts = None

        async def ran() -> bool:
            return executor.applied_ids() == [p.id()]

        await eventually(ran, SHORT)
        await adapter.close()

    run(body)


@pytest.mark.parametrize("operation", ["reset", "destroy", "stop", "retire"])
def test_a_lifecycle_operation_cancelled_after_it_committed_answers_its_waiters(
    operation: str,
) -> None:
    """X-11, X-12, X-14 and K-4 with decision 14: the inputs it ended are
    ended in memory and on disk, so their waiters are told why."""
    reasons = {
        "reset": "runtime reset",
        "destroy": "runtime destroyed",
        "stop": "runtime stopped",
        "retire": "retired without runtime loop",
    }

    async def body() -> None:
        store = GatedStore()
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid = SessionId.new()
        await adapter.register_session(sid)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "reset": lambda: adapter.reset_runtime(sid),
            "destroy": lambda: adapter.destroy_runtime(sid),
            "stop": lambda: adapter.stop_runtime_executor(
                sid, RunControlCommand.StopRuntimeExecutor()
            ),
            "retire": lambda: adapter.retire_runtime(sid),
        }
        # Without a loop, retire commits twice: it retires, then abandons.
        store.lifecycle_skip = 1 if operation == "retire" else 0
        store.lifecycle = gate = asyncio.Event()
        await cancelled_mid_write(calls[operation](), store.entered, gate)
        state = await adapter.input_state(sid, p.id())
        assert state is not None
        assert state.is_terminal()
        assert await outcome_of(handle, SHORT) == RuntimeTerminated(
            reason=reasons[operation]
        )

    run(body)


class NoReceiptOnce(ToyExecutor):
    """Answers its first run without a receipt (a malformed output)."""

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        output = await super().apply(run_id, primitive)
        if len(self.calls) == 1:
            return CoreApplyOutput(receipt=None)  # type: ignore[arg-type]
        return output


class OddStore(FaultyStore):
    """Its first boundary commit fails with a non-store error."""

    def __init__(self) -> None:
        super().__init__(InMemoryRuntimeStore())
        self.failed = False

    async def atomic_apply(self, *args: Any, **kwargs: Any) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionResetError("peer went away")
        await super().atomic_apply(*args, **kwargs)


def test_a_boundary_without_receipt_fails_the_run_not_the_loop() -> None:
    """W-6a with decision 3: an output the boundary cannot hold is the
    executor's failure: the run fails (its input goes back, one attempt
    used) and the loop keeps serving: the input then completes."""

    async def body() -> None:
        adapter = RuntimeSessionAdapter.ephemeral(retry_delay=0.001)
        executor = NoReceiptOnce()
        sid = SessionId.new()
        await adapter.register_session_with_executor(sid, executor)
        p = prompt("a")
        _, handle = await adapter.accept_input_with_completion(sid, p)
        outcome = await outcome_of(handle, SHORT)
        assert not isinstance(outcome, RuntimeTerminated), outcome
        assert len(executor.calls) == 2
        state = await adapter.input_state(sid, p.id())
        assert state is not None
        assert state.attempt_count() == 2
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        _, later = await adapter.accept_input_with_completion(sid, prompt("b"))
        assert not isinstance(await outcome_of(later, SHORT), RuntimeTerminated)
        await adapter.close()

    run(body)


def test_a_store_failing_oddly_at_the_boundary_ends_the_loop_losing_nothing() -> None:
    """W-6a with PD-38 (this test pinned the opposite before: an error no
    one classified counted as one of the input's attempts, and the loop
    went on). A store error that is not known to pass is a store fault
    refused for good: the loop ends and writes nothing more, so the input
    is still queued in the store with no attempt used; the waiter hears the
    loop exited; a new adapter on the store completes the input."""

    async def body() -> None:
        store = OddStore()
        adapter = RuntimeSessionAdapter.persistent(
            store, MemoryBlobStore(), retry_delay=0.001
        )
        sid = SessionId.new()
        rid = LogicalRuntimeId(str(sid))
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        p = prompt("a")
        _, handle = await adapter.accept_input_with_completion(sid, p)
        outcome = await outcome_of(handle, SHORT)
        assert outcome == RuntimeTerminated(reason="runtime loop exited")
        stored = await store.load_input_state(rid, p.id())
        assert stored is not None
        assert stored.current_state() is InputLifecycleState.QUEUED
        assert stored.attempt_count() == 0
        await adapter.close()

        again = RuntimeSessionAdapter.persistent(
            store, MemoryBlobStore(), retry_delay=0.001
        )
        await again.register_session_with_executor(sid, ToyExecutor())
        handle = await again.completion_for(sid, p.id())
        assert not isinstance(await outcome_of(handle, SHORT), RuntimeTerminated)
        await again.close()

    run(body)


def test_stop_ends_the_retries_of_a_run_end_the_store_refuses() -> None:
    """W-4 and X-14: while the store refuses a run's end, a Stop still stops
    the runtime promptly, and the waiter learns "runtime stopped"."""

    async def body() -> None:
        store = EndOutageStore()
        adapter = RuntimeSessionAdapter.persistent(
            store, MemoryBlobStore(), retry_delay=0.001
        )
        sid = SessionId.new()
        await adapter.register_session(sid)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        store.down = True
        await adapter.register_session_with_executor(sid, ToyExecutor())

        async def retrying() -> bool:
            return store.refused >= 2

        await eventually(retrying, SHORT)
        await asyncio.wait_for(
            adapter.stop_runtime_executor(sid, RunControlCommand.StopRuntimeExecutor()),
            SHORT,
        )
        assert await adapter.runtime_state(sid) is RuntimeState.STOPPED
        assert await outcome_of(handle, SHORT) == RuntimeTerminated(
            reason="runtime stopped"
        )

    run(body)


async def refusing_mid_run() -> tuple[RuntimeSessionAdapter, SessionId]:
    """A session whose run is in flight while the store refuses its end."""
    store = EndOutageStore()
    adapter = RuntimeSessionAdapter.persistent(
        store, MemoryBlobStore(), retry_delay=0.001
    )
    sid = SessionId.new()
    executor = ToyExecutor([Step.HOLD])
    await adapter.register_session_with_executor(sid, executor)
    await adapter.accept_input_with_completion(sid, prompt())
    await held(executor.held)
    store.down = True
    return adapter, sid


def test_unregister_returns_promptly_while_the_store_refuses_the_rollback() -> None:
    """X-5: unregister cancels the loop, whose rollback of the run in flight
    the store refuses; one attempt, then the loop goes."""

    async def body() -> None:
        adapter, sid = await refusing_mid_run()
        task = asyncio.ensure_future(adapter.unregister_session(sid))
        # Not wait_for: cancelling on timeout could hide a hang behind a
        # swallowed cancellation (see the next test).
        await asyncio.wait({task}, timeout=SHORT)
        assert task.done()
        assert task.exception() is None

    run(body)


def test_a_cancelled_unregister_is_cancelled() -> None:
    """Cancellation reaches the caller of unregister (a timeout, a task group,
    shutdown): it is not swallowed by the loop it cancels."""

    async def body() -> None:
        adapter, sid = await refusing_mid_run()
        task = asyncio.ensure_future(adapter.unregister_session(sid))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task}, timeout=SHORT)
        assert task.cancelled()

    run(body)


def test_close_answers_the_waiters_of_sessions_without_a_loop() -> None:
    """Close tells every waiter still pending that the adapter closed."""

    async def body() -> None:
        adapter = RuntimeSessionAdapter.ephemeral()
        sid = SessionId.new()
        await adapter.register_session(sid)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        await adapter.close()
        assert await outcome_of(handle, SHORT) == RuntimeTerminated(
            reason=CLOSED_REASON
        )

    run(body)


def test_close_from_the_cleanup_of_a_cancelled_task_closes_every_session() -> None:
    """W-3 and K-4 (second review): ``finally: await adapter.close()`` in a
    cancelled task stops every loop and answers every waiter, then the task
    ends cancelled."""

    async def body() -> None:
        adapter = RuntimeSessionAdapter.ephemeral()
        first, second, third = SessionId.new(), SessionId.new(), SessionId.new()
        await adapter.register_session_with_executor(first, ToyExecutor())
        await adapter.register_session_with_executor(second, ToyExecutor())
        await adapter.register_session(third)
        _, handle = await adapter.accept_input_with_completion(third, prompt())

        async def serve() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await adapter.close()

        task = asyncio.ensure_future(serve())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task}, timeout=SHORT)
        assert task.cancelled()
        for sid in (first, second):
            loop = adapter.sessions[sid].loop
            assert loop is not None
            assert not loop.alive()
        assert await outcome_of(handle, SHORT) == RuntimeTerminated(
            reason=CLOSED_REASON
        )

    run(body)


def test_a_caller_that_cancelled_itself_before_closing_stays_cancelled() -> None:
    """A cancellation requested but not yet delivered when close() starts is
    the caller's: close() still stops the loop, then raises it."""

    async def body() -> None:
        adapter = RuntimeSessionAdapter.ephemeral()
        sid = SessionId.new()
        await adapter.register_session_with_executor(sid, ToyExecutor())
        went_on: list[str] = []

        async def caller() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # requested, not yet delivered
            await adapter.close()
            went_on.append("went on")

        task = asyncio.ensure_future(caller())
        await asyncio.wait({task}, timeout=SHORT)
        assert task.cancelled()
        assert went_on == []
        await adapter.close()
        loop = adapter.sessions[sid].loop
        assert loop is not None
        assert not loop.alive()

    run(body)
