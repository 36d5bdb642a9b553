"""The generated runtime control authority (docs/behaviour.md section 5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meerkat_runtime import (
    AdmissionEffect,
    HandlingMode,
    InputId,
    RunId,
    RuntimeControlAuthority,
    RuntimeControlError,
    RuntimeControlInput,
    RuntimeState,
)
from meerkat_runtime.generated.runtime_control import (
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
    assert begin.effects == (E.SubmitRunPrimitive(R1),)
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
    """C-3: control commands report the command and terminate waiters."""
    reset = at(S.RETIRED).apply(I.ResetRequested())
    assert reset.next_phase is S.IDLE
    assert reset.effects == (
        E.ApplyControlPlaneCommand("reset"),
        E.ResolveCompletionAsTerminated("reset"),
    )
    stop = at(S.RUNNING, current_run_id=R1, pre_run_state=S.IDLE).apply(
        I.StopRequested()
    )
    assert stop.next_phase is S.STOPPED
    assert stop.effects[1] == E.ResolveCompletionAsTerminated("stopped")


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
    assert auth.apply(I.RecycleRequested()).effects == (E.InitiateRecycle(),)
    assert auth.phase() is S.RECOVERING
    assert auth.apply(I.RecycleSucceeded()).next_phase is S.IDLE


def test_resume_only_from_recovering() -> None:
    """C-12: ResumeRequested is legal only in recovering."""
    with pytest.raises(RuntimeControlError.InvalidTransition):
        at(S.IDLE).apply(I.ResumeRequested())
    assert at(S.RECOVERING).apply(I.ResumeRequested()).next_phase is S.IDLE


@pytest.mark.parametrize(
    ("phase", "mode", "signals"),
    [
        (S.IDLE, HandlingMode.QUEUE, ("SignalWake",)),
        (S.RUNNING, HandlingMode.QUEUE, ()),
        (S.RUNNING, HandlingMode.STEER, ("SignalWake", "SignalImmediateProcess")),
        (S.ATTACHED, HandlingMode.STEER, ("SignalWake", "SignalImmediateProcess")),
    ],
)
def test_admission_signals_follow_handling_mode(
    phase: S, mode: HandlingMode, signals: tuple[str, ...]
) -> None:
    """C-3 (upstream contract): an accepted steer admission wakes the loop and
    asks for immediate processing; a queued one wakes only an idle runtime."""
    auth = at(phase, current_run_id=R1 if phase is S.RUNNING else None)
    inp = I.AdmissionAccepted(
        InputId("i"), "prompt", mode, None, None, AdmissionEffect.QUEUED
    )
    transition = auth.apply(inp)
    assert transition.next_phase is phase
    assert tuple(type(e).__name__ for e in transition.effects[1:]) == signals
    assert auth.process_pending() is (mode is HandlingMode.STEER)


def test_admission_inputs_are_refused_outside_live_phases() -> None:
    with pytest.raises(RuntimeControlError.InvalidTransition):
        at(S.RETIRED).apply(I.AdmissionRejected(InputId("i"), "full"))
