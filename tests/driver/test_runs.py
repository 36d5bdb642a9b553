"""Runs in the ephemeral driver: dequeue, staging, run events, rollback,
consumption (docs/behaviour.md section 6, Z-1, Z-2, decisions 2, 3, 21)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    HandlingMode,
    InputAbandonReason,
    InputId,
    InputLifecycleState,
    InputTerminalOutcome,
    Lane,
    PostAdmissionSignal,
    RunId,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.events import (
    InputAbandoned,
    InputAccepted,
    InputApplied,
    InputConsumed,
    InputQueued,
    InputStaged,
)
from meerkat_runtime.inputs import Input
from meerkat_runtime.runs import RunCancelled, RunEvent, RunStarted
from tests.driver.helpers import (
    accept_all,
    arun_to_completion,
    boundary,
    completed,
    drained,
    everything,
    fail_run,
    failed,
    flow_step,
    new_driver,
    peer,
    prompt,
    run_to_completion,
    stage_run,
    state_changes,
)

Q = InputLifecycleState


def _phase(driver: EphemeralRuntimeDriver, input_id: InputId) -> InputLifecycleState:
    state = driver.input_state(input_id)
    assert state is not None
    return state.current_state()


def _lanes(driver: EphemeralRuntimeDriver) -> tuple[list[InputId], list[InputId]]:
    return driver.queued_input_ids(Lane.QUEUE), driver.queued_input_ids(Lane.STEER)


# ---------------------------------------------------------------- Z-1, Z-2


def test_manual_happy_path() -> None:
    """Z-1 (R-6, R-9, R-10, L-3, C-17) through the async public API."""

    async def scenario() -> None:
        driver = new_driver()
        inp = prompt()
        outcome = await driver.accept_input(inp)
        assert isinstance(outcome, AcceptOutcome.Accepted)
        assert outcome.state.current_state() is Q.QUEUED
        assert driver.take_wake_requested()
        assert driver.queued_input_ids() == [inp.id()]
        assert drained(driver) == [
            InputAccepted(input_id=inp.id()),
            InputQueued(input_id=inp.id()),
        ]

        run_id = RunId.new()
        driver.start_run(run_id)
        assert driver.runtime_state() is RuntimeState.RUNNING
        driver.stage_batch([inp.id()], run_id)
        state = driver.input_state(inp.id())
        assert state is not None
        assert (state.current_state(), state.attempt_count(), state.last_run_id()) == (
            Q.STAGED,
            1,
            run_id,
        )
        assert drained(driver) == [InputStaged(input_id=inp.id(), run_id=run_id)]
        assert _lanes(driver) == ([], [])

        await driver.on_run_event(RunStarted(run_id=run_id))
        await driver.on_run_event(boundary(run_id, [inp.id()], sequence=0))
        state = driver.input_state(inp.id())
        assert state is not None
        assert (state.current_state(), state.last_boundary_sequence()) == (
            Q.APPLIED_PENDING_CONSUMPTION,
            0,
        )
        assert drained(driver) == [InputApplied(input_id=inp.id(), run_id=run_id)]

        await driver.on_run_event(completed(run_id, [inp.id()]))
        state = driver.input_state(inp.id())
        assert state is not None
        assert state.current_state() is Q.CONSUMED
        assert state.terminal_outcome() == InputTerminalOutcome.Consumed()
        assert drained(driver) == [InputConsumed(input_id=inp.id(), run_id=run_id)]
        assert driver.runtime_state() is RuntimeState.IDLE
        assert driver.observe().control.current_run_id is None
        assert driver.active_input_ids() == []
        assert [(h.from_state, h.to_state) for h in state.history()] == [
            (Q.ACCEPTED, Q.QUEUED),
            (Q.QUEUED, Q.STAGED),
            (Q.STAGED, Q.APPLIED),
            (Q.APPLIED, Q.APPLIED_PENDING_CONSUMPTION),
            (Q.APPLIED_PENDING_CONSUMPTION, Q.CONSUMED),
        ]
        # decision 15: stable snake_case reasons
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", h.reason) for h in state.history())

    asyncio.run(scenario())


@pytest.mark.parametrize("terminal", ["failed", "cancelled"])
def test_failed_run_rolls_back_to_the_head(terminal: str) -> None:
    """Z-2 / R-11: A back to Queued at the head, control Idle, wake requested."""

    async def scenario() -> None:
        driver = new_driver()
        a, b = prompt("a"), prompt("b")
        for inp in (a, b):
            await driver.accept_input(inp)
        driver.take_post_admission_signal()
        run_id = stage_run(driver, [a.id()])
        assert driver.queued_input_ids() == [b.id()]
        event: RunEvent = (
            failed(run_id) if terminal == "failed" else RunCancelled(run_id=run_id)
        )
        await driver.on_run_event(event)
        assert _phase(driver, a.id()) is Q.QUEUED
        assert driver.queued_input_ids() == [a.id(), b.id()]
        assert driver.runtime_state() is RuntimeState.IDLE
        assert driver.take_wake_requested()
        state = driver.input_state(a.id())
        assert state is not None
        assert (state.attempt_count(), state.terminal_outcome()) == (1, None)

    asyncio.run(scenario())


def test_boundary_sequence_is_recorded() -> None:
    """R-14: an input records the sequence of the boundary that applied it."""

    async def scenario() -> None:
        driver = new_driver()
        [a] = accept_all(driver, prompt())
        await arun_to_completion(driver, [a], sequence=7)
        state = driver.input_state(a)
        assert state is not None
        assert state.last_boundary_sequence() == 7

    asyncio.run(scenario())


def test_runs_emit_no_runtime_state_change() -> None:
    """C-17: start_run, run events and complete_run emit no state change."""
    driver = new_driver()
    ids = accept_all(driver, prompt(), prompt())
    run_to_completion(driver, ids[:1])
    fail_run(driver, ids[1:])
    driver.start_run(RunId.new())
    driver.complete_run()
    assert state_changes(drained(driver)) == []


@pytest.mark.parametrize("attached", [False, True])
def test_run_returns_to_the_pre_run_state(attached: bool) -> None:
    """C-3: a run terminal returns to the state the run started from."""
    driver = new_driver()
    if attached:
        driver.attach()
    ids = accept_all(driver, prompt(), prompt())
    run_to_completion(driver, ids[:1])
    expected = RuntimeState.ATTACHED if attached else RuntimeState.IDLE
    assert driver.runtime_state() is expected
    fail_run(driver, ids[1:])
    assert driver.runtime_state() is expected


# ---------------------------------------------------------------- staging


def test_stage_requires_the_current_run() -> None:
    """R-6 (port): staging needs start_run(run_id) first."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.stage_input(a, RunId.new())
    driver.start_run(RunId.new())
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.stage_input(a, RunId.new())
    assert _phase(driver, a) is Q.QUEUED


