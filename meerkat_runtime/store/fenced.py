"""``FencedStore``: a store as one owner of one runtime writes to it (PD-36).

Every write the view forwards runs with ``leases.WRITE_FENCE`` set to the
owner's (runtime, epoch); the store underneath reads it at the start of the
write and checks it against the lease in the write's own transaction. The
view holds no state of its own: a store subclass or wrapper underneath (a
fault injector, a gated test store) sees every change made to it after the
view was made. Reads, leases (``StoreWrapper``) and anything else the view
does not know go to the store unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input
from meerkat_runtime.outcomes import AcceptOutcome
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store.base import (
    RuntimeStore,
    SessionDelta,
    cancel_safe,
    commit_recovery,
    ends_runs_atomically,
)
from meerkat_runtime.store.inbox import InboxEntry
from meerkat_runtime.store.leases import WRITE_FENCE
from meerkat_runtime.store.wrapper import StoreWrapper

T = TypeVar("T")


class FencedStore(StoreWrapper):
    """``store.fenced(runtime_id, epoch)``. Closing the view does nothing:
    the store is its creator's to close."""

    def __init__(
        self, store: RuntimeStore, runtime_id: LogicalRuntimeId, epoch: int
    ) -> None:
        super().__init__(store)
        self.fence = (str(runtime_id), epoch)
        # No suspension point of its own: as cancel-safe as the store.
        self.cancel_safe_writes = cancel_safe(store)  # type: ignore[misc]
        self.ends_runs_atomically = ends_runs_atomically(store)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _fenced(self, call: Awaitable[T]) -> T:
        token = WRITE_FENCE.set(self.fence)
        try:
            return await call
        finally:
            WRITE_FENCE.reset(token)

    def fenced(self, runtime_id: LogicalRuntimeId, epoch: int) -> RuntimeStore:
        return self.inner.fenced(runtime_id, epoch)

    # ---------------------------------------------------------------- writes

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        await self._fenced(self.inner.persist_input_state(runtime_id, state))

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        await self._fenced(self.inner.persist_runtime_state(runtime_id, state))

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        await self._fenced(
            self.inner.atomic_lifecycle_commit(runtime_id, runtime_state, input_states)
        )

    async def commit_recovery(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        changed: Sequence[InputState],
        recounted: Sequence[InputState],
    ) -> None:
        await self._fenced(
            commit_recovery(self.inner, runtime_id, runtime_state, changed, recounted)
        )

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        await self._fenced(
            self.inner.atomic_apply(
                runtime_id, session_delta, receipt, input_updates, session_store_key
            )
        )

    async def atomic_apply_and_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        await self._fenced(
            self.inner.atomic_apply_and_lifecycle_commit(
                runtime_id,
                session_delta,
                receipt,
                runtime_state,
                input_states,
                session_store_key,
            )
        )

    async def commit_session_boundary(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta,
        run_id: RunId,
        boundary: RunApplyBoundary,
        contributing_input_ids: Sequence[InputId],
        input_updates: Sequence[InputState],
    ) -> RunBoundaryReceipt:
        return await self._fenced(
            self.inner.commit_session_boundary(
                runtime_id,
                session_delta,
                run_id,
                boundary,
                contributing_input_ids,
                input_updates,
            )
        )

    async def admit_from_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        taken: Sequence[InboxEntry],
    ) -> None:
        await self._fenced(
            self.inner.admit_from_inbox(runtime_id, runtime_state, input_states, taken)
        )

    # A submission is nobody's write: it is not fenced (PD-58).
    async def submit_to_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        input: Input,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> AcceptOutcome:
        return await self.inner.submit_to_inbox(
            runtime_id, input, max_input_bytes=max_input_bytes
        )
