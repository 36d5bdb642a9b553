"""``accept_input`` of the ephemeral driver (docs/behaviour.md section 3, decisions 1, 12, 19, 20)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from meerkat_runtime import (
    AcceptOutcome,
    DefaultPolicyTable,
    HandlingMode,
    InputAbandonReason,
    InputLifecycleState,
    InputTerminalOutcome,
    Lane,
    PostAdmissionSignal,
    QueueMode,
    RejectReason,
    RunId,
    RuntimeControlSnapshot,
    RuntimeDriverError,
    RuntimeState,
)
from meerkat_runtime.driver.ephemeral import (
    EphemeralRuntimeDriver,
    RuntimeControlCommand,
)
from meerkat_runtime.events import (
    InputAccepted,
    InputCoalesced,
    InputDeduplicated,
    InputQueued,
    InputSuperseded,
)
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.inputs import Input, InputDurability, PromptInput, System
from tests.driver.helpers import (
    accept_all,
    continuation,
    detached_continuation,
    drained,
    everything,
    external_event,
    flow_step,
    header,
    new_driver,
    operation,
    peer,
    prompt,
    run_to_completion,
    stage_run,
)

InputBuilder = Callable[[], Input]


def _accept(driver: EphemeralRuntimeDriver, inp: Input) -> AcceptOutcome:
    return asyncio.run(driver.accept_input(inp))


# ----------------------------------------------------------------


def _retired(d: EphemeralRuntimeDriver) -> None:
    d.retire_now()


def _stopped(d: EphemeralRuntimeDriver) -> None:
    d.runtime_control_now(RuntimeControlCommand.STOP)


def _destroyed(d: EphemeralRuntimeDriver) -> None:
    d.destroy_now()


def _forced(phase: RuntimeState) -> Callable[[EphemeralRuntimeDriver], None]:
    """The ephemeral driver passes through INITIALIZING and RECOVERING only
    inside one call (construction, recycle), so no public sequence of calls
    leaves it there: the test installs that control state directly."""

    def force(d: EphemeralRuntimeDriver) -> None:
        d._core._control = rc.RuntimeControlAuthority.restore(
            RuntimeControlSnapshot(phase=phase)
        )

    return force


@pytest.mark.parametrize(
    ("setup", "phase"),
    [
        (_retired, RuntimeState.RETIRED),
        (_stopped, RuntimeState.STOPPED),
        (_destroyed, RuntimeState.DESTROYED),
        (_forced(RuntimeState.RECOVERING), RuntimeState.RECOVERING),
        (_forced(RuntimeState.INITIALIZING), RuntimeState.INITIALIZING),
    ],
)
def test_accept_refused_with_not_ready_records_nothing(
    setup: Callable[[EphemeralRuntimeDriver], None], phase: RuntimeState
) -> None:
    """A-1: outside idle/attached/running accept raises NotReady{state}; no
    state, no event, no signal."""
    driver = new_driver()
    setup(driver)
    driver.drain_events()
    before = everything(driver)
    inp = prompt()
    with pytest.raises(RuntimeDriverError.NotReady) as caught:
        _accept(driver, inp)
    assert caught.value.state is phase
    assert str(caught.value) == f"Runtime not ready: {phase.value}"
    assert everything(driver) == before
    assert driver.input_state(inp.id()) is None
    assert driver.drain_events() == []


@pytest.mark.parametrize(
    "phase_setup",
    [lambda _: None, lambda d: d.attach(), lambda d: d.start_run(RunId.new())],
)
def test_accept_allowed_while_idle_attached_running(
    phase_setup: Callable[[EphemeralRuntimeDriver], object],
) -> None:
    """A-1: idle, attached and running accept input."""
    driver = new_driver()
    phase_setup(driver)
    assert _accept(driver, prompt()).is_accepted()


# ---------------------------------------------------------------- Z-6


@pytest.mark.parametrize(
    ("inp", "reason_type"),
    [
        (
            PromptInput(
                header=header(source=System(), durability=InputDurability.DERIVED),
                text="x",
            ),
            RejectReason.DurabilityViolation,
        ),
        (
            peer("progress", mode=HandlingMode.QUEUE),
            RejectReason.PeerHandlingModeInvalid,
        ),
        (
            peer("progress", mode=HandlingMode.STEER),
            RejectReason.PeerHandlingModeInvalid,
        ),
    ],
)
def test_rejected_inputs_record_nothing(
    inp: Input, reason_type: type[RejectReason]
) -> None:
    """A-2/A-3/A-18, Z-6: a rejection records no state and emits no event."""
    driver = new_driver()
    before = everything(driver)
    outcome = _accept(driver, inp)
    assert outcome.is_rejected()
    assert isinstance(outcome, AcceptOutcome.Rejected)
    assert isinstance(outcome.reason, reason_type)
    assert everything(driver) == before
    assert driver.input_state(inp.id()) is None


def test_derived_peer_message_error_has_no_doubled_prefix() -> None:
    """T-12 / decision 11: the kind in the message is ``peer_message``."""
    inp = peer("message")
    inp = type(inp)(
        header=header(source=System(), durability=InputDurability.DERIVED),
        body="x",
        convention=inp.convention,
    )
    outcome = _accept(new_driver(), inp)
    assert isinstance(outcome, AcceptOutcome.Rejected)
    assert str(outcome.reason) == "Derived durability forbidden for peer_message"


@pytest.mark.parametrize(
    ("inp", "lane"),
    [
        (peer("terminal", mode=HandlingMode.STEER), Lane.STEER),
        (peer("message", mode=HandlingMode.STEER), Lane.STEER),
    ],
)
def test_peer_with_steer_mode_is_accepted_into_steer_lane(
    inp: Input, lane: Lane
) -> None:
    """Z-6: terminal and message peers may carry a mode; steer routes to steer."""
    driver = new_driver()
    assert _accept(driver, inp).is_accepted()
    assert driver.queued_input_ids(lane) == [inp.id()]


# ---------------------------------------------------------------- decision 12


def test_duplicate_key_while_original_queued_is_deduplicated() -> None:
    """A-6/A-18: Deduplicated{new, existing}; only a Deduplicated event; the
    new input is not recorded, lanes and signal unchanged."""
    driver = new_driver()
    first, second = prompt(key="k"), prompt(key="k")
    accept_all(driver, first)
    driver.drain_events()
    before = driver.observe()
    outcome = _accept(driver, second)
    assert outcome == AcceptOutcome.Deduplicated(
        input_id=second.id(), existing_id=first.id()
    )
    assert outcome.is_deduplicated()
    assert drained(driver) == [
        InputDeduplicated(input_id=second.id(), existing_id=first.id())
    ]
    assert driver.input_state(second.id()) is None
    after = driver.observe()
    assert (after.inputs, after.queue, after.signal) == (
        before.inputs,
        before.queue,
        before.signal,
    )


def test_duplicate_key_after_original_consumed_is_deduplicated() -> None:
    """T-15/A-6: the key outlives the original reaching a terminal state."""
    driver = new_driver()
    first = prompt(key="k")
    run_to_completion(driver, accept_all(driver, first))
    second = prompt(key="k")
    outcome = _accept(driver, second)
    assert outcome == AcceptOutcome.Deduplicated(
        input_id=second.id(), existing_id=first.id()
    )
    assert driver.queued_input_ids() == []


def test_duplicate_key_after_reset_is_deduplicated() -> None:
    """A-7 / decision 12: reset does not forget keys."""
    driver = new_driver()
    first = prompt(key="k")
    accept_all(driver, first)
    asyncio.run(driver.reset())
    second = prompt(key="k")
    outcome = _accept(driver, second)
    assert outcome == AcceptOutcome.Deduplicated(
        input_id=second.id(), existing_id=first.id()
    )


def test_destroy_forgets_keys() -> None:
    """Decision 12: destroy forgets idempotency keys. A destroyed driver cannot
    accept (A-1), so the index is read directly; the record keeps its key."""
    driver = new_driver()
    first = prompt(key="k")
    accept_all(driver, first)
    assert driver._core._ledger.id_for_key(first.header.idempotency_key) == first.id()  # type: ignore[arg-type]
    asyncio.run(driver.destroy())
    assert driver._core._ledger.id_for_key(first.header.idempotency_key) is None  # type: ignore[arg-type]
    state = driver.input_state(first.id())
    assert state is not None
    assert state.idempotency_key == first.header.idempotency_key


def test_reaccepting_a_known_input_id_is_deduplicated_against_itself() -> None:
    """PD-4, replacing A-17: the same InputId again (no key) is a retry:
    Deduplicated{id, id}, the recorded state untouched."""
    driver = new_driver()
    inp = prompt()
    accept_all(driver, inp)
    driver.drain_events()
    before = everything(driver)
    outcome = _accept(driver, inp)
    assert outcome == AcceptOutcome.Deduplicated(
        input_id=inp.id(), existing_id=inp.id()
    )
    assert drained(driver) == [
        InputDeduplicated(input_id=inp.id(), existing_id=inp.id())
    ]
    after = everything(driver)
    assert after[1] == before[1]
    assert after[0].queue == before[0].queue


def test_deduplicated_input_does_not_wake() -> None:
    """A-6: no wake for a deduplicated input."""
    driver = new_driver()
    accept_all(driver, prompt(key="k"))
    assert driver.take_post_admission_signal() is PostAdmissionSignal.WAKE_LOOP
    _accept(driver, prompt(key="k"))
    assert driver.take_post_admission_signal() is PostAdmissionSignal.NONE


# ----------------------------------------------------------------


KINDS: list[InputBuilder] = [
    prompt,
    lambda: prompt(steer=True),
    lambda: peer("message"),
    lambda: peer("request"),
    lambda: peer("progress"),
    lambda: peer("terminal"),
    flow_step,
    external_event,
    continuation,
    operation,
]


@pytest.mark.parametrize("build", KINDS)
@pytest.mark.parametrize("phase", ["idle", "attached", "running"])
def test_policy_is_resolved_and_stored(build: InputBuilder, phase: str) -> None:
    """A-8/A-15/P-3: the outcome and the ledger carry the table's decision for
    the phase (idle or attached count as idle), with its version."""
    driver = new_driver()
    if phase == "attached":
        driver.attach()
    if phase == "running":
        driver.start_run(RunId.new())
    inp = build()
    outcome = _accept(driver, inp)
    assert isinstance(outcome, AcceptOutcome.Accepted)
    expected = DefaultPolicyTable().resolve(inp, phase != "running")
    assert outcome.policy == expected
    state = driver.input_state(inp.id())
    assert state is not None
    assert state.policy is not None
    assert state.policy.decision == expected
    assert state.policy.version == expected.policy_version == 1
    assert state.durability is inp.header.durability


def test_outcome_state_of_a_queued_input() -> None:
    """A-4/A-15: Queued, payload kept, one history entry, attempts 0; the
    state is a copy."""
    driver = new_driver()
    inp = prompt(key="k")
    outcome = _accept(driver, inp)
    assert isinstance(outcome, AcceptOutcome.Accepted)
    state = outcome.state
    assert state.current_state() is InputLifecycleState.QUEUED
    assert state.persisted_input == inp
    assert state.idempotency_key == inp.header.idempotency_key
    assert (state.attempt_count(), state.recovery_count, state.terminal_outcome()) == (
        0,
        0,
        None,
    )
    assert [(h.from_state, h.to_state) for h in state.history()] == [
        (InputLifecycleState.ACCEPTED, InputLifecycleState.QUEUED)
    ]
    assert state.history()[0].reason
    state.persisted_input = None  # the outcome holds a copy
    stored = driver.input_state(inp.id())
    assert stored is not None
    assert stored.persisted_input == inp


def test_operation_is_consumed_on_accept() -> None:
    """A-14/A-15/A-18: consumed at once, never queued, no payload kept, only
    an Accepted event, no signal."""
    driver = new_driver()
    inp = operation()
    outcome = _accept(driver, inp)
    assert isinstance(outcome, AcceptOutcome.Accepted)
    assert outcome.state.current_state() is InputLifecycleState.CONSUMED
    assert outcome.state.terminal_outcome() == InputTerminalOutcome.Consumed()
    assert outcome.state.persisted_input is None
    assert drained(driver) == [InputAccepted(input_id=inp.id())]
    assert (
        driver.queued_input_ids(Lane.QUEUE) == driver.queued_input_ids(Lane.STEER) == []
    )
    assert driver.active_input_ids() == []
    assert driver.take_post_admission_signal() is PostAdmissionSignal.NONE


def test_queued_input_events() -> None:
    """A-18: a queued input emits exactly [Accepted, Queued]."""
    driver = new_driver()
    inp = prompt()
    _accept(driver, inp)
    assert drained(driver) == [
        InputAccepted(input_id=inp.id()),
        InputQueued(input_id=inp.id()),
    ]


# ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "running", "signal", "lane"),
    [
        pytest.param(
            prompt, False, PostAdmissionSignal.WAKE_LOOP, Lane.QUEUE, id="idle-prompt"
        ),
        pytest.param(
            prompt, True, PostAdmissionSignal.NONE, Lane.QUEUE, id="running-prompt"
        ),
        pytest.param(
            lambda: peer("terminal"),
            False,
            PostAdmissionSignal.WAKE_LOOP,
            Lane.QUEUE,
            id="idle-terminal-peer",
        ),
        pytest.param(
            lambda: peer("terminal"),
            True,
            PostAdmissionSignal.NONE,
            Lane.QUEUE,
            id="running-terminal-peer",
        ),
        pytest.param(
            lambda: peer("progress"),
            False,
            PostAdmissionSignal.NONE,
            Lane.STEER,
            id="idle-progress-peer",
        ),
        pytest.param(
            lambda: peer("progress"),
            True,
            PostAdmissionSignal.NONE,
            Lane.STEER,
            id="running-progress-peer",
        ),
        pytest.param(
            detached_continuation,
            False,
            PostAdmissionSignal.REQUEST_IMMEDIATE,
            Lane.STEER,
            id="idle-detached-continuation",
        ),
        pytest.param(
            lambda: peer("message", mode=HandlingMode.STEER),
            True,
            PostAdmissionSignal.REQUEST_IMMEDIATE,
            Lane.STEER,
            id="running-steer-peer",
        ),
        pytest.param(
            lambda: prompt(steer=True),
            False,
            PostAdmissionSignal.REQUEST_IMMEDIATE,
            Lane.STEER,
            id="idle-steer-prompt",
        ),
        pytest.param(
            lambda: external_event(HandlingMode.QUEUE),
            True,
            PostAdmissionSignal.NONE,
            Lane.QUEUE,
            id="running-external",
        ),
        pytest.param(
            operation, False, PostAdmissionSignal.NONE, None, id="idle-operation"
        ),
        pytest.param(
            operation, True, PostAdmissionSignal.NONE, None, id="running-operation"
        ),
    ],
)
def test_admission_signal_and_lane(
    build: InputBuilder, running: bool, signal: PostAdmissionSignal, lane: Lane | None
) -> None:
    """A-10/A-16/P-12: the expected signals and lanes of the upstream tests."""
    driver = new_driver()
    if running:
        driver.start_run(RunId.new())
    inp = build()
    assert _accept(driver, inp).is_accepted()
    assert driver.take_post_admission_signal() is signal
    for each in Lane:
        assert driver.queued_input_ids(each) == ([inp.id()] if each is lane else [])


_NONE = PostAdmissionSignal.NONE
_WAKE = PostAdmissionSignal.WAKE_LOOP
_NOW = PostAdmissionSignal.REQUEST_IMMEDIATE

# What each take returns, in the order called, for the signal the driver
# holds: "wake" reads (>= WakeLoop) without resetting; "process" reads
# (== RequestImmediateProcessing) and resets to None whatever it held;
# "signal" returns the signal and resets it.
_TAKES: list[tuple[PostAdmissionSignal, tuple[str, ...], tuple[object, ...]]] = [
    (_NONE, ("wake", "process", "signal"), (False, False, _NONE)),
    (_NONE, ("wake", "signal", "process"), (False, _NONE, False)),
    (_NONE, ("process", "wake", "signal"), (False, False, _NONE)),
    (_NONE, ("process", "signal", "wake"), (False, _NONE, False)),
    (_NONE, ("signal", "wake", "process"), (_NONE, False, False)),
    (_NONE, ("signal", "process", "wake"), (_NONE, False, False)),
    (_WAKE, ("wake", "process", "signal"), (True, False, _NONE)),
    (_WAKE, ("wake", "signal", "process"), (True, _WAKE, False)),
    (_WAKE, ("process", "wake", "signal"), (False, False, _NONE)),
    (_WAKE, ("process", "signal", "wake"), (False, _NONE, False)),
    (_WAKE, ("signal", "wake", "process"), (_WAKE, False, False)),
    (_WAKE, ("signal", "process", "wake"), (_WAKE, False, False)),
    (_NOW, ("wake", "process", "signal"), (True, True, _NONE)),
    (_NOW, ("wake", "signal", "process"), (True, _NOW, False)),
    (_NOW, ("process", "wake", "signal"), (True, False, _NONE)),
    (_NOW, ("process", "signal", "wake"), (True, _NONE, False)),
    (_NOW, ("signal", "wake", "process"), (_NOW, False, False)),
    (_NOW, ("signal", "process", "wake"), (_NOW, False, False)),
]

# An admission that leaves each signal on an idle driver (A-16's table).
_RAISING: dict[PostAdmissionSignal, InputBuilder] = {
    _NONE: operation,
    _WAKE: prompt,
    _NOW: detached_continuation,
}


@pytest.mark.parametrize(
    ("signal", "order", "expected"),
    _TAKES,
    ids=[f"{s.name.lower()}-{'-'.join(o)}" for s, o, _ in _TAKES],
)
def test_take_calls_read_and_reset_the_signal(
    signal: PostAdmissionSignal, order: tuple[str, ...], expected: tuple[object, ...]
) -> None:
    """A-16: every signal under every order of the three takes. Only
    ``take_wake_requested`` leaves the signal as it was; a plain queued
    accept then ``take_process_requested`` leaves nothing to wake for."""
    driver = new_driver()
    accept_all(driver, _RAISING[signal]())
    takes: dict[str, Callable[[], object]] = {
        "wake": driver.take_wake_requested,
        "process": driver.take_process_requested,
        "signal": driver.take_post_admission_signal,
    }
    assert tuple(takes[name]() for name in order) == expected


def test_take_wake_requested_does_not_reset() -> None:
    """A-16: take_wake_requested reads, however often it is called."""
    driver = new_driver()
    accept_all(driver, prompt())
    assert [driver.take_wake_requested() for _ in range(3)] == [True] * 3
    assert driver.take_post_admission_signal() is _WAKE


def test_signal_is_the_maximum_since_last_take() -> None:
    """A-16: the signal accumulates the strongest request since the last take."""
    driver = new_driver()
    accept_all(driver, detached_continuation(), prompt(), peer("progress"))
    assert driver.take_post_admission_signal() is PostAdmissionSignal.REQUEST_IMMEDIATE


# ---------------------------------------------------------------- A-12 priority


def test_priority_queue_mode_puts_input_at_lane_front() -> None:
    """P-11/A-12: priority is appended at the front of its lane."""
    driver = new_driver(peer_message=QueueMode.PRIORITY)
    a, b, urgent = prompt("a"), prompt("b"), peer("message")
    accept_all(driver, a, b, urgent)
    assert driver.queued_input_ids() == [urgent.id(), a.id(), b.id()]


# ---------------------------------------------------------------- decisions 1, 19, 20


@pytest.mark.parametrize("mode", [QueueMode.SUPERSEDE, QueueMode.COALESCE])
def test_same_scope_replaces_the_older_input(mode: QueueMode) -> None:
    """Decisions 1/19/20, A-12: the older input leaves its lane at once, its
    outcome names the new input, an event says so, and it is never staged."""
    driver = new_driver(prompt=mode)
    older, newer = prompt("old", scope="s"), prompt("new", scope="s")
    accept_all(driver, older, newer)
    state = driver.input_state(older.id())
    assert state is not None
    if mode is QueueMode.SUPERSEDE:
        replaced: object = InputSuperseded(
            input_id=older.id(), superseded_by=newer.id()
        )
        assert state.current_state() is InputLifecycleState.SUPERSEDED
        assert state.terminal_outcome() == InputTerminalOutcome.Superseded(
            superseded_by=newer.id()
        )
    else:
        replaced = InputCoalesced(input_id=older.id(), aggregate_id=newer.id())
        assert state.current_state() is InputLifecycleState.COALESCED
        assert state.terminal_outcome() == InputTerminalOutcome.Coalesced(
            aggregate_id=newer.id()
        )
    assert drained(driver) == [
        InputAccepted(input_id=older.id()),
        InputQueued(input_id=older.id()),
        InputAccepted(input_id=newer.id()),
        replaced,
        InputQueued(input_id=newer.id()),
    ]
    assert driver.queued_input_ids() == [newer.id()]
    assert driver.active_input_ids() == [newer.id()]
    with pytest.raises(RuntimeDriverError.ValidationFailed):
        stage_run(driver, [older.id()])
    driver.complete_run()
    run_to_completion(driver, [newer.id()])
    after = driver.input_state(older.id())
    assert after is not None
    assert after.attempt_count() == 0
    assert after.last_run_id() is None
    assert after.current_state() is state.current_state()


@pytest.mark.parametrize("mode", [QueueMode.SUPERSEDE, QueueMode.COALESCE])
def test_chain_of_replacements_keeps_only_the_newest(mode: QueueMode) -> None:
    """A-12: each new input replaces the one waiting in its scope."""
    driver = new_driver(prompt=mode)
    a, b, c = (prompt(t, scope="s") for t in "abc")
    accept_all(driver, a, b, c)
    assert driver.queued_input_ids() == [c.id()]
    outcomes = [driver.input_state(i.id()) for i in (a, b)]
    names = ["superseded_by" if mode is QueueMode.SUPERSEDE else "aggregate_id"] * 2
    assert [
        getattr(s.terminal_outcome(), n)
        for s, n in zip(outcomes, names, strict=True)
        if s
    ] == [
        b.id(),
        c.id(),
    ]


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        pytest.param(
            lambda: prompt(scope="s"), lambda: prompt(scope="t"), id="other-key"
        ),
        pytest.param(lambda: prompt(), lambda: prompt(), id="no-key"),
        pytest.param(lambda: prompt(scope="s"), lambda: prompt(), id="new-without-key"),
        pytest.param(
            lambda: external_event(scope="s"),
            lambda: prompt(scope="s"),
            id="other-kind",
        ),
    ],
)
def test_different_scope_is_not_replaced(
    older: InputBuilder, newer: InputBuilder
) -> None:
    """T-16: the scope is (runtime, kind, key); anything else is plain FIFO."""
    driver = new_driver(prompt=QueueMode.SUPERSEDE, external_event=QueueMode.SUPERSEDE)
    first, second = older(), newer()
    accept_all(driver, first, second)
    assert driver.queued_input_ids() == [first.id(), second.id()]


def test_staged_input_is_not_replaced() -> None:
    """Decision 1 applies to waiting inputs: one already taken into a run is
    not in a lane and keeps running."""
    driver = new_driver(prompt=QueueMode.SUPERSEDE)
    older, newer = prompt(scope="s"), prompt(scope="s")
    accept_all(driver, older)
    stage_run(driver, [older.id()])
    accept_all(driver, newer)
    state = driver.input_state(older.id())
    assert state is not None
    assert state.current_state() is InputLifecycleState.STAGED
    assert driver.queued_input_ids() == [newer.id()]


def test_default_table_coalesces_progress_peers_in_steer_lane() -> None:
    """P-5/P-11 with decision 1: progress peers coalesce in the default table."""
    driver = new_driver()
    a, b = peer("progress", scope="req"), peer("progress", scope="req")
    accept_all(driver, a, b)
    assert driver.queued_input_ids(Lane.STEER) == [b.id()]
    state = driver.input_state(a.id())
    assert state is not None
    assert state.terminal_outcome() == InputTerminalOutcome.Coalesced(
        aggregate_id=b.id()
    )


def test_replaced_input_is_not_abandoned_by_reset() -> None:
    """A replaced input is terminal: reset abandons only the newer one."""
    driver = new_driver(prompt=QueueMode.SUPERSEDE)
    older, newer = prompt(scope="s"), prompt(scope="s")
    accept_all(driver, older, newer)
    report = asyncio.run(driver.reset())
    assert report.inputs_abandoned == 1
    state = driver.input_state(newer.id())
    assert state is not None
    assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
        reason=InputAbandonReason.Reset()
    )