def test_stage_only_the_head_of_the_lane() -> None:
    """R-6/R-7: ids must be an exact prefix of the active lane."""
    driver = new_driver()
    a, b, c = accept_all(driver, flow_step("a"), flow_step("b"), flow_step("c"))
    run_id = RunId.new()
    driver.start_run(run_id)
    before = everything(driver)
    for ids in ([b], [a, c], [b, a], [a, b, c, a], []):
        with pytest.raises(RuntimeDriverError.ValidationFailed):
            driver.stage_batch(ids, run_id)
        assert everything(driver) == before
    driver.stage_batch([a, b], run_id)
    assert driver.queued_input_ids() == [c]


def test_one_staged_batch_per_run() -> None:
    """R-7: a second stage for the same run is refused."""
    driver = new_driver()
    a, b = accept_all(driver, prompt(), prompt())
    run_id = stage_run(driver, [a])
    before = everything(driver)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.stage_input(b, run_id)
    assert everything(driver) == before


def test_steer_lane_drains_first() -> None:
    """R-6/C-20: while the steer lane holds anything, only its head can stage."""
    driver = new_driver()
    queued = prompt()
    steered = peer("message", mode=HandlingMode.STEER)
    accept_all(driver, queued, steered)
    run_id = RunId.new()
    driver.start_run(run_id)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.stage_input(queued.id(), run_id)
    driver.stage_input(steered.id(), run_id)
    assert _lanes(driver) == ([queued.id()], [])


def test_a_prompt_stages_from_the_head_only() -> None:
    """R-6: prompts follow the prefix rule like everything else."""
    driver = new_driver()
    a, b = accept_all(driver, prompt("a"), prompt("b"))
    run_id = RunId.new()
    driver.start_run(run_id)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.stage_input(b, run_id)
    driver.stage_input(a, run_id)
    assert driver.queued_input_ids() == [b]


# ---------------------------------------------------------------- R-5 dequeue


