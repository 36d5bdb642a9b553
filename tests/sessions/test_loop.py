"""The runtime loop behind ``RuntimeSessionAdapter`` (docs/behaviour.md §9.1, Z-9).

Rules: W-1 .. W-9 (loop, batching, primitive), C-20 (batching policy),
K-4 with decisions 9 and 10 (waiters), decision 17 (steer at a checkpoint),
decision 3 (attempts bounded), and the port's per-run timeout and
cancellation rules. Runs are held in flight with ``Step.HOLD`` (an event the
test releases), never with sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    CallbackPending,
    ContentBlock,
    HandlingMode,
    ImageData,
    InputAbandonReason,
    InputLifecycleState,
    InputTerminalOutcome,
    RunApplyBoundary,
    RunControlCommand,
    RunResult,
    RuntimeDriverError,
    RuntimeSessionAdapter,
    RuntimeState,
    RuntimeTurnMetadata,
    SessionId,
)
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    Completed,
    CompletedWithoutResult,
    RuntimeTerminated,
)
from meerkat_runtime.sessions.executor import Append

from .executors import Step, ToyExecutor
from .helpers import (
    continuation,
    drained,
    event,
    flow_step,
    held,
    outcome_of,
    peer_message,
    prompt,
    state_of,
)

Body = Callable[[RuntimeSessionAdapter, SessionId], Awaitable[None]]
RESULT = RunResult(text="done")


def run(body: Body, run_timeout: float | None = None) -> None:
    """One ephemeral adapter and session per test; loops closed at the end."""

    async def main() -> None:
        adapter = RuntimeSessionAdapter.ephemeral(
            retry_delay=0.001, run_timeout=run_timeout
        )
        sid = SessionId.new()
        try:
            await body(adapter, sid)
        finally:
            await adapter.close()

    asyncio.run(main())


# ---------------------------------------------------------------- Z-9 basics


def test_success_runs_once_consumes_and_returns_attached() -> None:
    """Z-9 / W-6 / W-8: one call, input Consumed, runtime back to Attached."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        p = prompt()
        outcome, handle = await adapter.accept_input_with_completion(sid, p)
        assert isinstance(outcome, AcceptOutcome.Accepted)
        assert await outcome_of(handle) == CompletedWithoutResult()
        assert executor.applied_ids() == [p.id()]
        state = await adapter.input_state(sid, p.id())
        assert state is not None
        assert state.current_state() is InputLifecycleState.CONSUMED
        assert state.terminal_outcome() == InputTerminalOutcome.Consumed()
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        assert await adapter.list_active_inputs(sid) == []

    run(body)


def test_failure_is_retried_then_abandoned_after_three_attempts() -> None:
    """Z-9 / W-7 with decisions 2, 3, 9: a failing executor sees the input
    three times; the waiter resolves once, Abandoned(max_attempts_exhausted)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor(default=Step.FAIL)
        await adapter.register_session_with_executor(sid, executor)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        assert await outcome_of(handle) == AbandonedOutcome(
            reason="max_attempts_exhausted",
            error="ApplyFailedError: Apply failed: toy failure",
        )
        assert executor.applied_ids() == [p.id()] * 3
        state = await adapter.input_state(sid, p.id())
        assert state is not None
        assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.MaxAttemptsExhausted(attempts=3)
        )
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        assert await adapter.list_active_inputs(sid) == []

    run(body)


def test_waiter_stays_pending_while_a_failed_input_is_requeued() -> None:
    """Decision 9 (W-7 QUIRK fixed): after a failed run the input is queued
    again and its waiter keeps waiting; the retry's result reaches it."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.FAIL, Step.HOLD], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        assert handle is not None
        await held(executor.held)  # second attempt in flight
        assert not handle.done()
        state = await adapter.input_state(sid, p.id())
        assert state is not None
        assert state.current_state() is InputLifecycleState.STAGED
        assert state.attempt_count() == 2
        assert InputLifecycleState.QUEUED in [h.to_state for h in state.history()[2:]]
        executor.release.set()
        assert await outcome_of(handle) == Completed(run_result=RESULT)
        assert len(executor.calls) == 2

    run(body)


