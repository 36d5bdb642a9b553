"""Completion waiters (docs/behaviour.md §9.3, Z-10): who resolves them, with what.

Rules: K-1 .. K-5 (the K-4 table of RuntimeTerminated texts), X-2, X-5,
X-7, X-11, X-12, X-14, CP-9, and decisions 9, 19, 23, 25. Every waiter is
resolved exactly once: a later terminating event never changes an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    CompletionOutcome,
    InputAbandonReason,
    InputId,
    InputLifecycleState,
    InputTerminalOutcome,
    QueueMode,
    RetireReport,
    RunControlCommand,
    RunResult,
    RuntimeDriverError,
    RuntimeSessionAdapter,
    RuntimeState,
    SessionId,
)
from meerkat_runtime.policy import PolicyTable
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    Completed,
    CompletedWithoutResult,
    RuntimeTerminated,
)

from .executors import Step, ToyExecutor
from .helpers import (
    RoutingPolicyTable,
    derived_prompt,
    drained,
    event,
    held,
    operation,
    outcome_of,
    prompt,
    state_of,
)

Body = Callable[[RuntimeSessionAdapter, SessionId], Awaitable[None]]
RESULT = RunResult(text="ok")


def run(body: Body, policy_table: PolicyTable | None = None) -> None:
    async def main() -> None:
        adapter = RuntimeSessionAdapter.ephemeral(policy_table, retry_delay=0.001)
        sid = SessionId.new()
        try:
            await body(adapter, sid)
        finally:
            await adapter.close()

    asyncio.run(main())


async def abandon_reason(
    adapter: RuntimeSessionAdapter, sid: SessionId, input_id: InputId
) -> InputTerminalOutcome | None:
    state = await adapter.input_state(sid, input_id)
    assert state is not None
    return state.terminal_outcome()


# ---------------------------------------------------------------- Z-10 / K-4, no loop


def test_reset_without_loop_terminates_waiter() -> None:
    """Z-10 / X-12 / K-4: reset resolves waiters "runtime reset"; the input is
    abandoned (reset) and the runtime is Idle."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        report = await adapter.reset_runtime(sid)
        assert report.inputs_abandoned == 1
        assert await outcome_of(handle) == RuntimeTerminated(reason="runtime reset")
        assert await abandon_reason(adapter, sid, p.id()) == (
            InputTerminalOutcome.Abandoned(reason=InputAbandonReason.Reset())
        )
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE

    run(body)


def test_retire_without_loop_abandons_and_terminates() -> None:
    """Z-10 / X-11: nothing can drain: report {abandoned 1, pending 0}, waiter
    "retired without runtime loop", input Abandoned(retired), runtime Retired."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        report = await adapter.retire_runtime(sid)
        assert report == RetireReport(inputs_abandoned=1, inputs_pending_drain=0)
        assert await outcome_of(handle) == RuntimeTerminated(
            reason="retired without runtime loop"
        )
        assert await abandon_reason(adapter, sid, p.id()) == (
            InputTerminalOutcome.Abandoned(reason=InputAbandonReason.Retired())
        )
        assert await adapter.runtime_state(sid) is RuntimeState.RETIRED
        assert await adapter.list_active_inputs(sid) == []

    run(body)


def test_unregister_without_loop_terminates_waiter() -> None:
    """Z-10 / X-5: "runtime session unregistered"; the session is gone (X-2)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        await adapter.unregister_session(sid)
        assert await outcome_of(handle) == RuntimeTerminated(
            reason="runtime session unregistered"
        )
        with pytest.raises(RuntimeDriverError.NotReady):
            await adapter.runtime_state(sid)

    run(body)


def test_stop_without_loop_terminates_waiter() -> None:
    """X-14 / K-4: with no loop the adapter stops the driver itself; a second
    stop is refused (already stopped); a non-stop command has no one to go to."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        with pytest.raises(
            RuntimeDriverError.Internal,
            match="failed to send stop: runtime loop is unavailable",
        ):
            await adapter.stop_runtime_executor(
                sid, RunControlCommand.CancelCurrentRun()
            )
        assert handle is not None
        assert not handle.done()
        await adapter.stop_runtime_executor(
            sid, RunControlCommand.StopRuntimeExecutor()
        )
        assert await outcome_of(handle) == RuntimeTerminated(reason="runtime stopped")
        assert await abandon_reason(adapter, sid, p.id()) == (
            InputTerminalOutcome.Abandoned(reason=InputAbandonReason.Destroyed())
        )
        assert await adapter.runtime_state(sid) is RuntimeState.STOPPED
        with pytest.raises(RuntimeDriverError):
            await adapter.stop_runtime_executor(
                sid, RunControlCommand.StopRuntimeExecutor()
            )

    run(body)


@pytest.mark.parametrize("via", ["adapter", "control_plane"])
def test_destroy_terminates_waiters(via: str) -> None:
    """K-4 / CP-9: destroy resolves every waiter "runtime destroyed"; inputs
    are abandoned (destroyed)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        if via == "adapter":
            report = await adapter.destroy_runtime(sid)
        else:
            rid = adapter.sessions[sid].runtime_id
            report = await adapter.control_plane.destroy(rid)
        assert report.inputs_abandoned == 1
        assert await outcome_of(handle) == RuntimeTerminated(reason="runtime destroyed")
        assert await abandon_reason(adapter, sid, p.id()) == (
            InputTerminalOutcome.Abandoned(reason=InputAbandonReason.Destroyed())
        )
        assert await adapter.runtime_state(sid) is RuntimeState.DESTROYED

    run(body)