def test_dequeue_next_changes_nothing_and_lane_change_returns_ids() -> None:
    """R-5: dequeue reads steer first, then queue; no state, lane or event
    changes; a later lane change makes the ids available again."""
    driver = new_driver()
    a, b = prompt("a"), flow_step("b")
    s = peer("message", mode=HandlingMode.STEER)
    accept_all(driver, a, b, s)
    driver.drain_events()
    before = everything(driver)
    taken = [driver.dequeue_next() for _ in range(4)]
    assert taken == [(s.id(), s), (a.id(), a), (b.id(), b), None]
    assert everything(driver) == before
    accept_all(driver, prompt("c"))
    again = driver.dequeue_next()
    assert again is not None
    assert again[0] == s.id()


def test_dequeue_by_id() -> None:
    """R-5: dequeue_by_id takes one id once; unknown ids give None."""
    driver = new_driver()
    a, b = prompt("a"), prompt("b")
    accept_all(driver, a, b)
    before = everything(driver)
    assert driver.dequeue_by_id(b.id()) == (b.id(), b)
    assert driver.dequeue_by_id(b.id()) is None
    assert driver.dequeue_by_id(InputId.new()) is None
    assert driver.dequeue_next() == (a.id(), a)
    assert driver.dequeue_next() is None
    assert everything(driver) == before
    fail_run(driver, [a.id()])
    assert driver.dequeue_next() == (a.id(), a)


def test_dequeued_input_can_still_be_staged() -> None:
    """R-5: dequeue is only a cursor; the staged prefix is unaffected."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    assert driver.dequeue_next() is not None
    run_id = stage_run(driver, [a])
    assert _phase(driver, a) is Q.STAGED
    driver.run_event_now(failed(run_id))
    assert driver.dequeue_next() is not None


# ---------------------------------------------------------------- R-9 .. R-11, decision 2


def test_receipt_subset_then_completion_returns_the_rest_to_the_front() -> None:
    """R-9/R-10, PD-5: applied inputs are consumed; staged-but-unapplied ones
    go back to the lane front in order when the run completes."""
    driver = new_driver()
    a, b, c, d = accept_all(driver, *(flow_step(x) for x in "abcd"))
    run_id = stage_run(driver, [a, b, c])
    driver.run_event_now(boundary(run_id, [a]))
    assert [_phase(driver, i) for i in (a, b, c)] == [
        Q.APPLIED_PENDING_CONSUMPTION,
        Q.STAGED,
        Q.STAGED,
    ]
    driver.run_event_now(completed(run_id, [a, b]))
    assert [_phase(driver, i) for i in (a, b, c)] == [Q.CONSUMED, Q.QUEUED, Q.QUEUED]
    assert driver.queued_input_ids() == [b, c, d]
    consumed = [e for e in drained(driver) if isinstance(e, InputConsumed)]
    assert consumed == [InputConsumed(input_id=a, run_id=run_id)]


def test_failure_after_boundary_keeps_applied_inputs_out_of_lanes() -> None:
    """R-11: inputs applied before the failure stay applied, in no lane."""
    driver = new_driver()
    a, b = accept_all(driver, flow_step("a"), flow_step("b"))
    run_id = stage_run(driver, [a, b])
    driver.run_event_now(boundary(run_id, [a], sequence=1))
    driver.run_event_now(failed(run_id))
    assert _phase(driver, a) is Q.APPLIED_PENDING_CONSUMPTION
    assert _phase(driver, b) is Q.QUEUED
    assert driver.queued_input_ids() == [b]
    assert driver.active_input_ids() == [a, b]


@pytest.mark.parametrize(
    "terminal", ["failed", "cancelled", "completed-without-boundary"]
)
@pytest.mark.parametrize("lane", [Lane.QUEUE, Lane.STEER])
def test_batch_returns_to_the_front_in_original_order(
    terminal: str, lane: Lane
) -> None:
    """Decision 2 (replacing the R-11 reversal): any batch size, either lane,
    back at the front in original order, ahead of inputs that arrived meanwhile."""
    driver = new_driver()

    def build(name: str) -> Input:
        if lane is Lane.STEER:
            return peer("message", mode=HandlingMode.STEER, body=name)
        return flow_step(name)

    batch = accept_all(driver, *(build(x) for x in "abc"))
    [waiting] = accept_all(driver, build("d"))
    run_id = stage_run(driver, batch)
    [late] = accept_all(driver, build("e"))
    if terminal == "failed":
        driver.run_event_now(failed(run_id))
    elif terminal == "cancelled":
        driver.run_event_now(RunCancelled(run_id=run_id))
    else:
        driver.run_event_now(completed(run_id, []))
    assert driver.queued_input_ids(lane) == [*batch, waiting, late]
    assert all(_phase(driver, i) is Q.QUEUED for i in batch)


def test_third_failure_abandons_and_leaves_the_lanes() -> None:
    """Decision 3 / L-4: the third rollback abandons with
    max_attempts_exhausted(3), emits Abandoned, and the input never stages again."""
    driver = new_driver()
    a, b = accept_all(driver, prompt("a"), prompt("b"))
    for attempt in (1, 2):
        fail_run(driver, [a])
        state = driver.input_state(a)
        assert state is not None
        assert (state.current_state(), state.attempt_count()) == (Q.QUEUED, attempt)
        assert driver.queued_input_ids() == [a, b]
    driver.drain_events()
    fail_run(driver, [a])
    state = driver.input_state(a)
    assert state is not None
    assert state.current_state() is Q.ABANDONED
    assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
        reason=InputAbandonReason.MaxAttemptsExhausted(attempts=3)
    )
    assert InputAbandoned(input_id=a, reason="max_attempts_exhausted") in drained(
        driver
    )
    assert driver.queued_input_ids() == [b]
    assert driver.active_input_ids() == [b]
    run_id = RunId.new()
    driver.start_run(run_id)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.stage_input(a, run_id)
    driver.stage_input(b, run_id)


def test_run_failure_raises_wake_only_with_backlog() -> None:
    """R-11: a failed run wakes the loop when a lane is non-empty afterwards."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    driver.take_post_admission_signal()
    fail_run(driver, [a])
    assert driver.take_post_admission_signal() is PostAdmissionSignal.WAKE_LOOP
    [b] = accept_all(driver, prompt())
    driver.take_post_admission_signal()
    run_id = stage_run(driver, [a])
    driver.run_event_now(boundary(run_id, [a]))
    driver.run_event_now(failed(run_id))
    assert driver.take_post_admission_signal() is PostAdmissionSignal.WAKE_LOOP
    run_id = stage_run(driver, [b])
    driver.run_event_now(boundary(run_id, [b]))
    driver.run_event_now(failed(run_id))
    assert driver.queued_input_ids() == []
    assert driver.take_post_admission_signal() is PostAdmissionSignal.NONE


