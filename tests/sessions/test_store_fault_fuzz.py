"""Store faults under a live loop, fuzzed (issue 12, item 10).

The crash machines in ``tests/stateful`` drive a driver by hand; this one
drives a persistent adapter and its runtime loop over a store that outlives
every adapter (the "disk"), and injects what a real store does: outages
(``Unavailable`` for a number of writes, then healed) at the boundary, at
the run's end or at any write, refusals for good (a non-retryable
``WriteFailed``, after which the loop ends and a new adapter takes over),
and executor failures.

Checked on the disk after every step: an input is abandoned only if its
executor failed it as many times as an input has attempts (decision 3), and
no input's attempts exceed its executor's failures plus the run that ended
it; no receipt names an input twice. Checked once the store answers and the
loop has drained: every acknowledged input finished, each consumed one
named by exactly one receipt, and every waiter answered accordingly.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from meerkat_runtime import (
    CompletionHandle,
    CoreApplyOutput,
    CoreExecutorError,
    InMemoryRuntimeStore,
    InputId,
    InputLifecycleState,
    LogicalRuntimeId,
    MemoryBlobStore,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RuntimeDriverError,
    RuntimeSessionAdapter,
    SessionId,
    receipt_for,
)
from meerkat_runtime.sessions.adapter import StoreBackoff
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    Completed,
    CompletedWithoutResult,
    RuntimeTerminated,
)
from meerkat_runtime.sessions.executor import StagedInput
from meerkat_runtime.testing.faults import Fault, FaultyStore

from .helpers import TIMEOUT, prompt

T = TypeVar("T")
MAX_ATTEMPTS = 3  # spec/lifecycle.yaml: max_stage_attempts
DRAIN_TIMEOUT = 20.0  # a hang guard only: outages heal within a few pauses
FAST = StoreBackoff(initial=0.0005, maximum=0.004)
S = InputLifecycleState


class FlakyExecutor:
    """Completes every run, except the next ``fail_next`` ones, which raise;
    ``failures`` counts, per input, the runs of it that failed (shared by
    the executors of every adapter on the disk)."""

    def __init__(self, failures: Counter[InputId]) -> None:
        self.fail_next = 0
        self.failures = failures

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        assert isinstance(primitive, StagedInput)
        if self.fail_next:
            self.fail_next -= 1
            self.failures.update(primitive.contributing_input_ids)
            raise CoreExecutorError.ApplyFailed("flaky model")
        return CoreApplyOutput(receipt=receipt_for(run_id, primitive))

    async def control(self, command: RunControlCommand) -> None:
        pass


class StoreFaultMachine(RuleBasedStateMachine):
    # PD-70: a run's boundary and end as one write (the store's
    # ``atomic_apply_and_lifecycle_commit``) or as two.
    ONE_COMMIT_RUNS = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = FaultyStore(  # the disk, and its faults
            InMemoryRuntimeStore(), one_commit_runs=self.ONE_COMMIT_RUNS
        )
        self.sid = SessionId.new()
        self.rid = LogicalRuntimeId(str(self.sid))
        self.acked: set[InputId] = set()
        self.failures: Counter[InputId] = Counter()
        self.handles: dict[InputId, CompletionHandle] = {}
        self.open_adapter()

    def wait(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def open_adapter(self) -> None:
        self.adapter = RuntimeSessionAdapter.persistent(
            self.store, MemoryBlobStore(), retry_delay=0.0005, store_backoff=FAST
        )
        self.executor = FlakyExecutor(self.failures)
        self.wait(self.adapter.register_session_with_executor(self.sid, self.executor))
        for input_id in self.acked:  # waiters again for what is unfinished
            handle = self.wait(self.adapter.completion_for(self.sid, input_id))
            if handle is not None:
                self.handles[input_id] = handle

    def teardown(self) -> None:
        self.wait(self.adapter.close())
        self.loop.close()

    def loop_alive(self) -> bool:
        return self.adapter.sessions[self.sid].has_live_loop()

    async def _drained(self) -> None:
        """Until the loop has nothing left to run, or has ended."""
        while self.loop_alive() and await self.adapter.list_active_inputs(self.sid):
            await asyncio.sleep(0.0005)

    # ---------------------------------------------------------------- rules

    @rule(count=st.integers(1, 3))
    def accept(self, count: int) -> None:
        for _ in range(count):
            p = prompt("hello")
            try:
                outcome, handle = self.wait(
                    self.adapter.accept_input_with_completion(self.sid, p)
                )
            except RuntimeDriverError.Internal:
                assert self.store.fired, "a store error nobody injected"
                note("accept refused by an injected fault")
                continue
            assert outcome.is_accepted()
            self.acked.add(p.id())
            if handle is not None:
                self.handles[p.id()] = handle

    @rule(
        method=st.sampled_from(["atomic_apply", "atomic_lifecycle_commit", None]),
        times=st.integers(1, 2 * MAX_ATTEMPTS),
    )
    def outage(self, method: str | None, times: int) -> None:
        method = self.written_by(method)
        note(f"outage: {times} refusals of {method or 'any write'}")
        self.store.arm(Fault.FAIL, method, times=times)

    @rule(method=st.sampled_from(["atomic_apply", "atomic_lifecycle_commit"]))
    def refusal_for_good(self, method: str) -> None:
        target = self.written_by(method)
        note(f"refusal for good of {target}")
        self.store.arm(Fault.REFUSE, target)

    def written_by(self, method: str | None) -> str | None:
        """The write a boundary goes out as (with its run's end, PD-70)."""
        if self.ONE_COMMIT_RUNS and method == "atomic_apply":
            return "atomic_apply_and_lifecycle_commit"
        return method

    @rule(count=st.integers(1, MAX_ATTEMPTS))
    def executor_fails(self, count: int) -> None:
        self.executor.fail_next = count

    @rule()
    def let_runs_proceed(self) -> None:
        self.wait(self._drained(), DRAIN_TIMEOUT)

    @rule()
    def restart(self) -> None:
        """Close (once the loop drained or ended) and open a new adapter on
        the same disk: a loop a refusal for good ended is replaced."""
        self.wait(self._drained(), DRAIN_TIMEOUT)
        note(f"restart (loop alive: {self.loop_alive()})")
        self.store.disarm()
        self.wait(self.adapter.close())
        self.open_adapter()

    @rule()
    def store_answers_again(self) -> None:
        """Heal the store and let the loop drain (a new adapter if a refusal
        for good ended the loop): every acknowledged input has finished."""
        self.store.disarm()
        self.wait(self._drained(), DRAIN_TIMEOUT)
        if not self.loop_alive():
            self.restart()
        self.everything_acked_finished()

    # ---------------------------------------------------------------- checks

    def everything_acked_finished(self) -> None:
        stored = {
            s.input_id: s for s in self.wait(self.store.load_input_states(self.rid))
        }
        assert self.acked <= set(stored), "an acknowledged input was lost"
        named = self.receipt_counts()
        for input_id in self.acked:
            state = stored[input_id]
            assert state.is_terminal(), f"{input_id} left {state.current_state()}"
            if state.current_state() is S.CONSUMED:
                assert named[input_id] == 1, "consumed without its one receipt"
        for input_id, handle in self.handles.items():
            assert handle.done(), "a waiter left hanging after the store healed"
            outcome = self.wait(handle.wait())
            if isinstance(outcome, AbandonedOutcome):
                assert outcome.reason == "max_attempts_exhausted", outcome
                assert self.failures[input_id] >= MAX_ATTEMPTS
            else:
                assert isinstance(
                    outcome, Completed | CompletedWithoutResult | RuntimeTerminated
                ), outcome
        self.handles = {}

    def receipt_counts(self) -> Counter[InputId]:
        receipts = self.wait(self.store.inner.load_boundary_receipts(self.rid))
        return Counter(i for r in receipts for i in r.contributing_input_ids)

    @invariant()
    def only_the_executor_uses_up_attempts(self) -> None:
        for state in self.wait(self.store.inner.load_input_states(self.rid)):
            failed = self.failures[state.input_id]
            if state.current_state() is S.ABANDONED:
                assert failed >= MAX_ATTEMPTS, (
                    f"{state.input_id} abandoned after {failed} executor failures"
                )
            assert state.attempt_count() <= failed + 1, (
                f"{state.input_id}: {state.attempt_count()} attempts, "
                f"{failed} executor failures"
            )

    @invariant()
    def receipts_name_each_input_at_most_once(self) -> None:
        assert max(self.receipt_counts().values(), default=1) == 1


class OneCommitRunsMachine(StoreFaultMachine):
    ONE_COMMIT_RUNS = True


TestStoreFaultsUnderTheLoop = StoreFaultMachine.TestCase
TestStoreFaultsUnderTheLoopOneCommitRuns = OneCommitRunsMachine.TestCase
# Each example drives a live loop through outages: fewer examples than the
# driver fuzzers under the default profile, the profile's own under `make fuzz`.
for case in (TestStoreFaultsUnderTheLoop, TestStoreFaultsUnderTheLoopOneCommitRuns):
    case.settings = settings(max_examples=min(settings().max_examples, 50))
