"""The generated runtime control authority (docs/behaviour.md section 5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meerkat_runtime import (
    HandlingMode,
    RunId,
    RuntimeControlAuthority,
    RuntimeControlError,
    RuntimeControlInput,
    RuntimeState,
)
from meerkat_runtime.generated.runtime_control import (
    RESTORE_INPUTS,
    RuntimeControlEffect,
    RuntimeControlSnapshot,
)

S = RuntimeState
I = RuntimeControlInput  # noqa: E741 - short alias keeps the tables readable
E = RuntimeControlEffect
R1, R2 = RunId("r1"), RunId("r2")


def at(phase: S, **fields: Any) -> RuntimeControlAuthority:
    return RuntimeControlAuthority.restore(
        RuntimeControlSnapshot(phase=phase, **fields)
    )


def test_predicates() -> None:
    """C-1: terminal, can_accept_input, can_process_queue, is_idle_or_attached."""
    assert {s for s in S if s.is_terminal()} == {S.STOPPED, S.DESTROYED}
    assert {s for s in S if s.can_accept_input()} == {S.IDLE, S.ATTACHED, S.RUNNING}
    assert {s for s in S if s.can_process_queue()} == {S.IDLE, S.ATTACHED, S.RETIRED}
    assert {s for s in S if s.is_idle_or_attached()} == {S.IDLE, S.ATTACHED}


@pytest.mark.parametrize(
    ("start", "back"),
    [
        (S.IDLE, S.IDLE),
        (S.ATTACHED, S.ATTACHED),
        (S.RETIRED, S.RETIRED),
        (S.RECOVERING, S.IDLE),
    ],
)
@pytest.mark.parametrize("end", [I.RunCompleted, I.RunFailed, I.RunCancelled])
def test_run_returns_to_where_it_started(
    start: S, back: S, end: Callable[[RunId], RuntimeControlInput]
) -> None:
    """C-3: BeginRun remembers the phase; every run terminal returns there
    (recovering returns to idle) and clears the run."""
    auth = at(start)
    begin = auth.apply(I.BeginRun(R1))
    assert begin.effects == ()
    assert auth.pre_run_state() is start
    assert auth.apply(end(R1)).next_phase is back
    assert (auth.current_run_id(), auth.pre_run_state()) == (None, None)


def test_run_terminal_needs_the_current_run() -> None:
    """C-3 / decision 21: a run event naming another run is refused and
    changes nothing."""
    auth = at(S.IDLE)
    auth.apply(I.BeginRun(R1))
    before = auth.snapshot()
    with pytest.raises(RuntimeControlError.GuardFailed) as info:
        auth.apply(I.RunCompleted(R2))
    assert "active_run_matches" in info.value.guards
    assert auth.snapshot() == before


def test_begin_run_needs_no_active_run() -> None:
    """C-3: a retired runtime with a run in flight cannot begin another."""
    auth = at(S.IDLE)
    auth.apply(I.BeginRun(R1))
    auth.apply(I.RetireRequested())
    assert auth.phase() is S.RETIRED
    assert auth.current_run_id() == R1
    with pytest.raises(RuntimeControlError.GuardFailed):
        auth.apply(I.BeginRun(R2))
    assert auth.apply(I.RunCompleted(R1)).next_phase is S.RETIRED
    assert auth.current_run_id() is None


def test_reset_is_refused_while_running() -> None:
    """C-3 / decision 6: ResetRequested is not legal from running."""
    auth = at(S.IDLE)
    auth.apply(I.BeginRun(R1))
    with pytest.raises(RuntimeControlError.InvalidTransition):
        auth.apply(I.ResetRequested())
    assert auth.phase() is S.RUNNING


def test_reset_stop_destroy_effects() -> None:
    """C-3 / A-16: control commands announce the phase change; a reset also
    withdraws the pending signals (the inputs they were for are gone)."""
    reset = at(S.RETIRED).apply(I.ResetRequested())
    assert reset.next_phase is S.IDLE
    assert reset.effects == (E.WithdrawSignals(), E.AnnouncePhaseChange())
    stop = at(S.RUNNING, current_run_id=R1, pre_run_state=S.IDLE).apply(
        I.StopRequested()
    )
    assert stop.next_phase is S.STOPPED
    assert stop.effects == (E.AnnouncePhaseChange(),)


def test_stopped_can_only_be_destroyed() -> None:
    """C-3: destroy is legal from stopped; everything else is terminal."""
    auth = at(S.STOPPED)
    with pytest.raises(RuntimeControlError.TerminalState):
        auth.apply(I.ResumeRequested())
    assert auth.apply(I.DestroyRequested()).next_phase is S.DESTROYED
    with pytest.raises(RuntimeControlError.TerminalState):
        auth.apply(I.DestroyRequested())


def test_recycle_goes_through_recovering() -> None:
    """C-3 / decision 7: recycle from retired comes back idle."""
    auth = at(S.RETIRED)
    assert auth.apply(I.RecycleRequested()).effects == (E.AnnouncePhaseChange(),)
    assert auth.phase() is S.RECOVERING
    assert auth.apply(I.RecycleSucceeded()).next_phase is S.IDLE


def test_resume_only_from_recovering() -> None:
    """C-12: ResumeRequested is legal only in recovering."""
    with pytest.raises(RuntimeControlError.InvalidTransition):
        at(S.IDLE).apply(I.ResumeRequested())
    assert at(S.RECOVERING).apply(I.ResumeRequested()).next_phase is S.IDLE


@pytest.mark.parametrize(
    ("phase", "mode", "wake", "signals"),
    [
        (S.IDLE, HandlingMode.QUEUE, True, ("SignalWake",)),
        (S.IDLE, HandlingMode.QUEUE, False, ()),
        (S.RUNNING, HandlingMode.QUEUE, False, ()),
        (
            S.RUNNING,
            HandlingMode.STEER,
            False,
            ("SignalWake", "SignalImmediateProcess"),
        ),
        (
            S.ATTACHED,
            HandlingMode.STEER,
            True,
            ("SignalWake", "SignalImmediateProcess"),
        ),
    ],
)
def test_admission_signals_follow_handling_mode_and_policy(
    phase: S, mode: HandlingMode, wake: bool, signals: tuple[str, ...]
) -> None:
    """A-16: a steer admission wakes the loop and asks for immediate
    processing; a queued one wakes it when the policy says so."""
    auth = at(phase, current_run_id=R1 if phase is S.RUNNING else None)
    before = auth.snapshot()
    transition = auth.apply(I.AdmissionAccepted(mode, wake))
    assert transition.next_phase is phase
    assert tuple(type(e).__name__ for e in transition.effects) == signals
    assert auth.snapshot() == before


def test_admission_is_refused_outside_accepting_phases() -> None:
    inp = I.AdmissionAccepted(HandlingMode.QUEUE, True)
    with pytest.raises(RuntimeControlError.InvalidTransition):
        at(S.RETIRED).apply(inp)


@pytest.mark.parametrize("phase", [s for s in S if s is not S.INITIALIZING])
def test_waiting_work_wakes_the_loop_in_any_phase(phase: S) -> None:
    """R-13 / D-12: work left in a lane wakes the loop; the phase is kept."""
    transition = at(phase).apply(I.WorkWaiting())
    assert transition.effects == (E.SignalWake(),)
    assert transition.next_phase is phase


@pytest.mark.parametrize(
    ("phase", "pre_run", "stored"),
    [
        (S.IDLE, None, S.IDLE),
        (S.ATTACHED, None, S.IDLE),
        (S.RUNNING, S.ATTACHED, S.RUNNING),
        (S.RUNNING, S.IDLE, S.RUNNING),
        (S.RUNNING, S.RETIRED, S.RETIRED),
        (S.RETIRED, None, S.RETIRED),
        (S.STOPPED, None, S.STOPPED),
    ],
)
def test_stored_phase_follows_the_spec(phase: S, pre_run: S | None, stored: S) -> None:
    """D-3: attached is stored idle; a retired runtime's drain run is stored
    retired, so a crash mid-drain brings it back retired."""
    run = R1 if phase is S.RUNNING else None
    auth = at(phase, current_run_id=run, pre_run_state=pre_run)
    assert auth.stored_phase() is stored


@pytest.mark.parametrize("stored", [S.RETIRED, S.STOPPED, S.DESTROYED])
def test_restore_inputs_bring_an_idle_runtime_back(stored: S) -> None:
    """D-11 step 9: the spec's restore inputs lead from idle to the phase."""
    auth = at(S.IDLE)
    for inp in RESTORE_INPUTS[stored]:
        auth.apply(inp)
    assert auth.phase() is stored
    assert set(RESTORE_INPUTS) == {S.RETIRED, S.STOPPED, S.DESTROYED}
