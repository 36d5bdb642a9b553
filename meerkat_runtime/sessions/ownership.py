"""An adapter's leases: claimed per runtime, renewed together, released
(PD-36, PD-37; the store side is ``store/leases.py``).

Theory of operation: one ``OwnerLeases`` per adapter, under one owner id
(host, process and a random part, unless given). A runtime's lease is
claimed before its driver recovers it; a background task renews every held
lease in one store write each ``RENEW_EVERY`` of the lease's lifetime. Each
lease has a local deadline on the monotonic clock: the moment the claim or
the last successful renewal was *sent*, plus the lifetime minus a margin.
The store's expiry is at least that late (it counts from when the write
ran), so an owner that trusts its lease only until the deadline stops
before another may take over, as long as the hosts' wall clocks agree.

A lease is lost when a renewal finds it taken over, when a write is fenced,
or when the deadline passes without a successful renewal (a stalled or
failing store, a paused process); ``on_lost`` then tells the adapter, which
drops the session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from meerkat_runtime.errors import RuntimeOwnedError, RuntimeStoreError
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.leases import CLAIM_POLL_S, Clock, OwnerLease

log = logging.getLogger(__name__)

RENEW_EVERY = 0.25  # of the lease's lifetime, between two renewals
SAFETY_MARGIN = 0.2  # of the lifetime, trusted less than the store's expiry

LostCallback = Callable[[LogicalRuntimeId, str], None]


def default_owner() -> str:
    """Unique per adapter, and telling an operator where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OwnerLeases:
    def __init__(
        self,
        store: RuntimeStore,
        owner: str,
        on_lost: LostCallback,
        *,
        claim_wait: float = 0.0,
        clock: Clock = time.monotonic,
    ) -> None:
        """``clock``: the owner's clock its deadlines are on, monotonic
        seconds; a seam for tests that move time themselves (PD-63)."""
        self.store = store
        self.owner = owner
        self.clock = clock
        self.ttl = store.lease_ttl
        self.claim_wait = claim_wait
        self.held: dict[LogicalRuntimeId, OwnerLease] = {}
        self._on_lost = on_lost
        self._renewer: asyncio.Task[None] | None = None

    def _deadline(self, sent: float) -> float:
        return sent + self.ttl * (1 - SAFETY_MARGIN)

    async def claim(self, runtime_id: LogicalRuntimeId) -> OwnerLease:
        """The runtime's lease, or ``RuntimeOwnedError`` once ``claim_wait``
        seconds passed with another owner holding it."""
        give_up = self.clock() + self.claim_wait
        while True:
            sent = self.clock()
            try:
                epoch = await self.store.claim(runtime_id, self.owner, self.ttl)
                break
            except RuntimeOwnedError as exc:
                left = give_up - self.clock()
                if left <= 0:
                    raise
                expiry = max(0.0, exc.expires_at - time.time())
                await asyncio.sleep(min(left, expiry, CLAIM_POLL_S))
        lease = OwnerLease(
            runtime_id, epoch, self._deadline(sent), self._lost, self.clock
        )
        self.held[runtime_id] = lease
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renewing())
        return lease

    async def release(self, runtime_id: LogicalRuntimeId) -> None:
        """Give the lease back (a failed release only leaves it to expire)."""
        lease = self.held.pop(runtime_id, None)
        if lease is None or lease.lost is not None:
            return
        lease.lost = "released"
        try:
            await self.store.release(runtime_id, self.owner, lease.epoch)
        except RuntimeStoreError as exc:
            log.warning("lease of runtime %s not released: %s", runtime_id, exc)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        for runtime_id in list(self.held):
            await self.release(runtime_id)

    def _lost(self, lease: OwnerLease, reason: str) -> None:
        runtime_id = LogicalRuntimeId(str(lease.runtime_id))
        if self.held.get(runtime_id) is lease:
            del self.held[runtime_id]
        log.error("runtime %s: ownership lost: %s", runtime_id, reason)
        self._on_lost(runtime_id, reason)

    async def _renewing(self) -> None:
        while self.held:
            now = self.clock()
            earliest = min(lease.deadline for lease in self.held.values())
            await asyncio.sleep(max(0.0, min(self.ttl * RENEW_EVERY, earliest - now)))
            await self.renew_once()

    async def renew_once(self) -> None:
        """Renew every held lease in one write; lose those taken over, and,
        when the write fails or takes too long, those past their deadline."""
        leases = dict(self.held)
        if not leases:
            return
        sent = self.clock()
        earliest = min(lease.deadline for lease in leases.values())
        epochs = {rid: lease.epoch for rid, lease in leases.items()}
        try:
            lost = await asyncio.wait_for(
                self.store.renew(self.owner, epochs, self.ttl),
                timeout=max(0.0, earliest - sent),
            )
        except (RuntimeStoreError, TimeoutError) as exc:
            why = str(exc) or "the store did not answer in time"
            for lease in leases.values():
                if not lease.valid():
                    lease.lose(f"the lease could not be renewed in time ({why})")
            return
        for runtime_id in lost:
            leases[runtime_id].lose("another owner took the lease over")
        for lease in leases.values():
            if lease.lost is None:
                lease.deadline = self._deadline(sent)
