"""``RuntimeSubmitter``: inputs for sessions that another process owns.

Theory of operation (PD-58, PD-60): a submitter holds only a store. It
writes each input to its runtime's inbox (``store.submit_to_inbox``:
durable before it answers, duplicates answered at once), and the runtime's
owner, wherever it runs, admits it later. A completion handle is answered
from what the store holds, never from the owner: a task per handle reads
the input's stored outcome, pausing longer after each read that finds it
unfinished (``StoreBackoff``: from ``initial`` doubling up to ``maximum``).
Since only the store is asked, the answer comes however often the runtime
changes owners meanwhile, and exactly once (the future is set once).

The store read follows an input through the inbox (still pending: wait;
settled as a duplicate: follow the input it duplicates; refused by its
runtime: ``RuntimeTerminated``) and then through the ledger (coalesced:
follow the aggregate). Terminal states give the values a waiter in the
owning process gets (``stored_completion``); the one difference is the
run result, which the store does not keep: a consumed input completes
``CompletedWithoutResult`` (PD-60).
"""

from __future__ import annotations

import asyncio
import contextlib

from meerkat_runtime.driver.journal import reason_name
from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.errors import NotReadyError, ValidationFailedError, is_retryable
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import (
    Abandoned,
    Coalesced,
    InputAbandonReason,
    Superseded,
)
from meerkat_runtime.ids import InputId, LogicalRuntimeId, SessionId
from meerkat_runtime.inputs import Input
from meerkat_runtime.outcomes import (
    AcceptOutcome,
    Deduplicated,
    ReasonNotReady,
    Rejected,
    Submitted,
)
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    AnyCompletionOutcome,
    CompletedWithoutResult,
    CompletionHandle,
    RuntimeTerminated,
)
from meerkat_runtime.sessions.loop import StoreBackoff
from meerkat_runtime.store.base import RuntimeStore, keeps_inbox

DEFAULT_COMPLETION_POLL = StoreBackoff(initial=0.01, maximum=0.5)
SUBMITTER_CLOSED = RuntimeTerminated(reason="runtime submitter closed")
# What a live waiter in the owning process hears when its input is ended by
# an operator (K-4); the same input read back from the store says so too.
_ENDED_BY = {
    "reset": "runtime reset",
    "destroyed": "runtime destroyed",
    "retired": "retired without runtime loop",
}
_MAX_HOPS = 64  # duplicates and aggregates followed before giving up


