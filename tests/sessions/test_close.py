"""``RuntimeSessionAdapter.close`` (API.md "Additions"): after it, nothing new
is accepted, registered or waited on, and every waiter is answered
``RuntimeTerminated("session adapter closed")``, also the waiter of an
accept that was inside its store write when close ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from meerkat_runtime import (
    InMemoryRuntimeStore,
    LogicalRuntimeId,
    MemoryBlobStore,
    RunControlCommand,
    RuntimeDriverError,
    RuntimeSessionAdapter,
    RuntimeState,
    SessionId,
)
from meerkat_runtime.sessions.adapter import CLOSED_REASON
from meerkat_runtime.sessions.completion import RuntimeTerminated

from .executors import ToyExecutor
from .helpers import GatedStore, held, outcome_of, prompt

CLOSED = RuntimeTerminated(reason=CLOSED_REASON)


def test_everything_that_adds_work_after_close_is_refused_saying_closed() -> None:
    """Accepts (with or without a handle), waiting on an earlier input and
    registering raise NotReady whose text says the adapter is closed; none
    of them stores anything. Before the fix an accept after close returned
    Accepted with a handle that never resolved."""

    async def main() -> None:
        store = InMemoryRuntimeStore()
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid, other = SessionId.new(), SessionId.new()
        await adapter.register_session(sid)
        earlier = prompt("earlier")
        await adapter.accept_input(sid, earlier)
        await adapter.close()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: adapter.accept_input(sid, prompt()),
            lambda: adapter.accept_input_with_completion(sid, prompt()),
            lambda: adapter.completion_for(sid, earlier.id()),
            lambda: adapter.register_session(other),
            lambda: adapter.register_session_with_executor(sid, ToyExecutor()),
            lambda: adapter.register_session_with_executor(other, ToyExecutor()),
        ]
        for call in calls:
            with pytest.raises(RuntimeDriverError.NotReady) as caught:
                await call()
            assert str(caught.value) == (
                "Runtime not ready: the session adapter is closed"
            )
        stored = await store.load_input_states(LogicalRuntimeId(str(sid)))
        assert [s.input_id for s in stored] == [earlier.id()]
        assert other not in adapter.sessions
        assert not adapter.sessions[sid].has_live_loop()
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE

    asyncio.run(main())


@pytest.mark.parametrize("with_loop", [False, True])
def test_an_accept_racing_close_gets_a_handle_that_resolves(with_loop: bool) -> None:
    """An accept inside its store write while close runs: the input is
    accepted (it is durable), and the handle it returns is answered
    "session adapter closed" instead of hanging forever."""

    async def main() -> None:
        store = GatedStore()
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid = SessionId.new()
        executor = ToyExecutor()
        if with_loop:
            await adapter.register_session_with_executor(sid, executor)
        else:
            await adapter.register_session(sid)
        store.gate = gate = asyncio.Event()
        p = prompt()
        accepting = asyncio.ensure_future(adapter.accept_input_with_completion(sid, p))
        await held(store.entered)  # the accept holds the session lock
        await adapter.close()
        gate.set()
        outcome, handle = await asyncio.wait_for(accepting, 1.0)
        assert outcome.is_accepted()
        assert await outcome_of(handle) == CLOSED
        assert executor.calls == []
        stored = await store.load_input_state(LogicalRuntimeId(str(sid)), p.id())
        assert stored is not None

    asyncio.run(main())


def test_close_answers_waiters_of_every_session_once() -> None:
    """Waiters of sessions with and without a loop all hear the close; a
    second close changes nothing."""

    async def main() -> None:
        adapter = RuntimeSessionAdapter.ephemeral()
        looped, idle = SessionId.new(), SessionId.new()
        executor = ToyExecutor(block_controls=True)
        await adapter.register_session_with_executor(looped, executor)
        await adapter.register_session(idle)
        busy = RunControlCommand.CancelCurrentRun(reason="busy")
        await adapter.stop_runtime_executor(looped, busy)  # the loop is in control()
        await held(executor.control_entered)
        _, first = await adapter.accept_input_with_completion(looped, prompt())
        _, second = await adapter.accept_input_with_completion(idle, prompt())
        await adapter.close()
        await adapter.close()
        assert await outcome_of(first) == CLOSED
        assert await outcome_of(second) == CLOSED
        assert executor.calls == []

    asyncio.run(main())