# ---------------------------------------------------------------- with a loop


def test_stop_with_loop_reaches_executor_once() -> None:
    """Z-10 / W-4 / X-14: stop through the loop: the executor sees exactly one
    stop control, the pending waiter gets "runtime stopped", the runtime is
    Stopped and the unrun input Abandoned(destroyed) (L-13)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await held(executor.held)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        stop = RunControlCommand.StopRuntimeExecutor(reason="shutdown")
        stopping = asyncio.create_task(adapter.stop_runtime_executor(sid, stop))
        executor.release.set()
        await asyncio.wait_for(stopping, 1.0)
        assert executor.controls == [stop]
        assert await outcome_of(ha) == Completed(run_result=RESULT)
        assert await outcome_of(hb) == RuntimeTerminated(reason="runtime stopped")
        assert await abandon_reason(adapter, sid, b.id()) == (
            InputTerminalOutcome.Abandoned(reason=InputAbandonReason.Destroyed())
        )
        assert await adapter.runtime_state(sid) is RuntimeState.STOPPED
        assert not adapter.sessions[sid].has_live_loop()
        with pytest.raises(RuntimeDriverError.NotReady):
            await adapter.accept_input(sid, prompt("late"))

    run(body)


def test_stop_with_idle_loop_tells_executor_once() -> None:
    """W-4: a stop to an idle loop: one control, runtime Stopped, loop gone."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        stop = RunControlCommand.StopRuntimeExecutor()
        await asyncio.wait_for(adapter.stop_runtime_executor(sid, stop), 1.0)
        assert executor.controls == [stop]
        assert await adapter.runtime_state(sid) is RuntimeState.STOPPED

    run(body)


def test_retire_with_loop_drains_and_returns_to_retired() -> None:
    """X-11 / C-3: with a live loop a retired runtime is drained (a run from
    Retired returns to Retired); nothing is abandoned, waiters complete."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await held(executor.held)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        report = await adapter.retire_runtime(sid)
        assert report == RetireReport(inputs_abandoned=0, inputs_pending_drain=2)
        assert await adapter.runtime_state(sid) is RuntimeState.RETIRED
        with pytest.raises(RuntimeDriverError.NotReady):
            await adapter.accept_input(sid, prompt("refused"))
        executor.release.set()
        assert await outcome_of(ha) == Completed(run_result=RESULT)
        assert await outcome_of(hb) == Completed(run_result=RESULT)
        assert executor.applied_ids() == [a.id(), b.id()]
        assert await adapter.runtime_state(sid) is RuntimeState.RETIRED

    run(body)


def test_retire_with_idle_loop_and_queued_work_drains_it() -> None:
    """X-11: the queued input is drained by the loop in Retired (the loop is
    busy in a control command while the input is accepted and retired)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor(block_controls=True)
        await adapter.register_session_with_executor(sid, executor)
        await adapter.stop_runtime_executor(sid, RunControlCommand.CancelCurrentRun())
        await held(executor.control_entered)  # the loop is inside control()
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        report = await adapter.retire_runtime(sid)
        assert report == RetireReport(inputs_abandoned=0, inputs_pending_drain=1)
        executor.control_release.set()
        assert await outcome_of(handle) == CompletedWithoutResult()
        assert await adapter.runtime_state(sid) is RuntimeState.RETIRED

    run(body)


