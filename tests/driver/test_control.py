"""Runtime control of the ephemeral driver (docs/behaviour.md section 5, D-12,
Z-3 .. Z-5, decisions 6, 7, 8, 24)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    InputAbandonReason,
    InputId,
    InputLifecycleState,
    InputTerminalOutcome,
    Lane,
    PostAdmissionSignal,
    RecoveryReport,
    RetireReport,
    RunId,
    RuntimeControlError,
    RuntimeControlSnapshot,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.driver.ephemeral import (
    EphemeralRuntimeDriver,
    RuntimeControlCommand,
)
from meerkat_runtime.events import InputAbandoned, RuntimeStateChange
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.generated.spec_types import AnyInputAbandonReason
from tests.driver.helpers import (
    accept_all,
    arun_to_completion,
    boundary,
    completed,
    drained,
    everything,
    fail_run,
    flow_step,
    new_driver,
    prompt,
    run_to_completion,
    stage_run,
    state_changes,
)

Q = InputLifecycleState
S = RuntimeState


def _outcome(driver: EphemeralRuntimeDriver, input_id: InputId) -> object:
    state = driver.input_state(input_id)
    assert state is not None
    return state.terminal_outcome()


def _abandoned(reason: AnyInputAbandonReason) -> object:
    return InputTerminalOutcome.Abandoned(reason=reason)


def _all_lanes(driver: EphemeralRuntimeDriver) -> list[InputId]:
    return driver.queued_input_ids(Lane.QUEUE) + driver.queued_input_ids(Lane.STEER)


# ---------------------------------------------------------------- C-5, C-6


def test_attach_and_detach_emit_state_changes() -> None:
    """C-5/C-6: attach idle->attached, detach returns the previous state."""
    driver = new_driver()
    driver.attach()
    assert driver.runtime_state() is S.ATTACHED
    assert driver.is_idle_or_attached()
    assert not driver.is_idle()
    assert drained(driver) == [
        RuntimeStateChange(from_state=S.IDLE, to_state=S.ATTACHED)
    ]
    before = everything(driver)
    with pytest.raises(RuntimeControlError):
        driver.attach()
    assert everything(driver) == before
    assert driver.detach() is S.ATTACHED
    assert drained(driver) == [
        RuntimeStateChange(from_state=S.ATTACHED, to_state=S.IDLE)
    ]
    assert driver.is_idle()


def test_detach_when_not_attached_does_nothing() -> None:
    """C-6: detach outside Attached returns None and changes nothing."""
    driver = new_driver()
    before = everything(driver)
    assert driver.detach() is None
    assert everything(driver) == before


# ---------------------------------------------------------------- C-8, Z-3


def test_retire_then_drain() -> None:
    """Z-3 / C-8: queued work survives retire and drains; runs return to
    Retired; new input is refused; destroy afterwards abandons nothing."""

    async def scenario() -> None:
        driver = new_driver()
        a = prompt()
        await driver.accept_input(a)
        driver.drain_events()
        report = await driver.retire()
        assert report == RetireReport(inputs_abandoned=0, inputs_pending_drain=1)
        assert driver.runtime_state() is S.RETIRED
        assert drained(driver) == [
            RuntimeStateChange(from_state=S.IDLE, to_state=S.RETIRED)
        ]
        assert driver.queued_input_ids() == [a.id()]
        with pytest.raises(RuntimeDriverError.NotReady):
            await driver.accept_input(prompt())
        await arun_to_completion(driver, [a.id()])
        assert _outcome(driver, a.id()) == InputTerminalOutcome.Consumed()
        assert driver.runtime_state() is S.RETIRED
        destroyed = await driver.destroy()
        assert destroyed.inputs_abandoned == 0
        assert driver.runtime_state() is S.DESTROYED
        assert state_changes(drained(driver)) == [("retired", "destroyed")]

    asyncio.run(scenario())


def test_retire_during_a_run_keeps_it_in_flight() -> None:
    """C-3/C-8/C-16: retire keeps the current run; its completion returns to
    Retired and consumes as usual."""
    driver = new_driver()
    a, b = accept_all(driver, prompt("a"), prompt("b"))
    run_id = stage_run(driver, [a])
    driver.run_event_now(boundary(run_id, [a]))
    report = driver.retire_now()
    assert report == RetireReport(inputs_abandoned=0, inputs_pending_drain=2)
    assert driver.observe().control.current_run_id == run_id
    driver.run_event_now(completed(run_id, [a]))
    assert driver.runtime_state() is S.RETIRED
    assert _outcome(driver, a) == InputTerminalOutcome.Consumed()
    assert driver.queued_input_ids() == [b]


# ---------------------------------------------------------------- C-9, Z-4


def test_reset_abandons_everything_and_returns_idle() -> None:
    """Z-4 / C-9 / E-4: abandoned events (reason ``reset``) then idle->idle."""

    async def scenario() -> None:
        driver = new_driver()
        a, b = prompt("a"), prompt("b")
        for inp in (a, b):
            await driver.accept_input(inp)
        driver.drain_events()
        report = await driver.reset()
        assert report.inputs_abandoned == 2
        assert _all_lanes(driver) == []
        assert driver.runtime_state() is S.IDLE
        assert driver.take_post_admission_signal() is PostAdmissionSignal.NONE
        for inp in (a, b):
            assert _outcome(driver, inp.id()) == _abandoned(InputAbandonReason.Reset())
        assert drained(driver) == [
            InputAbandoned(input_id=a.id(), reason="reset"),
            InputAbandoned(input_id=b.id(), reason="reset"),
            RuntimeStateChange(from_state=S.IDLE, to_state=S.IDLE),
        ]

    asyncio.run(scenario())


def test_reset_after_retire_accepts_again() -> None:
    """Z-4 / C-9: reset after retire is Idle and accepting."""

    async def scenario() -> None:
        driver = new_driver()
        await driver.accept_input(prompt())
        await driver.retire()
        report = await driver.reset()
        assert report.inputs_abandoned == 1
        assert driver.runtime_state() is S.IDLE
        inp = prompt()
        assert (await driver.accept_input(inp)).is_accepted()
        assert driver.queued_input_ids() == [inp.id()]

    asyncio.run(scenario())


def test_reset_while_running_changes_nothing() -> None:
    """Z-4 with decision 6 (overriding the C-9 quirk): refused before any
    input is abandoned."""

    async def scenario() -> None:
        driver = new_driver()
        a, _b = accept_all(driver, prompt("a"), prompt("b"))
        stage_run(driver, [a])
        before = everything(driver)
        with pytest.raises(RuntimeDriverError.NotReady):
            await driver.reset()
        assert everything(driver) == before
        assert driver.runtime_state() is S.RUNNING

    asyncio.run(scenario())


# ---------------------------------------------------------------- C-10, C-11, Z-5


def test_destroy_abandons_with_reason_destroyed() -> None:
    """C-10 / E-4: state change first, then abandoned (``destroyed``)."""

    async def scenario() -> None:
        driver = new_driver()
        [a] = accept_all(driver, prompt())
        stage_run(driver, [a])
        driver.drain_events()
        report = await driver.destroy()
        assert report.inputs_abandoned == 1
        assert drained(driver) == [
            RuntimeStateChange(from_state=S.RUNNING, to_state=S.DESTROYED),
            InputAbandoned(input_id=a, reason="destroyed"),
        ]
        assert _outcome(driver, a) == _abandoned(InputAbandonReason.Destroyed())
        assert driver.observe().batch is None
        before = everything(driver)
        with pytest.raises(RuntimeDriverError.Destroyed):
            await driver.destroy()
        assert everything(driver) == before

    asyncio.run(scenario())


def test_stop_abandons_with_reason_destroyed() -> None:
    """Z-5 / C-11 / L-13: Stopped, lanes empty, inputs abandoned ``destroyed``."""

    async def scenario() -> None:
        driver = new_driver()
        a = prompt()
        await driver.accept_input(a)
        driver.drain_events()
        await driver.on_runtime_control(RuntimeControlCommand.STOP)
        assert driver.runtime_state() is S.STOPPED
        assert _all_lanes(driver) == []
        assert _outcome(driver, a.id()) == _abandoned(InputAbandonReason.Destroyed())
        assert drained(driver) == [
            RuntimeStateChange(from_state=S.IDLE, to_state=S.STOPPED),
            InputAbandoned(input_id=a.id(), reason="destroyed"),
        ]
        before = everything(driver)
        with pytest.raises(RuntimeDriverError.NotReady):
            await driver.on_runtime_control(RuntimeControlCommand.STOP)
        assert everything(driver) == before
        report = await driver.destroy()
        assert report.inputs_abandoned == 0
        assert driver.runtime_state() is S.DESTROYED

    asyncio.run(scenario())


def test_stop_while_running_clears_the_run() -> None:
    """C-3/C-11: stop from running clears the run; its events are refused."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    run_id = stage_run(driver, [a])
    driver.runtime_control_now(RuntimeControlCommand.STOP)
    assert driver.observe().control.current_run_id is None
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        driver.run_event_now(completed(run_id, [a]))