def test_executor_failure_with_other_work_queued_keeps_order() -> None:
    """Decision 2 / C-20: a failed prompt goes back to the head of its lane,
    so it is retried before the prompt queued behind it."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.FAIL])
        await adapter.register_session(sid)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        await adapter.register_session_with_executor(sid, executor)
        assert await outcome_of(ha) == CompletedWithoutResult()
        assert await outcome_of(hb) == CompletedWithoutResult()
        assert executor.applied_ids() == [a.id(), a.id(), b.id()]

    run(body)


@pytest.mark.parametrize(
    ("result", "terminal", "expected"),
    [
        (None, None, CompletedWithoutResult()),
        (None, RESULT, Completed(run_result=RESULT)),
        (RESULT, None, Completed(run_result=RESULT)),  # decision 10
        (RESULT, RESULT, Completed(run_result=RESULT)),
        (None, CallbackPending(tool_name="t"), CompletedWithoutResult()),
    ],
    ids=["nothing", "terminal-only", "result-only", "both", "callback-pending"],
)
def test_completion_outcome_follows_the_apply_output(
    result: RunResult | None,
    terminal: RunResult | CallbackPending | None,
    expected: object,
) -> None:
    """Z-9 / K-4 with decision 10: a run result completes the waiter with it,
    terminal marker or not; without one the waiter completes without result."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor(result=result, terminal=terminal)
        await adapter.register_session_with_executor(sid, executor)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        assert await outcome_of(handle) == expected

    run(body)


def test_duplicate_key_in_flight_shares_the_original_result() -> None:
    """Z-9 / X-7: a duplicate of an in-flight input gets (Deduplicated, handle)
    and that handle resolves with the original's result; one execution."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        first = prompt("once", key="k-1")
        _, h1 = await adapter.accept_input_with_completion(sid, first)
        await held(executor.held)
        again = prompt("once", key="k-1")
        outcome, h2 = await adapter.accept_input_with_completion(sid, again)
        assert outcome == AcceptOutcome.Deduplicated(
            input_id=again.id(), existing_id=first.id()
        )
        assert h2 is not None
        assert not h2.done()
        executor.release.set()
        assert await outcome_of(h1) == Completed(run_result=RESULT)
        assert await outcome_of(h2) == Completed(run_result=RESULT)
        assert executor.applied_ids() == [first.id()]
        assert await adapter.input_state(sid, again.id()) is None

    run(body)


def test_duplicate_key_after_completion_gets_no_handle() -> None:
    """Z-9 / X-7: the existing input is terminal, so (Deduplicated, None)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        first = prompt(key="k-2")
        _, h1 = await adapter.accept_input_with_completion(sid, first)
        await outcome_of(h1)
        again = prompt(key="k-2")
        outcome, h2 = await adapter.accept_input_with_completion(sid, again)
        assert outcome == AcceptOutcome.Deduplicated(
            input_id=again.id(), existing_id=first.id()
        )
        assert h2 is None
        assert len(executor.calls) == 1

    run(body)


# ---------------------------------------------------------------- batching (C-20, W-9)