class RuntimeSubmitter:
    """Submits inputs to the inboxes of sessions, whoever owns them, and
    answers their completions from the store. ``max_input_bytes`` should be
    the limit the owners admit with: an entry larger than an owner's limit
    is refused at admission (PD-60) instead of at submission."""

    def __init__(
        self,
        store: RuntimeStore,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        poll: StoreBackoff = DEFAULT_COMPLETION_POLL,
    ) -> None:
        if not keeps_inbox(store):
            raise TypeError(f"{type(store).__name__} keeps no inbox (PD-58)")
        self.store = store
        self.max_input_bytes = max_input_bytes
        self.poll = poll
        self._watching: dict[
            asyncio.Task[None], asyncio.Future[AnyCompletionOutcome]
        ] = {}
        self._closed = False

    async def submit(self, session_id: SessionId, input: Input) -> AcceptOutcome:
        """``Submitted`` once the input is durably in the session's inbox;
        ``Deduplicated`` when its id or idempotency key is already there or
        in the session's ledger; ``Rejected`` as an accept would reject it
        (not ready, too, when the session's stored phase refuses input:
        PD-73).
        A bad value raises ``ValidationFailed`` and nothing is written."""
        self._refuse_if_closed()
        return await self.store.submit_to_inbox(
            _runtime(session_id), input, max_input_bytes=self.max_input_bytes
        )

    async def submit_with_completion(
        self, session_id: SessionId, input: Input
    ) -> tuple[AcceptOutcome, CompletionHandle | None]:
        """``submit``, and a handle for the input (or the one it duplicates)
        unless that is already finished, as ``accept_input_with_completion``."""
        outcome = await self.submit(session_id, input)
        if isinstance(outcome, Rejected):
            reason = outcome.reason
            if isinstance(reason, ReasonNotReady):  # as the owner's accept raises
                raise NotReadyError(reason.state)
            raise ValidationFailedError(str(reason))
        assert isinstance(outcome, Submitted | Deduplicated)
        target = outcome.input_id if isinstance(outcome, Submitted) else None
        if isinstance(outcome, Deduplicated):
            target = outcome.existing_id
        assert target is not None
        return outcome, await self.completion_for(session_id, target)

    async def completion_for(
        self, session_id: SessionId, input_id: InputId
    ) -> CompletionHandle | None:
        """A handle that resolves once the input is finished; None when it
        already is (or the store does not know it)."""
        self._refuse_if_closed()
        runtime_id = _runtime(session_id)
        if await stored_completion(self.store, runtime_id, input_id) is not None:
            return None
        future: asyncio.Future[AnyCompletionOutcome] = (
            asyncio.get_running_loop().create_future()
        )
        task = asyncio.ensure_future(self._watch(runtime_id, input_id, future))
        self._watching[task] = future
        task.add_done_callback(lambda done: self._watching.pop(done, None))
        return CompletionHandle(input_id, future)

    async def _watch(
        self,
        runtime_id: LogicalRuntimeId,
        input_id: InputId,
        future: asyncio.Future[AnyCompletionOutcome],
    ) -> None:
        reads = 0
        while not future.done():
            await asyncio.sleep(self.poll.pause(reads))
            reads += 1
            try:
                outcome = await stored_completion(self.store, runtime_id, input_id)
            except Exception as exc:
                if is_retryable(exc):
                    continue  # the store is away: keep asking, more slowly
                outcome = RuntimeTerminated(
                    reason=f"the stored outcome cannot be read: {exc}"
                )
            if outcome is not None and not future.done():
                future.set_result(outcome)

    async def close(self) -> None:
        """Stop watching: every handle not yet answered resolves
        ``RuntimeTerminated`` (the inputs themselves go on in their owners)."""
        self._closed = True
        for task, future in list(self._watching.items()):
            task.cancel()
            if not future.done():
                future.set_result(SUBMITTER_CLOSED)
        for task in list(self._watching):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _refuse_if_closed(self) -> None:
        """Closed, it refuses as a closed adapter refuses an accept: not
        ready (it knows no runtime's phase; the adapter says destroyed for
        a session it does not hold), the text naming the submitter."""
        if self._closed:
            raise NotReadyError(
                RuntimeState.DESTROYED, "the runtime submitter is closed"
            )


def _runtime(session_id: SessionId) -> LogicalRuntimeId:
    return LogicalRuntimeId(str(session_id))


async def stored_completion(
    store: RuntimeStore, runtime_id: LogicalRuntimeId, input_id: InputId
) -> AnyCompletionOutcome | None:
    """What a waiter on ``input_id`` is answered, from the store alone; None
    while the input is unfinished. The inbox is read before the ledger: an
    admission removes the entry in the commit that writes the state, so an
    entry gone from the inbox is found in the ledger."""
    in_ledger = False  # the entry names itself: the owner accepted its id
    for _ in range(_MAX_HOPS):
        entry = (
            None if in_ledger else await store.load_inbox_entry(runtime_id, input_id)
        )
        if entry is not None:
            settlement = entry.settlement
            if settlement is None:
                return None  # its owner has not admitted it yet
            if settlement.deduplicated_into is None:
                return RuntimeTerminated(reason=settlement.refused or "refused")
            in_ledger = settlement.deduplicated_into == input_id
            input_id = settlement.deduplicated_into
            continue
        in_ledger = False
        state = await store.load_input_state(runtime_id, input_id)
        if state is None:
            return RuntimeTerminated(reason=f"input {input_id} is unknown to the store")
        if not state.is_terminal():
            return None
        terminal = state.terminal_outcome()
        if isinstance(terminal, Coalesced):  # decision 19
            input_id = terminal.aggregate_id
            continue
        if isinstance(terminal, Superseded):
            return AbandonedOutcome(reason="superseded", error=state.last_error())
        if isinstance(terminal, Abandoned):
            return _abandoned(terminal.reason, state.last_error())
        return CompletedWithoutResult()  # PD-60: run results are not stored
    return RuntimeTerminated(reason=f"input {input_id}: too many hops to its outcome")


def _abandoned(reason: InputAbandonReason, error: str | None) -> AnyCompletionOutcome:
    name = reason_name(reason)
    ended = _ENDED_BY.get(name)
    if ended is not None:
        return RuntimeTerminated(reason=ended)
    return AbandonedOutcome(reason=name, error=error)
