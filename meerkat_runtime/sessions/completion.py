"""Completion waiters: every caller waiting on an input is answered exactly once.

Theory of operation (K-1 .. K-4, decisions 9, 10, 19): a registry maps input
ids to the futures of their waiters. Resolving an id takes its whole list out
first, so a second resolution finds nothing (exactly once). Waiters are
resolved only when their input reaches a terminal state, or when the runtime
itself ends (reset, stop, destroy, unregister, loop exit), never for a
failure the input will be retried after (decision 9).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

from meerkat_runtime.codec import Value
from meerkat_runtime.ids import InputId
from meerkat_runtime.sessions.executor import RunResult


class CompletionOutcome(
    Value, frozen=True, gc=False, kw_only=True, tag_field="outcome_type"
):
    Completed: ClassVar[type[Completed]]
    CompletedWithoutResult: ClassVar[type[CompletedWithoutResult]]
    Abandoned: ClassVar[type[AbandonedOutcome]]
    RuntimeTerminated: ClassVar[type[RuntimeTerminated]]


class Completed(
    CompletionOutcome, frozen=True, gc=False, kw_only=True, tag="completed"
):
    run_result: RunResult


class CompletedWithoutResult(
    CompletionOutcome,
    frozen=True,
    gc=False,
    kw_only=True,
    tag="completed_without_result",
):
    pass


class AbandonedOutcome(
    CompletionOutcome, frozen=True, gc=False, kw_only=True, tag="abandoned"
):
    """``reason`` is the abandon reason's name; ``error`` the last failed
    run's error (type and message), when one ran the input and failed."""

    reason: str
    error: str | None = None


class RuntimeTerminated(
    CompletionOutcome, frozen=True, gc=False, kw_only=True, tag="runtime_terminated"
):
    reason: str


CompletionOutcome.Completed = Completed
CompletionOutcome.CompletedWithoutResult = CompletedWithoutResult
CompletionOutcome.Abandoned = AbandonedOutcome
CompletionOutcome.RuntimeTerminated = RuntimeTerminated
AnyCompletionOutcome = (
    Completed | CompletedWithoutResult | AbandonedOutcome | RuntimeTerminated
)


class CompletionHandle:
    """What ``accept_input_with_completion`` hands back: await ``wait()``."""

    __slots__ = ("_future", "input_id")

    def __init__(
        self, input_id: InputId, future: asyncio.Future[AnyCompletionOutcome]
    ) -> None:
        self.input_id = input_id
        self._future = future

    async def wait(self) -> AnyCompletionOutcome:
        # Shielded: a caller that stops waiting does not cancel other waiters.
        return await asyncio.shield(self._future)

    def done(self) -> bool:
        return self._future.done()


class CompletionRegistry:
    """input id -> the futures of its waiters (several allowed: dedup)."""

    def __init__(self) -> None:
        self._waiters: dict[InputId, list[asyncio.Future[AnyCompletionOutcome]]] = {}

    def register(self, input_id: InputId) -> CompletionHandle:
        future: asyncio.Future[AnyCompletionOutcome] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.setdefault(input_id, []).append(future)
        return CompletionHandle(input_id, future)

    def ids(self) -> list[InputId]:
        return list(self._waiters)

    def __len__(self) -> int:
        return len(self._waiters)

    def resolve(self, input_id: InputId, outcome: AnyCompletionOutcome) -> int:
        """Answer every waiter of ``input_id`` (once; later calls are no-ops)."""
        futures = self._waiters.pop(input_id, [])
        for future in futures:
            if not future.done():
                future.set_result(outcome)
        return len(futures)

    def resolve_all(self, outcome: AnyCompletionOutcome) -> int:
        return sum(self.resolve(i, outcome) for i in self.ids())

    def resolve_where(
        self, keep: Callable[[InputId], bool], outcome: AnyCompletionOutcome
    ) -> int:
        """K-3 ``resolve_not_pending``: answer every id for which ``keep`` is false."""
        return sum(self.resolve(i, outcome) for i in self.ids() if not keep(i))

    def move(self, from_id: InputId, to_id: InputId) -> None:
        """Decision 19: a coalesced input's waiters follow the aggregate."""
        futures = self._waiters.pop(from_id, [])
        if futures:
            self._waiters.setdefault(to_id, []).extend(futures)