def test_steer_lane_runs_first_as_one_checkpoint_batch() -> None:
    """C-20 step 1, W-11, decision 17: queued steer work overtakes older queue
    work and runs as one batch applied at RUN_CHECKPOINT; queue work follows
    at RUN_START."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)  # no loop: everything queues
        a = prompt("a")
        s1 = peer_message("steer me", mode=HandlingMode.STEER)
        s2 = event("urgent", mode=HandlingMode.STEER)
        s3 = continuation("go on", mode=HandlingMode.STEER)
        for inp in (a, s1, s2, s3):
            await adapter.accept_input(sid, inp)
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        await drained(adapter, sid)
        assert executor.batches() == [[s1.id(), s2.id(), s3.id()], [a.id()]]
        steer, queue = (c.primitive for c in executor.calls)
        assert steer.boundary is RunApplyBoundary.RUN_CHECKPOINT
        assert queue.boundary is RunApplyBoundary.RUN_START
        # W-9: a continuation contributes no append.
        assert steer.appends == [
            Append(role="user", text="steer me"),
            Append(role="user", text="[EVENT via hook] urgent"),
        ]

    run(body)


def test_steer_input_accepted_mid_run_waits_then_overtakes_queue_work() -> None:
    """W-11: no mid-run steering; a steer input accepted while a run is in
    flight runs right after it, before older queue work, at a checkpoint."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        first = prompt("first")
        await adapter.accept_input(sid, first)
        await held(executor.held)
        queued = prompt("queued")
        steer = peer_message("now", mode=HandlingMode.STEER)
        await adapter.accept_input(sid, queued)
        await adapter.accept_input(sid, steer)
        assert len(executor.calls) == 1  # nothing reached the running executor
        executor.release.set()
        await drained(adapter, sid)
        assert executor.batches() == [[first.id()], [steer.id()], [queued.id()]]
        assert executor.calls[1].primitive.boundary is RunApplyBoundary.RUN_CHECKPOINT

    run(body)


def test_prompts_run_alone_and_non_prompts_batch_together() -> None:
    """C-20 step 2: a prompt always gets a run of its own; consecutive
    non-prompt queue inputs form one batch, stopping before the next prompt."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        p1, p2 = prompt("p1"), prompt("p2")
        e1, f1, c1 = event("e1"), flow_step("f1"), continuation("c1")
        p3, e2 = prompt("p3"), event("e2")
        for inp in (p1, p2, e1, f1, c1, p3, e2):
            await adapter.accept_input(sid, inp)
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        await drained(adapter, sid)
        assert executor.batches() == [
            [p1.id()],
            [p2.id()],
            [e1.id(), f1.id(), c1.id()],
            [p3.id()],
            [e2.id()],
        ]
        assert all(
            c.primitive.boundary is RunApplyBoundary.RUN_START for c in executor.calls
        )

    run(body)


def test_primitive_appends_and_turn_metadata() -> None:
    """W-9: one user append per input in batch order (none for a
    continuation); peer message blocks get the COMMS label; event text names
    the source; metadata: scalars last-non-None wins, lists concatenate."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        image = ContentBlock.Image(
            media_type="image/png", data=ImageData.Inline(data="aW1n")
        )
        text = ContentBlock.Text(text="look")
        f1 = flow_step(
            "first step",
            RuntimeTurnMetadata(
                model="m1", provider="p1", skill_references=["a"], keep_alive=True
            ),
        )
        peer = peer_message("look", blocks=[text, image])
        cont = continuation("c")
        ev = event("  body text  ", render_metadata={"style": "x"})
        f2 = flow_step(
            "second step",
            RuntimeTurnMetadata(
                model="m2", skill_references=["b"], additional_instructions=["be brief"]
            ),
        )
        for inp in (f1, peer, cont, ev, f2):
            await adapter.accept_input(sid, inp)
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        await drained(adapter, sid)
        [call] = executor.calls
        primitive = call.primitive
        assert primitive.contributing_input_ids == [
            f1.id(),
            peer.id(),
            cont.id(),
            ev.id(),
            f2.id(),
        ]
        assert primitive.context_appends == []
        assert primitive.appends == [
            Append(role="user", text="first step"),
            Append(
                role="user",
                blocks=[
                    ContentBlock.Text(text="[COMMS MESSAGE from peer-a]"),
                    text,
                    image,
                ],
            ),
            Append(role="user", text="[EVENT via hook] body text"),
            Append(role="user", text="second step"),
        ]
        meta = primitive.turn_metadata
        assert meta is not None
        assert meta.model == "m2"
        assert meta.provider == "p1"
        assert meta.keep_alive is True
        assert meta.handling_mode is HandlingMode.QUEUE
        assert meta.render_metadata == {"style": "x"}
        assert meta.skill_references == ["a", "b"]
        assert meta.additional_instructions == ["be brief"]
        assert meta.execution_kind == "content_turn"

    run(body)


