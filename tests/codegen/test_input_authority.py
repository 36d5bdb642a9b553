"""The generated input lifecycle authority (docs/behaviour.md section 4)."""

from __future__ import annotations

import pytest

from meerkat_runtime import (
    InputAbandonReason,
    InputId,
    InputLifecycleAuthority,
    InputLifecycleError,
    InputLifecycleInput,
    InputLifecycleState,
    InputTerminalOutcome,
    RunId,
)
from meerkat_runtime.generated.input_lifecycle import (
    InputLifecycleEffect,
    InputLifecycleSnapshot,
)

S = InputLifecycleState
I = InputLifecycleInput  # noqa: E741 - short alias keeps the tables readable
E = InputLifecycleEffect
RUN = RunId("run-1")


def staged(attempts: int = 1) -> InputLifecycleAuthority:
    auth = InputLifecycleAuthority()
    auth.apply(I.QueueAccepted())
    for _ in range(attempts - 1):
        auth.apply(I.StageForRun(RUN))
        auth.apply(I.RollbackStaged())
    auth.apply(I.StageForRun(RUN))
    return auth


def test_happy_path_and_effects() -> None:
    """L-3 / Z-1: accepted -> queued -> staged -> applied -> apc -> consumed,
    with the effects of each step in order."""
    auth = InputLifecycleAuthority()
    assert auth.phase() is S.ACCEPTED
    steps = [
        (I.QueueAccepted(), S.QUEUED, (E.InputLifecycleNotice(S.QUEUED),)),
        (
            I.StageForRun(RUN),
            S.STAGED,
            (E.InputLifecycleNotice(S.STAGED), E.RecordRunAssociation(RUN)),
        ),
        (I.MarkApplied(RUN), S.APPLIED, (E.InputLifecycleNotice(S.APPLIED),)),
        (
            I.MarkAppliedPendingConsumption(7),
            S.APPLIED_PENDING_CONSUMPTION,
            (
                E.InputLifecycleNotice(S.APPLIED_PENDING_CONSUMPTION),
                E.RecordBoundarySequence(7),
            ),
        ),
        (
            I.Consume(),
            S.CONSUMED,
            (
                E.InputLifecycleNotice(S.CONSUMED),
                E.RecordTerminalOutcome(InputTerminalOutcome.Consumed()),
            ),
        ),
    ]
    for inp, phase, effects in steps:
        before = auth.phase()
        transition = auth.apply(inp)
        assert (transition.from_phase, transition.next_phase) == (before, phase)
        assert transition.effects == effects
    assert auth.last_run_id() == RUN
    assert auth.last_boundary_sequence() == 7
    assert auth.attempt_count() == 1
    assert auth.terminal_outcome() == InputTerminalOutcome.Consumed()
    assert auth.phase().is_terminal()


def test_third_rollback_abandons_with_max_attempts() -> None:
    """L-4 / decision 3: two rollbacks re-queue, the third abandons with
    MaxAttemptsExhausted(attempts=3)."""
    auth = staged(attempts=3)
    assert auth.attempt_count() == 3
    transition = auth.apply(I.RollbackStaged())
    assert transition.next_phase is S.ABANDONED
    reason = InputAbandonReason.MaxAttemptsExhausted(attempts=3)
    assert auth.terminal_outcome() == InputTerminalOutcome.Abandoned(reason=reason)
    assert staged(attempts=2).apply(I.RollbackStaged()).next_phase is S.QUEUED


def test_mark_applied_needs_the_staged_run() -> None:
    """L-3: MarkApplied with another run fails guard matches_last_run and
    changes nothing (decision 6)."""
    auth = staged()
    before = auth.snapshot()
    with pytest.raises(InputLifecycleError.GuardFailed) as info:
        auth.apply(I.MarkApplied(RunId("other")))
    assert info.value.guards == ("matches_last_run",)
    assert info.value.state is S.STAGED
    assert "matches_last_run" in str(info.value)
    assert auth.snapshot() == before


def test_terminal_state_refuses_everything_first() -> None:
    """L-2: any input in a terminal state fails with TerminalState."""
    auth = InputLifecycleAuthority()
    auth.apply(I.ConsumeOnAccept())
    for inp in (I.QueueAccepted(), I.Abandon(InputAbandonReason.Reset()), I.Consume()):
        with pytest.raises(InputLifecycleError.TerminalState):
            auth.apply(inp)
        assert not auth.can_accept(inp)