# ---------------------------------------------------------------- C-12 resume


@pytest.mark.parametrize(
    "setup",
    [
        lambda _: None,
        lambda d: d.attach(),
        lambda d: d.retire_now(),
        lambda d: d.runtime_control_now(RuntimeControlCommand.STOP),
        lambda d: d.destroy_now(),
    ],
    ids=["idle", "attached", "retired", "stopped", "destroyed"],
)
def test_resume_outside_recovering_is_a_no_op(
    setup: Callable[[EphemeralRuntimeDriver], object],
) -> None:
    """C-12: Resume is silent and does nothing outside Recovering."""
    driver = new_driver()
    accept_all(driver, prompt())
    setup(driver)
    before = everything(driver)
    asyncio.run(driver.on_runtime_control(RuntimeControlCommand.RESUME))
    assert everything(driver) == before


def test_resume_from_recovering_returns_idle_silently() -> None:
    """C-12/C-17: recovering -> idle without an event. The ephemeral driver is
    Recovering only inside recycle, so the test installs that control state."""
    driver = new_driver()
    driver._core._control = rc.RuntimeControlAuthority.restore(
        RuntimeControlSnapshot(phase=S.RECOVERING)
    )
    asyncio.run(driver.on_runtime_control(RuntimeControlCommand.RESUME))
    assert driver.runtime_state() is S.IDLE
    assert driver.drain_events() == []