def test_all_continuation_batch_is_a_resume_pending_turn() -> None:
    """W-9: ``execution_kind = resume_pending`` iff every input of the batch
    is a Continuation, else ``content_turn``."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        for inp in (continuation("a"), continuation("b")):
            await adapter.accept_input(sid, inp)
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        await drained(adapter, sid)
        [call] = executor.calls
        meta = call.primitive.turn_metadata
        assert meta is not None
        assert meta.execution_kind == "resume_pending"

    run(body)


# ---------------------------------------------------------------- control and failures


def test_control_commands_preempt_queued_work() -> None:
    """W-2 / W-4 / W-5 step 1: a control command sent while a run is in
    flight reaches the executor after that run and before the next batch."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        a, b, c = prompt("a"), prompt("b"), prompt("c")
        await adapter.accept_input(sid, a)
        await held(executor.held)
        await adapter.accept_input(sid, b)
        await adapter.accept_input(sid, c)
        cancel = RunControlCommand.CancelCurrentRun(reason="interrupt")
        await adapter.stop_runtime_executor(sid, cancel)
        assert executor.controls == []  # not observed while apply is in flight
        executor.release.set()
        await drained(adapter, sid)
        assert executor.log == [
            f"apply:{a.id()}",
            "control:cancel_current_run",
            f"apply:{b.id()}",
            f"apply:{c.id()}",
        ]
        assert executor.controls == [cancel]
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED

    run(body)


def test_stop_command_preempts_queued_work() -> None:
    """W-4: a stop sent during a run ends the loop after that run; queued work
    never reaches the executor and its waiter learns the runtime stopped."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await held(executor.held)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        stop = RunControlCommand.StopRuntimeExecutor(reason="bye")
        stopping = asyncio.create_task(adapter.stop_runtime_executor(sid, stop))
        await asyncio.sleep(0)
        assert not stopping.done()  # waits for the loop to apply the stop
        executor.release.set()
        await asyncio.wait_for(stopping, 1.0)
        assert executor.log == [f"apply:{a.id()}", "control:stop_runtime_executor"]
        assert await outcome_of(ha) == Completed(run_result=RESULT)
        assert await outcome_of(hb) == RuntimeTerminated(reason="runtime stopped")
        assert await state_of(adapter, sid, b) is InputLifecycleState.ABANDONED
        assert await adapter.runtime_state(sid) is RuntimeState.STOPPED

    run(body)


@pytest.mark.parametrize("step", [Step.CRASH, Step.FAIL])
def test_any_exception_from_apply_fails_the_run(step: Step) -> None:
    """API.md: an executor fails a run by raising CoreExecutorError.ApplyFailed;
    any other exception counts as a failure too (W-7): retried, then fine."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([step, step], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        assert await outcome_of(handle) == Completed(run_result=RESULT)
        assert executor.applied_ids() == [p.id()] * 3
        state = await adapter.input_state(sid, p.id())
        assert state is not None
        assert state.attempt_count() == 3
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED

    run(body)


def test_crashing_executor_exhausts_attempts_and_loop_survives() -> None:
    """W-7 / decision 3: a plain exception on every attempt abandons the input
    (max_attempts_exhausted) and the loop keeps serving later inputs."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.CRASH] * 3)
        await adapter.register_session_with_executor(sid, executor)
        _, h1 = await adapter.accept_input_with_completion(sid, prompt("bad"))
        assert await outcome_of(h1) == AbandonedOutcome(
            reason="max_attempts_exhausted", error="RuntimeError: toy crash"
        )
        _, h2 = await adapter.accept_input_with_completion(sid, prompt("good"))
        assert await outcome_of(h2) == CompletedWithoutResult()
        assert len(executor.calls) == 4

    run(body)


def test_cancelled_error_from_apply_is_a_failed_run() -> None:
    """API.md: any exception from ``apply`` other than the executor error
    counts as a failed run (W-7); the loop itself was not cancelled, so it
    must retry the input and keep serving (fixed in 9329166)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.CANCELLED], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        assert await outcome_of(handle) == Completed(run_result=RESULT)
        assert len(executor.calls) == 2
        assert adapter.sessions[sid].has_live_loop()
        _, later = await adapter.accept_input_with_completion(sid, prompt("later"))
        assert await outcome_of(later) == Completed(run_result=RESULT)

    run(body)