def test_invalid_transition_names_state_and_input() -> None:
    """L-3: a pair not in the table raises InvalidTransition, state untouched."""
    auth = InputLifecycleAuthority()
    with pytest.raises(InputLifecycleError.InvalidTransition) as info:
        auth.apply(I.Consume())
    assert str(info.value) == "invalid transition: Consume from accepted"
    assert isinstance(info.value.input, I.Consume)
    assert auth.phase() is S.ACCEPTED


@pytest.mark.parametrize(
    ("inp", "outcome"),
    [
        (
            I.Supersede(InputId("newer")),
            InputTerminalOutcome.Superseded(superseded_by=InputId("newer")),
        ),
        (
            I.Coalesce(InputId("agg")),
            InputTerminalOutcome.Coalesced(aggregate_id=InputId("agg")),
        ),
        (
            I.Abandon(InputAbandonReason.Retired()),
            InputTerminalOutcome.Abandoned(reason=InputAbandonReason.Retired()),
        ),
    ],
)
def test_queued_input_terminal_outcomes(
    inp: InputLifecycleInput, outcome: InputTerminalOutcome
) -> None:
    """L-3 / L-5: supersede and coalesce record the replacing input (named by
    the caller, as the authority is sans-IO); abandon records its reason."""
    auth = InputLifecycleAuthority()
    auth.apply(I.QueueAccepted())
    auth.apply(inp)
    assert auth.terminal_outcome() == outcome


def test_abandon_from_every_live_phase() -> None:
    """L-3: Abandon is legal from every non-terminal phase."""
    reason = InputAbandonReason.Destroyed()
    for prefix in ([], [I.QueueAccepted()], [I.QueueAccepted(), I.StageForRun(RUN)]):
        auth = InputLifecycleAuthority()
        for inp in prefix:
            auth.apply(inp)
        assert auth.apply(I.Abandon(reason)).next_phase is S.ABANDONED


def test_can_accept_probes_without_mutating() -> None:
    """L-8: can_accept answers without changing anything."""
    auth = staged()
    before = auth.snapshot()
    assert auth.can_accept(I.MarkApplied(RUN))
    assert not auth.can_accept(I.MarkApplied(RunId("x")))
    assert not auth.can_accept(I.QueueAccepted())
    assert auth.snapshot() == before


def test_restore_round_trips_and_bypasses_the_machine() -> None:
    """L-10 / D-11: restore rebuilds exactly from stored fields."""
    snap = InputLifecycleSnapshot(
        phase=S.ACCEPTED, last_run_id=None, last_boundary_sequence=3, attempt_count=2
    )
    auth = InputLifecycleAuthority.restore(snap)
    assert auth.snapshot() == snap
    assert auth.violated_invariants() == (
        "accepted_has_no_run_or_boundary_metadata",
        "boundary_metadata_requires_a_run",
    )
    assert eval(repr(auth)).snapshot() == snap


def test_state_lives_in_slots_only() -> None:
    """The phase cannot be set through a public attribute (STYLE.md 1)."""
    auth = InputLifecycleAuthority()
    with pytest.raises(AttributeError):
        auth.phase = S.CONSUMED  # type: ignore[method-assign, assignment]
    with pytest.raises(AttributeError):
        auth.extra = 1  # type: ignore[attr-defined]


def test_foreign_input_is_a_type_error() -> None:
    auth = InputLifecycleAuthority()
    with pytest.raises(TypeError, match="not an input of input_lifecycle"):
        auth.apply("QueueAccepted")  # type: ignore[arg-type]


@pytest.mark.parametrize("applied_steps", [1, 2])
def test_recover_requeue_keeps_metadata_until_attempts_run_out(
    applied_steps: int,
) -> None:
    """D-11: an applied input whose receipt is missing runs again, keeping the
    run and boundary metadata; after the third attempt it is abandoned (L-4)."""
    auth = staged()
    auth.apply(I.MarkApplied(RUN))
    if applied_steps == 2:
        auth.apply(I.MarkAppliedPendingConsumption(4))
    transition = auth.apply(I.RecoverRequeue())
    assert transition.next_phase is S.QUEUED
    assert auth.last_run_id() == RUN
    assert auth.last_boundary_sequence() == (4 if applied_steps == 2 else None)
    exhausted = staged(attempts=3)
    exhausted.apply(I.MarkApplied(RUN))
    assert exhausted.apply(I.RecoverRequeue()).next_phase is S.ABANDONED
