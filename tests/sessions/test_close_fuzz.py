"""``close()`` with work in flight, fuzzed (issue 12, item 6).

The crash state machines in ``tests/stateful`` drive a driver directly, and
``close`` belongs to the session adapter, so this machine drives a persistent
adapter over a store that outlives it (the "disk"). It accepts prompts,
lets runs proceed or holds one inside the executor, and closes: plainly,
with a run held in ``apply``, or with an accept held inside its store write.

After a close: every handle is answered (a result, or RuntimeTerminated
"session adapter closed"), a new accept is refused, and a new adapter on the
same store runs every acknowledged input to its end, each named by exactly
one receipt: nothing acknowledged is lost, nothing is applied twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from meerkat_runtime import (
    CompletionHandle,
    CoreApplyOutput,
    InputId,
    InputLifecycleState,
    LogicalRuntimeId,
    MemoryBlobStore,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RuntimeDriverError,
    RuntimeSessionAdapter,
    SessionId,
    receipt_for,
)
from meerkat_runtime.sessions.adapter import CLOSED_REASON
from meerkat_runtime.sessions.completion import (
    Completed,
    CompletedWithoutResult,
    RuntimeTerminated,
)

from .helpers import TIMEOUT, GatedStore, prompt

T = TypeVar("T")


class HoldingExecutor:
    """Completes every run, except that while ``hold`` is set a run waits
    inside ``apply`` (work in flight) until ``release`` or cancellation."""

    def __init__(self) -> None:
        self.hold = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        if self.hold:
            self.held.set()
            await self.release.wait()
        return CoreApplyOutput(receipt=receipt_for(run_id, primitive))

    async def control(self, command: RunControlCommand) -> None:
        pass


class CloseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = GatedStore()  # the disk: outlives every adapter
        self.sid = SessionId.new()
        self.rid = LogicalRuntimeId(str(self.sid))
        self.acked: set[InputId] = set()
        self.closes = 0
        self.open_adapter()

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    def open_adapter(self) -> None:
        self.adapter = RuntimeSessionAdapter.persistent(
            self.store, MemoryBlobStore(), retry_delay=0.001
        )
        self.executor = HoldingExecutor()
        self.handles: list[CompletionHandle] = []
        self.wait(self.adapter.register_session_with_executor(self.sid, self.executor))

    def teardown(self) -> None:
        self.wait(self.adapter.close())
        self.loop.close()

    async def _settled(self) -> None:
        """Until the loop has nothing to run, or is holding a run."""
        while not self.executor.held.is_set():
            if not await self.adapter.list_active_inputs(self.sid):
                return
            await asyncio.sleep(0)

    # ---------------------------------------------------------------- rules

    @rule(count=st.integers(1, 3))
    def accept(self, count: int) -> None:
        for _ in range(count):
            p = prompt("hello")
            outcome, handle = self.wait(
                self.adapter.accept_input_with_completion(self.sid, p)
            )
            assert outcome.is_accepted()
            self.acked.add(p.id())
            if handle is not None:
                self.handles.append(handle)

    @rule(hold=st.booleans())
    def hold_runs(self, hold: bool) -> None:
        self.executor.hold = hold
        if not hold:
            self.executor.release.set()

    @rule()
    def let_runs_proceed(self) -> None:
        self.wait(self._settled())

    @precondition(lambda self: self.executor.hold)
    @rule()
    def close_with_a_run_in_flight(self) -> None:
        self.wait(self._settled())
        note(f"close, a run held: {self.executor.held.is_set()}")
        self.wait(self.adapter.close())
        self.after_close()

    @rule()
    def close_with_an_accept_in_flight(self) -> None:
        async def race() -> None:
            self.store.gate = gate = asyncio.Event()
            p = prompt("racing")
            accepting = asyncio.ensure_future(
                self.adapter.accept_input_with_completion(self.sid, p)
            )
            await self.store.entered.wait()
            self.store.entered.clear()
            # Close begins while the accept holds the session lock; a loop
            # cancelled mid-run needs that lock to roll back, so close ends
            # only once the write is let through.
            closing = asyncio.ensure_future(self.adapter.close())
            await asyncio.sleep(0)
            gate.set()
            await closing
            outcome, handle = await accepting
            assert outcome.is_accepted()
            self.acked.add(p.id())
            if handle is not None:
                self.handles.append(handle)

        note("close, an accept inside its store write")
        self.wait(race())
        self.after_close()

    def after_close(self) -> None:
        """Every waiter answered; no new work; a new adapter runs the rest."""
        self.closes += 1
        for handle in self.handles:
            assert handle.done(), "a waiter left hanging by close"
            outcome = self.wait(handle.wait())
            assert isinstance(outcome, Completed | CompletedWithoutResult) or (
                outcome == RuntimeTerminated(reason=CLOSED_REASON)
            ), outcome
        with pytest.raises(RuntimeDriverError.NotReady, match="closed"):
            self.wait(self.adapter.accept_input(self.sid, prompt("late")))
        self.open_adapter()  # a restart on the same store
        self.wait(self._settled())
        self.everything_acked_ran_once()

    # ---------------------------------------------------------------- checks

    def everything_acked_ran_once(self) -> None:
        stored = {
            s.input_id: s for s in self.wait(self.store.load_input_states(self.rid))
        }
        assert self.acked <= set(stored), "an acknowledged input was lost"
        for input_id in self.acked:
            assert stored[input_id].current_state() is InputLifecycleState.CONSUMED
        receipts = self.wait(self.store.load_boundary_receipts(self.rid))
        named = Counter(i for r in receipts for i in r.contributing_input_ids)
        assert set(named) == self.acked, "a consumed input without its receipt"
        assert max(named.values(), default=1) == 1, "an input applied twice"

    @invariant()
    def receipts_name_each_input_at_most_once(self) -> None:
        receipts = self.wait(self.store.load_boundary_receipts(self.rid))
        named = Counter(i for r in receipts for i in r.contributing_input_ids)
        assert max(named.values(), default=1) == 1, "an input applied twice"


TestCloseWithWorkInFlight = CloseMachine.TestCase
# Each close restarts an adapter and drains it: fewer examples than the
# driver fuzzers under the default profile, the profile's own under `make fuzz`.
TestCloseWithWorkInFlight.settings = settings(
    max_examples=min(settings().max_examples, 50)  # settings(): the profile's
)