# ---------------------------------------------------------------- D-12, decision 24


def test_recover_counts_queued_as_recovered() -> None:
    """D-12: queued inputs are recovered, not requeued; lanes keep their order;
    a non-empty lane wakes the loop; the phase does not change (C-13)."""
    driver = new_driver()
    a, b = accept_all(driver, prompt("a"), flow_step("b"))
    driver.take_post_admission_signal()
    driver.drain_events()
    report = asyncio.run(driver.recover())
    assert report == RecoveryReport(
        inputs_recovered=2, inputs_abandoned=0, inputs_requeued=0
    )
    assert driver.queued_input_ids() == [a, b]
    assert driver.take_post_admission_signal() is PostAdmissionSignal.WAKE_LOOP
    assert driver.runtime_state() is S.IDLE
    assert drained(driver) == []


def test_recover_requeues_staged_and_keeps_applied() -> None:
    """D-12 / decision 24: staged inputs go back to the front in order
    (requeued); applied ones are kept, counted recovered, in no lane."""
    driver = new_driver()
    a, b, c, d = accept_all(driver, *(flow_step(x) for x in "abcd"))
    run_id = stage_run(driver, [a, b, c])
    driver.run_event_now(boundary(run_id, [a]))
    report = asyncio.run(driver.recover())
    assert report == RecoveryReport(
        inputs_recovered=4, inputs_abandoned=0, inputs_requeued=2
    )
    assert driver.queued_input_ids() == [b, c, d]
    state = driver.input_state(a)
    assert state is not None
    assert state.current_state() is Q.APPLIED_PENDING_CONSUMPTION
    assert driver.runtime_state() is S.RUNNING