def test_reset_with_loop_ends_idle_and_loop_keeps_serving() -> None:
    """Decision 25 / X-12: after a reset with a loop attached the runtime is
    Idle, waiters got "runtime reset", and the loop still runs new input."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor(block_controls=True)
        await adapter.register_session_with_executor(sid, executor)
        await adapter.stop_runtime_executor(sid, RunControlCommand.CancelCurrentRun())
        await held(executor.control_entered)
        old = prompt("old")
        _, h_old = await adapter.accept_input_with_completion(sid, old)
        report = await adapter.reset_runtime(sid)
        assert report.inputs_abandoned == 1
        assert await outcome_of(h_old) == RuntimeTerminated(reason="runtime reset")
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE
        executor.control_release.set()
        new = prompt("new")
        _, h_new = await adapter.accept_input_with_completion(sid, new)
        assert await outcome_of(h_new) == CompletedWithoutResult()
        assert executor.applied_ids() == [new.id()]  # the reset input never ran
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE

    run(body)


def test_reset_while_running_is_refused_and_changes_nothing() -> None:
    """X-12 / decision 6: reset while Running raises NotReady(running) before
    anything changes; waiters keep waiting and complete normally."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await held(executor.held)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        with pytest.raises(RuntimeDriverError.NotReady) as caught:
            await adapter.reset_runtime(sid)
        assert caught.value.state is RuntimeState.RUNNING
        assert await state_of(adapter, sid, a) is InputLifecycleState.STAGED
        assert await state_of(adapter, sid, b) is InputLifecycleState.QUEUED
        assert ha is not None
        assert not ha.done()
        executor.release.set()
        assert await outcome_of(ha) == CompletedWithoutResult()
        assert await outcome_of(hb) == CompletedWithoutResult()

    run(body)


# ---------------------------------------------------------------- exactly once (K-3)


def test_every_waiter_resolves_exactly_once() -> None:
    """K-2 / K-3: several waiters on one input (in-flight duplicates) all get
    the same answer; wait() repeats it; later terminating events (reset,
    destroy) change no answer and find no waiter left."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        first = prompt(key="same")
        _, h0 = await adapter.accept_input_with_completion(sid, first)
        await held(executor.held)
        handles = [h0]
        for _ in range(4):
            outcome, h = await adapter.accept_input_with_completion(
                sid, prompt(key="same")
            )
            assert outcome.is_deduplicated()
            handles.append(h)
        other = prompt("other")
        _, h_other = await adapter.accept_input_with_completion(sid, other)
        executor.release.set()
        for h in handles:
            assert await outcome_of(h) == Completed(run_result=RESULT)
        assert await outcome_of(h_other) == Completed(run_result=RESULT)
        assert len(adapter.sessions[sid].waiters) == 0
        await adapter.reset_runtime(sid)
        await adapter.destroy_runtime(sid)
        for h in handles:
            assert await outcome_of(h) == Completed(run_result=RESULT)
            assert await outcome_of(h) == Completed(run_result=RESULT)
        assert await outcome_of(h_other) == Completed(run_result=RESULT)
        assert executor.applied_ids() == [first.id(), other.id()]

    run(body)


def test_terminated_waiter_keeps_its_first_answer() -> None:
    """K-3: a reset-terminated waiter is not re-answered by a later destroy."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        handles = []
        for _ in range(3):
            _, h = await adapter.accept_input_with_completion(sid, prompt())
            handles.append(h)
        await adapter.reset_runtime(sid)
        await adapter.destroy_runtime(sid)
        await adapter.unregister_session(sid)
        for h in handles:
            assert await outcome_of(h) == RuntimeTerminated(reason="runtime reset")
            assert await outcome_of(h) == RuntimeTerminated(reason="runtime reset")

    run(body)


