"""The state a runtime core holds, and the journal that can undo an operation.

Theory of operation: ``CoreState`` owns the runtime control authority, the
ledger, the lanes, the staged batch, the event buffer and the post-admission
signal, and the only ways to change them (``_insert``, ``_apply``, ``_drive``,
lane operations, ``_emit``). While a ``Checkpoint`` is open each change
records what it replaced, so ``restore`` undoes exactly one operation (the
persistent driver's "memory never runs ahead of the store", D-4 and decision
14) without copying anything the operation did not touch. This journal is
the one undo mechanism: every persisted operation runs inside a checkpoint,
a live driver's recovery too; only a driver's first recovery runs without
one, since its undo is starting afresh (``fresh_state``).

``_drive`` is the one way a runtime-control input is applied: the authority
decides, and ``_drive`` carries out the effects it returns (raising or
withdrawing the post-admission signal, announcing a phase change), so no
signal is raised by hand (C-4, PD-24). A core that a store backs notes the
inputs changed outside any checkpoint (D-2's pure delegations), for the next
lifecycle commit to write (PD-6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.events import (
    AnyInputLifecycleEvent,
    InputAbandoned,
    InputLifecycle,
    RuntimeEventEnvelope,
    RuntimeStateChange,
)
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import IdempotencyKey, InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.ledger import InputLedger, Lane, Lanes
from meerkat_runtime.outcomes import PostAdmissionSignal
from meerkat_runtime.policy import PolicyTable

# Decision 15 / 23: stable snake_case abandon reasons.
REASON_RESET = InputAbandonReason.Reset()
REASON_DESTROYED = InputAbandonReason.Destroyed()


# Bound once: the effect loop runs on every accept.
_SIGNAL_WAKE = rc.SignalWake
_SIGNAL_IMMEDIATE = rc.SignalImmediateProcess
_WITHDRAW_SIGNALS = rc.WithdrawSignals
_NO_SIGNAL = PostAdmissionSignal.NONE
_WAKE_LOOP = PostAdmissionSignal.WAKE_LOOP
_PROCESS_NOW = PostAdmissionSignal.REQUEST_IMMEDIATE


def reason_name(reason: InputAbandonReason) -> str:
    """``max_attempts_exhausted``, ``reset`` ...: the variant's tag."""
    return reason.wire_tag


@dataclass(slots=True)
class Batch:
    """The inputs staged for the current run, in order, and their lane.
    ``before`` holds each input as it was just before staging (never
    mutated, only read), so a run the store could not record can be
    withdrawn without counting an attempt (PD-38)."""

    run_id: RunId
    ids: list[InputId]
    lane: Lane
    before: dict[InputId, InputState] = field(default_factory=dict)


@dataclass(slots=True)
class Checkpoint:
    """What an operation changed, so it can be undone (the persistent driver's
    "memory never runs ahead of the store", D-4 / decision 14). Only what the
    operation touches is copied: an accept into a 100k-deep queue copies one
    state, not the queue."""

    control: rc.RuntimeControlAuthority
    batch: Batch | None
    signal: PostAdmissionSignal
    events: int
    touched: dict[InputId, InputState | None] = field(default_factory=dict)  # None: new
    lanes: list[Callable[[], object]] = field(default_factory=list)
    keys: dict[IdempotencyKey, InputId] | None = None