def test_recover_abandons_exhausted_staged_input() -> None:
    """Decisions 3/24: a staged input on its last attempt is abandoned by
    recovery and counted as such."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    fail_run(driver, [a])
    fail_run(driver, [a])
    stage_run(driver, [a])
    driver.drain_events()
    report = asyncio.run(driver.recover())
    assert report == RecoveryReport(
        inputs_recovered=1, inputs_abandoned=1, inputs_requeued=0
    )
    assert _outcome(driver, a) == _abandoned(
        InputAbandonReason.MaxAttemptsExhausted(attempts=3)
    )
    assert drained(driver) == [
        InputAbandoned(input_id=a, reason="max_attempts_exhausted")
    ]
    assert _all_lanes(driver) == []


def test_recover_empty_and_destroyed() -> None:
    """D-12: nothing to recover gives a zero report and no wake; so does a
    destroyed runtime (as upstream), and it changes nothing."""
    driver = new_driver()
    assert asyncio.run(driver.recover()) == RecoveryReport()
    assert driver.take_post_admission_signal() is PostAdmissionSignal.NONE
    driver.destroy_now()
    before = everything(driver)
    assert asyncio.run(driver.recover()) == RecoveryReport()
    assert everything(driver) == before


# ---------------------------------------------------------------- C-14, decision 7


@pytest.mark.parametrize(
    ("setup", "start"),
    [
        (lambda d: d.retire_now(), S.RETIRED),
        (lambda _: None, S.IDLE),
        (lambda d: d.attach(), S.ATTACHED),
    ],
    ids=["retired", "idle", "attached"],
)
def test_recycle_returns_idle_and_accepting_with_work_preserved(
    setup: Callable[[EphemeralRuntimeDriver], object], start: RuntimeState
) -> None:
    """Decision 7 / C-14: a recycled runtime (retired included) is Idle,
    accepts input, and keeps its queued work in order."""

    async def scenario() -> None:
        driver = new_driver()
        a, b = accept_all(driver, prompt("a"), flow_step("b"))
        setup(driver)
        driver.drain_events()
        transferred = await driver.recycle_preserving_work()
        assert transferred == 2
        assert driver.runtime_state() is S.IDLE
        assert driver.queued_input_ids() == [a, b]
        assert state_changes(drained(driver)) == [
            (start.value, "recovering"),
            ("recovering", "idle"),
        ]
        c = prompt("c")
        assert (await driver.accept_input(c)).is_accepted()
        assert driver.queued_input_ids() == [a, b, c.id()]
        await arun_to_completion(driver, [a])

    asyncio.run(scenario())


def _start_then_retire(d: EphemeralRuntimeDriver) -> None:
    d.start_run(RunId.new())
    d.retire_now()


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (lambda d: d.start_run(RunId.new()), RuntimeDriverError.NotReady),
        (_start_then_retire, RuntimeDriverError.NotReady),
        (
            lambda d: d.runtime_control_now(RuntimeControlCommand.STOP),
            RuntimeDriverError.NotReady,
        ),
        (lambda d: d.destroy_now(), RuntimeDriverError.Destroyed),
    ],
    ids=["running", "retired-with-run", "stopped", "destroyed"],
)
def test_recycle_refused_changes_nothing(
    setup: Callable[[EphemeralRuntimeDriver], object], error: type[RuntimeDriverError]
) -> None:
    """C-3/C-14 with decision 6: no recycle with a run in flight or when terminal."""
    driver = new_driver()
    accept_all(driver, prompt())
    setup(driver)
    before = everything(driver)
    with pytest.raises(error):
        asyncio.run(driver.recycle_preserving_work())
    assert everything(driver) == before


# ---------------------------------------------------------------- decision 8


def _abandon_by_reset(d: EphemeralRuntimeDriver, _input_id: InputId) -> None:
    d.reset_now()


def _abandon_by_stop(d: EphemeralRuntimeDriver, _input_id: InputId) -> None:
    d.runtime_control_now(RuntimeControlCommand.STOP)


def _abandon_by_attempts(d: EphemeralRuntimeDriver, a: InputId) -> None:
    for _ in range(3):
        fail_run(d, [a])


def _abandon_mid_run_by_reset(d: EphemeralRuntimeDriver, a: InputId) -> None:
    stage_run(d, [a])
    d.retire_now()
    d.reset_now()


@pytest.mark.parametrize(
    "abandon",
    [
        _abandon_by_reset,
        _abandon_by_stop,
        _abandon_by_attempts,
        _abandon_mid_run_by_reset,
    ],
    ids=["reset", "stop", "attempts", "reset-mid-run"],
)
def test_abandoned_input_never_reenters_a_lane(
    abandon: Callable[[EphemeralRuntimeDriver, InputId], None],
) -> None:
    """Decision 8 (and C-15): after abandonment no operation puts it back."""
    driver = new_driver()
    inp = prompt()
    accept_all(driver, inp)
    a = inp.id()
    abandon(driver, a)
    assert driver.input_state(a) is not None
    assert _outcome(driver, a) is not None
    driver.rollback_staged([a])
    driver.recover_now()
    if driver.runtime_state() in (S.IDLE, S.ATTACHED, S.RETIRED):
        driver.recycle_now()
    if driver.runtime_state().can_accept_input():
        assert driver.accept_now(inp) == AcceptOutcome.Deduplicated(
            input_id=a, existing_id=a
        )
    assert a not in _all_lanes(driver)
    assert driver.dequeue_next() is None
    assert a not in driver.active_input_ids()


# ---------------------------------------------------------------- C-17


def _detach(d: EphemeralRuntimeDriver) -> None:
    d.attach()
    d.drain_events()
    d.detach()


def _start_and_complete(d: EphemeralRuntimeDriver) -> None:
    d.start_run(RunId.new())
    d.complete_run()


OPS: dict[
    str, tuple[Callable[[EphemeralRuntimeDriver], object], list[tuple[str, str]]]
] = {
    "attach": (lambda d: d.attach(), [("idle", "attached")]),
    "detach": (_detach, [("attached", "idle")]),
    "retire": (lambda d: d.retire_now(), [("idle", "retired")]),
    "reset": (lambda d: d.reset_now(), [("idle", "idle")]),
    "destroy": (lambda d: d.destroy_now(), [("idle", "destroyed")]),
    "stop": (
        lambda d: d.runtime_control_now(RuntimeControlCommand.STOP),
        [("idle", "stopped")],
    ),
    "recycle": (
        lambda d: d.recycle_now(),
        [("idle", "recovering"), ("recovering", "idle")],
    ),
    "recover": (lambda d: d.recover_now(), []),
    "resume": (lambda d: d.runtime_control_now(RuntimeControlCommand.RESUME), []),
    "run": (lambda d: run_to_completion(d, d.active_input_ids()), []),
    "failed-run": (lambda d: fail_run(d, d.active_input_ids()), []),
    "start-complete": (_start_and_complete, []),
    "accept": (lambda d: d.accept_now(prompt()), []),
}


@pytest.mark.parametrize(("op", "changes"), OPS.values(), ids=OPS)
def test_which_operations_emit_runtime_state_change(
    op: Callable[[EphemeralRuntimeDriver], object], changes: list[tuple[str, str]]
) -> None:
    """C-17 (E-4): attach, detach, retire, reset, destroy, stop and recycle
    emit RuntimeStateChange; runs, recover, resume and accept do not. The port
    keeps recycle's ``-> recovering`` event (the C-14 loss is a quirk)."""
    driver = new_driver()
    accept_all(driver, prompt())
    driver.drain_events()
    op(driver)
    assert state_changes(drained(driver)) == changes