def test_cancelled_wait_does_not_cancel_other_waiters() -> None:
    """K-1: one caller giving up on wait() leaves other waiters answered."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        p = prompt(key="k")
        _, h1 = await adapter.accept_input_with_completion(sid, p)
        await held(executor.held)
        _, h2 = await adapter.accept_input_with_completion(sid, prompt(key="k"))
        assert h1 is not None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h1.wait(), 0.01)
        executor.release.set()
        assert await outcome_of(h2) == CompletedWithoutResult()
        assert await outcome_of(h1) == CompletedWithoutResult()

    run(body)


# ---------------------------------------------------------------- decision 19


def test_superseded_waiter_resolves_at_once() -> None:
    """Decisions 1, 19, 20: with external events routed to SUPERSEDE, the
    older input's waiter resolves Abandoned("superseded") at accept time;
    it never runs; the newer input's waiter completes with its run."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        old, new = event("old", supersession="k"), event("new", supersession="k")
        _, h_old = await adapter.accept_input_with_completion(sid, old)
        _, h_new = await adapter.accept_input_with_completion(sid, new)
        assert await outcome_of(h_old) == AbandonedOutcome(reason="superseded")
        assert await state_of(adapter, sid, old) is InputLifecycleState.SUPERSEDED
        assert h_new is not None
        assert not h_new.done()
        executor = ToyExecutor(result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        assert await outcome_of(h_new) == Completed(run_result=RESULT)
        assert executor.applied_ids() == [new.id()]

    run(body, RoutingPolicyTable(QueueMode.SUPERSEDE))


def test_coalesced_waiters_follow_the_aggregate() -> None:
    """Decision 19: coalesced inputs' waiters stay pending and resolve with the
    aggregate's outcome, through a chain (a -> b -> c); only c runs."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        a, b, c = (event(x, supersession="k") for x in "abc")
        unrelated = event("u", supersession="other")
        handles = []
        for inp in (a, b, unrelated, c):
            _, h = await adapter.accept_input_with_completion(sid, inp)
            handles.append(h)
        assert await state_of(adapter, sid, a) is InputLifecycleState.COALESCED
        assert await state_of(adapter, sid, b) is InputLifecycleState.COALESCED
        assert not any(h is None or h.done() for h in handles)
        executor = ToyExecutor(result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        for h in handles:
            assert await outcome_of(h) == Completed(run_result=RESULT)
        assert executor.applied_ids() == [unrelated.id(), c.id()]

    run(body, RoutingPolicyTable(QueueMode.COALESCE))


def test_coalesced_waiters_follow_an_abandoned_aggregate() -> None:
    """Decisions 19, 23: if the aggregate is abandoned, so are its followers."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor(default=Step.FAIL)
        await adapter.register_session(sid)
        a, b = event("a", supersession="k"), event("b", supersession="k")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        await adapter.register_session_with_executor(sid, executor)
        expected = AbandonedOutcome(
            reason="max_attempts_exhausted",
            error="ApplyFailedError: Apply failed: toy failure",
        )
        assert await outcome_of(ha) == expected
        assert await outcome_of(hb) == expected

    run(body, RoutingPolicyTable(QueueMode.COALESCE))


# ---------------------------------------------------------------- X-7 admission


def test_rejected_input_raises_validation_failed() -> None:
    """X-7: a Rejected outcome becomes ValidationFailed; nothing is recorded."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        bad = derived_prompt()
        with pytest.raises(RuntimeDriverError.ValidationFailed) as caught:
            await adapter.accept_input_with_completion(sid, bad)
        assert "durability" in caught.value.reason
        assert await adapter.input_state(sid, bad.id()) is None
        assert len(adapter.sessions[sid].waiters) == 0
        # accept_input itself reports the rejection as a value.
        outcome = await adapter.accept_input(sid, derived_prompt())
        assert outcome.is_rejected()

    run(body)


def test_consume_on_accept_gives_no_handle() -> None:
    """X-7 / K-5 / P-9: an operation input is consumed on accept: no handle,
    and it never reaches the executor."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        op = operation()
        outcome, handle = await adapter.accept_input_with_completion(sid, op)
        assert isinstance(outcome, AcceptOutcome.Accepted)
        assert handle is None
        assert await state_of(adapter, sid, op) is InputLifecycleState.CONSUMED
        _, h = await adapter.accept_input_with_completion(sid, prompt())
        await outcome_of(h)
        await drained(adapter, sid)
        assert len(executor.calls) == 1
        assert op.id() not in executor.applied_ids()

    run(body)


def test_unknown_session_is_not_ready_destroyed() -> None:
    """X-2: every per-session method on an unknown session raises
    NotReady(state=destroyed), and its text names the session and says it
    is not registered (not that a runtime was destroyed)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: adapter.accept_input(sid, prompt()),
            lambda: adapter.accept_input_with_completion(sid, prompt()),
            lambda: adapter.input_state(sid, prompt().id()),
            lambda: adapter.list_active_inputs(sid),
            lambda: adapter.runtime_state(sid),
            lambda: adapter.retire_runtime(sid),
            lambda: adapter.reset_runtime(sid),
            lambda: adapter.stop_runtime_executor(
                sid, RunControlCommand.StopRuntimeExecutor()
            ),
            lambda: adapter.destroy_runtime(sid),
            lambda: adapter.recover_runtime(sid),
            lambda: adapter.unregister_session(sid),
        ]
        for call in calls:
            with pytest.raises(RuntimeDriverError.NotReady) as caught:
                await call()
            assert caught.value.state is RuntimeState.DESTROYED
            assert str(caught.value) == (
                f"Runtime not ready: session {sid} is not registered"
            )

    run(body)


def test_outcomes_are_the_public_variants() -> None:
    """API.md: CompletionOutcome.<Variant> names the same classes."""
    assert CompletionOutcome.Completed is Completed
    assert CompletionOutcome.CompletedWithoutResult is CompletedWithoutResult
    assert CompletionOutcome.Abandoned is AbandonedOutcome
    assert CompletionOutcome.RuntimeTerminated is RuntimeTerminated