# ---------------------------------------------------------------- decision 21


def _stale_or_unknown(stale: bool, driver: EphemeralRuntimeDriver) -> RunId:
    if stale:
        [x] = accept_all(driver, prompt("x"))
        return run_to_completion(driver, [x])
    return RunId.new()


EVENTS: list[Callable[[RunId, list[InputId]], RunEvent]] = [
    lambda r, ids: boundary(r, ids),
    lambda r, ids: completed(r, ids),
    lambda r, _ids: failed(r),
    lambda r, _ids: RunCancelled(run_id=r),
]


@pytest.mark.parametrize(
    "make_event", EVENTS, ids=["boundary", "completed", "failed", "cancelled"]
)
@pytest.mark.parametrize("stale", [True, False], ids=["stale-run", "unknown-run"])
@pytest.mark.parametrize("running", [True, False], ids=["running", "idle"])
def test_event_for_a_run_that_is_not_current_changes_nothing(
    make_event: Callable[[RunId, list[InputId]], RunEvent], stale: bool, running: bool
) -> None:
    """Decision 21: ValidationFailed, nothing consumed or rolled back."""

    async def scenario() -> None:
        driver = new_driver()
        other = _stale_or_unknown(stale, driver)
        [a] = accept_all(driver, prompt("a"))
        if running:
            run_id = stage_run(driver, [a])
            driver.run_event_now(boundary(run_id, [a]))
        before = everything(driver)
        with pytest.raises(RuntimeDriverError.ValidationFailed):
            await driver.on_run_event(make_event(other, [a]))
        assert everything(driver) == before

    asyncio.run(scenario())


# ---------------------------------------------------------------- receipts


@pytest.mark.parametrize("extra", ["queued", "unknown", "consumed"])
def test_receipt_naming_an_input_not_staged_for_the_run_is_refused(extra: str) -> None:
    """R-9 (port) / decision 6: the whole event is refused, nothing applied."""
    driver = new_driver()
    a, b = accept_all(driver, flow_step("a"), flow_step("b"))
    other = InputId.new()
    if extra == "consumed":
        run_to_completion(driver, [a])
        a, b = b, a
        other = b
    elif extra == "queued":
        other = b
    run_id = stage_run(driver, [a])
    driver.drain_events()
    before = everything(driver)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.run_event_now(boundary(run_id, [a, other]))
    assert everything(driver) == before
    assert _phase(driver, a) is Q.STAGED


