"""One registered session: its driver, lock, waiters and (maybe) its loop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meerkat_runtime.driver.face import RuntimeDriver
from meerkat_runtime.driver.journal import reason_name
from meerkat_runtime.events import (
    InputAbandoned,
    InputCoalesced,
    InputConsumed,
    InputLifecycle,
    InputSuperseded,
)
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.generated.spec_types import Abandoned, Coalesced, Superseded
from meerkat_runtime.ids import InputId, LogicalRuntimeId, SessionId
from meerkat_runtime.outcomes import RecoveryReport
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    AnyCompletionOutcome,
    Completed,
    CompletedWithoutResult,
    CompletionRegistry,
)
from meerkat_runtime.sessions.executor import CoreApplyOutput, RunResult
from meerkat_runtime.telemetry import log_fields

_FINISHING = (InputConsumed, InputSuperseded, InputCoalesced, InputAbandoned)
log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from meerkat_runtime.sessions.loop import RuntimeLoop


@dataclass(eq=False)
class Session:
    session_id: SessionId
    runtime_id: LogicalRuntimeId
    driver: RuntimeDriver
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiters: CompletionRegistry = field(default_factory=CompletionRegistry)
    loop: RuntimeLoop | None = None
    recovery: RecoveryReport | None = None  # from registration

    def has_live_loop(self) -> bool:
        return self.loop is not None and self.loop.alive()

    def settle(self, output: CoreApplyOutput | None, everything: bool = False) -> None:
        """Resolve the waiters of inputs that reached a terminal state.
        ``output`` is the run that just completed, for its result (K-4,
        decision 10); inputs consumed otherwise complete without a result.
        Only inputs the driver's events say just finished are looked at (so
        a session with thousands of waiters is not rescanned per operation),
        unless ``everything`` (after a recovery, which emits no such events)."""
        finished: set[InputId] = set()
        for envelope in self.driver.drain_events():  # nobody else reads them yet
            event = envelope.event
            if isinstance(event, InputLifecycle) and isinstance(event.data, _FINISHING):
                finished.add(event.data.input_id)
                if isinstance(event.data, InputAbandoned):
                    self._log_abandoned(event.data)
        candidates = (
            self.waiters.ids()
            if everything
            else [i for i in self.waiters.ids() if i in finished]
        )
        for input_id in candidates:
            target = self._follow_coalesced(input_id)
            outcome = self._outcome(target, output)
            if outcome is not None:
                self.waiters.resolve(target, outcome)

    def _log_abandoned(self, event: InputAbandoned) -> None:
        """An input its runs used up: the one place its loss is reported
        (an operator's reset, retire or destroy is not an error)."""
        if event.reason != "max_attempts_exhausted":
            return
        state = self.driver.peek_input_state(event.input_id)
        log.error(
            "input %s of runtime %s abandoned after %d failed attempts; last error: %s",
            event.input_id,
            self.runtime_id,
            state.attempt_count() if state is not None else 0,
            state.last_error() if state is not None else None,
            extra=log_fields(self.runtime_id, input_id=event.input_id),
        )

    def _follow_coalesced(self, input_id: InputId) -> InputId:
        """Decision 19: a coalesced input's waiters move to its aggregate."""
        while True:
            state = self.driver.peek_input_state(input_id)
            terminal = state.terminal_outcome() if state is not None else None
            if not isinstance(terminal, Coalesced):
                return input_id
            self.waiters.move(input_id, terminal.aggregate_id)
            input_id = terminal.aggregate_id

    def _outcome(
        self, input_id: InputId, output: CoreApplyOutput | None
    ) -> AnyCompletionOutcome | None:
        state = self.driver.peek_input_state(input_id)
        if state is None or not state.is_terminal():
            return None
        terminal = state.terminal_outcome()
        if isinstance(terminal, Superseded):  # decision 19
            return AbandonedOutcome(reason="superseded", error=state.last_error())
        if isinstance(terminal, Abandoned):  # decision 23
            return AbandonedOutcome(
                reason=reason_name(terminal.reason), error=state.last_error()
            )
        assert state.current_state() is InputLifecycleState.CONSUMED
        ran_here = (
            output is not None and input_id in output.receipt.contributing_input_ids
        )
        return (
            completion_of(output)
            if ran_here and output is not None
            else CompletedWithoutResult()
        )


def completion_of(output: CoreApplyOutput) -> AnyCompletionOutcome:
    """Decision 10: a run result completes the waiter with it, terminal marker
    or not; a terminal RunResult alone does too."""
    if output.run_result is not None:
        return Completed(run_result=output.run_result)
    if isinstance(output.terminal, RunResult):
        return Completed(run_result=output.terminal)
    return CompletedWithoutResult()
