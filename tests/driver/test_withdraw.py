"""Withdrawing a run the store could not record (W-6a, PD-38).

A withdrawn run ends as if it had never staged its batch: each input still
staged is exactly as it was before staging (phase, attempts, last run,
history), back at the front of its lane in order; the runtime leaves
Running. Refused, changing nothing (decision 6), for a run that is not the
current one or that already applied inputs.
"""

from __future__ import annotations

import asyncio

import pytest

from meerkat_runtime import InputLifecycleState, Lane, RunId, RuntimeDriverError
from meerkat_runtime import RuntimeState as Phase
from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.ids import InputId
from meerkat_runtime.input_state import InputStateRecord
from tests.driver.helpers import (
    accept_all,
    boundary,
    fail_run,
    new_driver,
    prompt,
    stage_run,
)


def records(driver: EphemeralRuntimeDriver) -> dict[InputId, InputStateRecord]:
    return {r.input_id: r for r in driver.observe().inputs}


def withdraw(driver: EphemeralRuntimeDriver, run_id: RunId) -> None:
    asyncio.run(driver.withdraw_run(run_id))


def test_a_withdrawn_run_leaves_its_inputs_as_before_staging() -> None:
    driver = new_driver()
    a, b, c = accept_all(driver, prompt("a"), prompt("b"), prompt("c"))
    fail_run(driver, [a])  # one real failure: a has one attempt
    driver.attach()
    before = records(driver)
    driver.take_post_admission_signal()  # so the one asserted below is new
    run_id = stage_run(driver, [a, b])
    assert driver.runtime_state() is Phase.RUNNING
    withdraw(driver, run_id)
    assert records(driver) == before  # attempts, last run, history: all as before
    assert driver.queued_input_ids(Lane.QUEUE) == [a, b, c]
    assert driver.runtime_state() is Phase.ATTACHED
    assert driver.take_wake_requested()  # the inputs put back wait
    state = driver.input_state(a)
    assert state is not None
    assert state.attempt_count() == 1


def test_withdrawing_again_and_again_never_abandons() -> None:
    """Decision 3 counts the executor's failures only: ten withdrawn runs
    leave the input queued with no attempt used."""
    driver = new_driver()
    (a,) = accept_all(driver, prompt("a"))
    for _ in range(10):
        withdraw(driver, stage_run(driver, [a]))
    state = driver.input_state(a)
    assert state is not None
    assert state.current_state() is InputLifecycleState.QUEUED
    assert state.attempt_count() == 0


def test_a_run_in_flight_when_retired_is_withdrawn_into_retired() -> None:
    driver = new_driver()
    (a,) = accept_all(driver, prompt("a"))
    run_id = stage_run(driver, [a])
    asyncio.run(driver.retire())
    withdraw(driver, run_id)
    assert driver.runtime_state() is Phase.RETIRED
    assert driver.queued_input_ids() == [a]


def test_withdraw_refuses_a_run_that_is_not_current() -> None:
    driver = new_driver()
    (a,) = accept_all(driver, prompt("a"))
    stage_run(driver, [a])
    before = driver.observe()
    with pytest.raises(RuntimeDriverError.ValidationFailed, match="not the current"):
        withdraw(driver, RunId.new())
    assert driver.observe() == before


def test_withdraw_refuses_a_run_that_applied_inputs() -> None:
    """An applied input is the run's to complete: withdrawing would leave it
    applied in no lane."""
    driver = new_driver()
    a, b = accept_all(driver, prompt("a"), prompt("b"))
    run_id = stage_run(driver, [a, b])
    driver.run_event_now(boundary(run_id, [a]))
    before = driver.observe()
    with pytest.raises(RuntimeDriverError.ValidationFailed, match=f"applied input {a}"):
        withdraw(driver, run_id)
    assert driver.observe() == before