class CoreState:
    """State and journal of a runtime core (the operations are in ``core``)."""

    runtime_id: LogicalRuntimeId
    _policy: PolicyTable
    # A core that is written to a store (the persistent driver's) notes the
    # inputs changed outside any checkpoint (D-2's pure delegations:
    # stage_input, apply_input, rollback_staged ...), so the next lifecycle
    # commit carries them (upstream's "all ledger states", D-7 .. D-9).
    _tracks_unsaved: bool

    def fresh_state(self) -> None:
        """Everything a new core starts with (also: undo of a failed first
        recovery, which needs no journal)."""
        self._control = rc.RuntimeControlAuthority()
        self._control.apply(rc.Initialize())  # drivers start idle (C-3)
        self._ledger = InputLedger()
        self._lanes = Lanes()
        self._batch: Batch | None = None
        self._events: list[RuntimeEventEnvelope] = []
        self._signal = PostAdmissionSignal.NONE
        self._open: Checkpoint | None = None
        self._recovering = False  # a first recovery runs without a checkpoint
        self._unsaved: dict[InputId, None] = {}  # see _notes_unsaved (ordered)
        # One clock read per operation, shared by its history and events.
        self._now = datetime.now(UTC)

    def _state(self, input_id: InputId) -> InputState:
        state = self._ledger.get(input_id)
        if state is None:
            raise ValidationFailedError(f"input {input_id} is unknown")
        return state

    def _insert(self, state: InputState) -> None:
        checkpoint = self._open
        if checkpoint is not None:
            checkpoint.touched.setdefault(state.input_id, None)
            key = state.idempotency_key
            if (
                key is not None
                and checkpoint.keys is None
                and self._ledger.id_for_key(key) is not None
            ):
                # The insert re-points a key: keep the index to restore it.
                checkpoint.keys = self._ledger.keys_snapshot()
        self._ledger.insert(state)

    def _apply(
        self,
        state: InputState,
        lifecycle_input: il.InputLifecycleInput,
        error: str | None = None,
    ) -> il.InputLifecycleTransition:
        """Every input transition goes through here (and its authority);
        ``error`` is a failed run's, kept in the input's history."""
        checkpoint = self._open
        if checkpoint is not None:
            if state.input_id not in checkpoint.touched:
                checkpoint.touched[state.input_id] = state.clone()
        elif self._tracks_unsaved and not self._recovering:
            self._unsaved[state.input_id] = None
        transition = state.apply(lifecycle_input, self._now, error)
        if transition.next_phase.is_terminal():  # terminal phases are final
            self._ledger.finished(state)
        return transition

    def _requeue(
        self,
        state: InputState,
        lifecycle_input: il.InputLifecycleInput,
        error: str | None = None,
    ) -> bool:
        """Apply a transition that puts a run-bound input back in the queue
        (RollbackStaged, RecoverRequeue): True when it is queued again; False
        when its attempts were used up and it was abandoned (decision 3)."""
        if (
            self._apply(state, lifecycle_input, error).next_phase
            is il.InputLifecycleState.QUEUED
        ):
            return True
        self._emit_abandoned(state)
        return False

    def _forget_keys(self) -> None:
        if self._open is not None and self._open.keys is None:
            self._open.keys = self._ledger.keys_snapshot()
        self._ledger.forget_keys()

    # ---------------------------------------------------------------- checkpoints

    def take_unsaved(self) -> dict[InputId, None]:
        """The inputs changed outside a checkpoint since the last take."""
        unsaved, self._unsaved = self._unsaved, {}
        return unsaved

    def owe_unsaved(self, unsaved: dict[InputId, None]) -> None:
        """``unsaved`` was not written after all: still owed, first."""
        self._unsaved = unsaved | self._unsaved

    def checkpoint(self) -> Checkpoint:
        """Start recording what the next operation changes."""
        interleaved = self._open is not None or self._recovering
        assert not interleaved, "operations on one driver must not interleave"
        batch = self._batch
        checkpoint = Checkpoint(
            control=self._control.copy(),
            batch=(
                Batch(batch.run_id, list(batch.ids), batch.lane, batch.before)
                if batch
                else None
            ),
            signal=self._signal,
            events=len(self._events),
        )
        self._open = checkpoint
        self._lanes.journal = checkpoint.lanes
        return checkpoint

    def restore(self, checkpoint: Checkpoint) -> None:
        """Undo everything since ``checkpoint`` (the store refused it)."""
        for undo in reversed(checkpoint.lanes):
            undo()
        for input_id, before in checkpoint.touched.items():
            if before is None:
                self._ledger.remove(input_id)
            else:
                self._ledger.replace(before)
        if checkpoint.keys is not None:
            self._ledger.restore_keys(checkpoint.keys)
        self._control = checkpoint.control
        self._batch = checkpoint.batch
        self._signal = checkpoint.signal
        del self._events[checkpoint.events :]
        self.release(checkpoint)

    def release(self, checkpoint: Checkpoint) -> None:
        """Stop recording: the operation's changes stand."""
        if self._open is checkpoint:
            self._open = None
            self._lanes.journal = None

    def is_pristine(self) -> bool:
        """Nothing has happened to this driver yet."""
        return (
            not len(self._ledger)
            and self._batch is None
            and not self._events
            and self._control.phase() is RuntimeState.IDLE
        )

    def tick(self) -> None:
        self._now = datetime.now(UTC)

    def _drive(
        self, control_input: rc.RuntimeControlInput
    ) -> rc.RuntimeControlTransition:
        """Every runtime-control input goes through here: the authority
        decides (or raises, changing nothing), and this carries out the
        effects its transition names. No other code raises or clears the
        post-admission signal or announces a phase change."""
        transition = self._control.apply(control_input)
        for effect in transition.effects:
            kind = type(effect)
            if kind is _SIGNAL_WAKE:
                if self._signal is _NO_SIGNAL:  # never lowers a stronger one
                    self._signal = _WAKE_LOOP
            elif kind is _SIGNAL_IMMEDIATE:
                self._signal = _PROCESS_NOW  # the strongest
            elif kind is _WITHDRAW_SIGNALS:
                self._signal = _NO_SIGNAL
            else:
                assert kind is rc.AnnouncePhaseChange
                self._emit(
                    RuntimeStateChange(
                        from_state=transition.from_phase,
                        to_state=transition.next_phase,
                    )
                )
        return transition

    def _emit(self, event: RuntimeStateChange | InputLifecycle) -> None:
        self._events.append(
            RuntimeEventEnvelope.wrap(self.runtime_id, event, self._now)
        )

    def _emit_input(self, event: AnyInputLifecycleEvent) -> None:
        self._emit(InputLifecycle(data=event))

    def _emit_abandoned(self, state: InputState) -> None:
        outcome = state.terminal_outcome()
        reason = getattr(outcome, "reason", None)
        name = reason_name(reason) if reason is not None else "abandoned"
        self._emit_input(InputAbandoned(input_id=state.input_id, reason=name))