def test_run_timeout_turns_a_hung_executor_into_a_failed_run() -> None:
    """PD-19: with ``run_timeout`` a hung apply is cancelled and the run
    fails; the input is retried and its waiter resolves with the retry."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HANG], result=RESULT)
        await adapter.register_session_with_executor(sid, executor)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        assert await outcome_of(handle) == Completed(run_result=RESULT)
        assert executor.applied_ids() == [p.id(), p.id()]
        assert executor.cancelled == 1  # the hung call was cancelled
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED

    run(body, run_timeout=0.05)


def test_always_hanging_executor_ends_in_max_attempts_exhausted() -> None:
    """PD-19 + decision 3: a waiter never waits forever on a hung executor."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor(default=Step.HANG)
        await adapter.register_session_with_executor(sid, executor)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        assert await outcome_of(handle) == AbandonedOutcome(
            reason="max_attempts_exhausted",
            error="TimeoutError: executor did not finish within 0.03 s",
        )
        assert executor.cancelled == 3

    run(body, run_timeout=0.03)


# ---------------------------------------------------------------- loop exit


def test_closing_the_adapter_mid_run_requeues_and_terminates_waiters() -> None:
    """W-3 and the port's cancellation rule: cancelling the loop mid-run puts
    the batch back (nothing lost) and waiters get RuntimeTerminated("session
    adapter closed"); the closed adapter starts no new loop (a restart runs
    the inputs)."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await held(executor.held)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        await adapter.close()
        closed = RuntimeTerminated(reason="session adapter closed")
        assert await outcome_of(ha) == closed
        assert await outcome_of(hb) == closed
        assert executor.cancelled == 1
        assert await state_of(adapter, sid, a) is InputLifecycleState.QUEUED
        assert await state_of(adapter, sid, b) is InputLifecycleState.QUEUED
        assert await adapter.list_active_inputs(sid) == [a.id(), b.id()]
        assert await adapter.runtime_state(sid) is not RuntimeState.RUNNING

        second = ToyExecutor()
        with pytest.raises(RuntimeDriverError.NotReady, match="adapter is closed"):
            await adapter.register_session_with_executor(sid, second)
        assert second.calls == []

    run(body)


def test_unregister_mid_run_requeues_and_terminates_waiters() -> None:
    """X-5: unregistering stops the loop; the in-flight batch goes back to the
    queue (not lost) and waiters get "runtime session unregistered"."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        driver = adapter.sessions[sid].driver
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        await held(executor.held)
        await adapter.unregister_session(sid)
        assert await outcome_of(handle) == RuntimeTerminated(
            reason="runtime session unregistered"
        )
        assert executor.cancelled == 1
        state = driver.input_state(p.id())
        assert state is not None
        assert state.current_state() is InputLifecycleState.QUEUED
        assert driver.queued_input_ids() == [p.id()]
        assert driver.runtime_state() is RuntimeState.IDLE  # detached
        assert sid not in adapter.sessions

    run(body)


def test_one_wake_drains_every_lane() -> None:
    """W-8: the single wake sent when the executor attaches (X-4) drains all
    queued work, batch after batch; the runtime ends Attached."""

    async def body(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
        await adapter.register_session(sid)
        inputs = [prompt("p1"), event("e1"), event("e2"), prompt("p2")]
        inputs.append(peer_message("s", mode=HandlingMode.STEER))
        for inp in inputs:
            await adapter.accept_input(sid, inp)
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        await drained(adapter, sid)
        p1, e1, e2, p2, s = (i.id() for i in inputs)
        assert executor.batches() == [[s], [p1], [e1, e2], [p2]]
        for inp in inputs:
            assert await state_of(adapter, sid, inp) is InputLifecycleState.CONSUMED
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED

    run(body)
