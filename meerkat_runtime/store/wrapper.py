"""``StoreWrapper``: a store in front of another one, ``inner``.

Every read and every lease call goes to ``inner`` unchanged; a subclass
implements the writes (the abstract methods of ``RuntimeStore`` it does not
get from here), which is where wrappers differ: ``FencedStore`` runs each
under its owner's fence, the testing kit's ``FaultyStore`` injects faults
into them. Whether it keeps leases, and their lifetime, are the inner
store's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import AnyInput
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store.base import (
    RuntimeStore,
    keeps_inbox,
    load_payloads,
    load_skeletons,
    loads_lazily,
    owns_leases,
)
from meerkat_runtime.store.inbox import InboxEntry
from meerkat_runtime.store.leases import DEFAULT_LEASE_TTL, Lease


class StoreWrapper(RuntimeStore):
    def __init__(self, inner: RuntimeStore) -> None:
        self.inner = inner
        self.keeps_leases = owns_leases(inner)
        self.keeps_inbox = keeps_inbox(inner)
        self.lazy_payloads = loads_lazily(inner)
        self.lease_ttl = getattr(inner, "lease_ttl", DEFAULT_LEASE_TTL)

    # ---------------------------------------------------------------- reads

    async def load_input_states(self, runtime_id: LogicalRuntimeId) -> list[InputState]:
        return await self.inner.load_input_states(runtime_id)

    async def load_input_state(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InputState | None:
        return await self.inner.load_input_state(runtime_id, input_id)

    async def load_input_skeletons(
        self, runtime_id: LogicalRuntimeId
    ) -> list[InputState]:
        return await load_skeletons(self.inner, runtime_id)

    async def load_payloads(
        self, runtime_id: LogicalRuntimeId, input_ids: Sequence[InputId]
    ) -> dict[InputId, AnyInput]:
        return await load_payloads(self.inner, runtime_id, input_ids)

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        return await self.inner.load_boundary_receipt(runtime_id, run_id, sequence)

    async def load_boundary_receipts(
        self, runtime_id: LogicalRuntimeId
    ) -> list[RunBoundaryReceipt]:
        return await self.inner.load_boundary_receipts(runtime_id)

    async def load_session_snapshot(self, runtime_id: LogicalRuntimeId) -> bytes | None:
        return await self.inner.load_session_snapshot(runtime_id)

    async def load_runtime_state(
        self, runtime_id: LogicalRuntimeId
    ) -> RuntimeState | None:
        return await self.inner.load_runtime_state(runtime_id)

    async def load_inbox(
        self, runtime_id: LogicalRuntimeId, limit: int | None = None
    ) -> list[InboxEntry]:
        return await self.inner.load_inbox(runtime_id, limit)

    async def load_whole_inbox(self, runtime_id: LogicalRuntimeId) -> list[InboxEntry]:
        return await self.inner.load_whole_inbox(runtime_id)

    async def load_inbox_entry(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InboxEntry | None:
        return await self.inner.load_inbox_entry(runtime_id, input_id)

    async def list_runtimes_with_inbox(self) -> list[LogicalRuntimeId]:
        return await self.inner.list_runtimes_with_inbox()

    # ---------------------------------------------------------------- leases

    async def claim(
        self,
        runtime_id: LogicalRuntimeId,
        owner: str,
        ttl: float | None = None,
        *,
        wait: float = 0.0,
    ) -> int:
        return await self.inner.claim(runtime_id, owner, ttl, wait=wait)

    async def renew(
        self,
        owner: str,
        epochs: Mapping[LogicalRuntimeId, int],
        ttl: float | None = None,
    ) -> list[LogicalRuntimeId]:
        return await self.inner.renew(owner, epochs, ttl)

    async def release(
        self, runtime_id: LogicalRuntimeId, owner: str, epoch: int
    ) -> None:
        await self.inner.release(runtime_id, owner, epoch)

    async def load_leases(self) -> list[Lease]:
        return await self.inner.load_leases()

    async def list_runtimes_with_work(
        self, *, unowned: bool = False
    ) -> list[LogicalRuntimeId]:
        return await self.inner.list_runtimes_with_work(unowned=unowned)