def test_receipt_naming_an_input_twice_is_all_or_nothing() -> None:
    """Decision 6: either the receipt is refused with a driver error and
    nothing changes, or the input is applied exactly once."""
    driver = new_driver()
    [a] = accept_all(driver, flow_step())
    run_id = stage_run(driver, [a])
    driver.drain_events()
    before = everything(driver)
    try:
        driver.run_event_now(boundary(run_id, [a, a]))
    except RuntimeDriverError:
        assert everything(driver) == before
    else:
        assert _phase(driver, a) is Q.APPLIED_PENDING_CONSUMPTION
        assert drained(driver) == [InputApplied(input_id=a, run_id=run_id)]


def test_run_started_is_a_no_op() -> None:
    """R-13: RunStarted changes nothing."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    run_id = stage_run(driver, [a])
    before = everything(driver)
    driver.run_event_now(RunStarted(run_id=run_id))
    assert everything(driver) == before


# ---------------------------------------------------------------- helpers, C-7


def test_apply_input_then_consume_inputs() -> None:
    """R-8/R-15: apply_input marks APC at sequence 0 with an Applied event;
    consume_inputs consumes it with a Consumed event."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    run_id = stage_run(driver, [a])
    driver.drain_events()
    driver.apply_input(a, run_id)
    state = driver.input_state(a)
    assert state is not None
    assert (state.current_state(), state.last_boundary_sequence()) == (
        Q.APPLIED_PENDING_CONSUMPTION,
        0,
    )
    driver.consume_inputs([a], run_id)
    assert _phase(driver, a) is Q.CONSUMED
    assert drained(driver) == [
        InputApplied(input_id=a, run_id=run_id),
        InputConsumed(input_id=a, run_id=run_id),
    ]
    driver.run_event_now(completed(run_id, []))
    assert driver.runtime_state() is RuntimeState.IDLE


@pytest.mark.parametrize("case", ["queued", "unknown", "wrong-run"])
def test_apply_input_refuses_an_input_not_staged_for_the_run(case: str) -> None:
    """R-8 (port): ValidationFailed and nothing changes."""
    driver = new_driver()
    a, b = accept_all(driver, prompt("a"), prompt("b"))
    run_id = stage_run(driver, [a])
    target, run = {
        "queued": (b, run_id),
        "unknown": (InputId.new(), run_id),
        "wrong-run": (a, RunId.new()),
    }[case]
    before = everything(driver)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.apply_input(target, run)
    assert everything(driver) == before


def test_consume_inputs_ignores_inputs_not_applied_by_the_run() -> None:
    """R-15: only applied-pending inputs of that run are consumed; others are
    silently skipped."""
    driver = new_driver()
    a, b, c = accept_all(driver, flow_step("a"), flow_step("b"), flow_step("c"))
    run_id = stage_run(driver, [a, b])
    driver.apply_input(a, run_id)
    driver.drain_events()
    before = everything(driver)
    driver.consume_inputs([b, c, InputId.new()], run_id)
    driver.consume_inputs([a], RunId.new())
    assert everything(driver) == before


def test_rollback_staged_puts_inputs_back_in_order() -> None:
    """R-16 / decision 2: rollback_staged returns staged inputs to the lane
    front in order; once the batch is empty the run can be completed."""
    driver = new_driver()
    a, b, c = accept_all(driver, flow_step("a"), flow_step("b"), flow_step("c"))
    run_id = stage_run(driver, [a, b])
    driver.drain_events()
    driver.rollback_staged([a, b, c])
    assert driver.queued_input_ids() == [a, b, c]
    assert [_phase(driver, i) for i in (a, b, c)] == [Q.QUEUED] * 3
    assert drained(driver) == []
    assert driver.complete_run() == run_id
    assert driver.runtime_state() is RuntimeState.IDLE


def test_rolled_back_run_cannot_stage_a_second_batch() -> None:
    """R-7 / PD-5 (one staged batch per run): rolling the batch back does
    not reopen the run for staging; the caller unwinds it (complete_run)."""
    driver = new_driver()
    a, b = accept_all(driver, flow_step("a"), flow_step("b"))
    run_id = stage_run(driver, [a, b])
    driver.rollback_staged([a, b])
    before = everything(driver)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.stage_batch([a, b], run_id)
    assert everything(driver) == before


def test_complete_run_refuses_while_a_batch_is_staged() -> None:
    """C-7 (port): complete_run unwinds only a run with nothing staged."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    stage_run(driver, [a])
    before = everything(driver)
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.complete_run()
    assert everything(driver) == before


def test_complete_run_without_a_run_is_refused() -> None:
    """C-7: no current run, nothing to complete."""
    driver = new_driver()
    with pytest.raises(RuntimeDriverError):
        driver.complete_run()
    assert driver.runtime_state() is RuntimeState.IDLE
