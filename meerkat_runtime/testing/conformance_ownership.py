"""The ownership part of the store conformance suite (PD-36).

``StoreConformance`` includes it; it drives the store's lease clock through
the ``lease_clock`` attribute (a callable returning wall-clock seconds), so
expiries happen when a test says, never by waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from meerkat_runtime.errors import FencedError, RuntimeOwnedError
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import LogicalRuntimeId, RunId
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStore, SessionDelta
from meerkat_runtime.testing.conformance_support import (
    ConformanceHooks,
    receipt_for,
    rich_state,
)

TABLES = (records.INPUTS, records.RECEIPTS, records.SNAPSHOTS, records.STATES)
R = LogicalRuntimeId("owned-runtime")
OTHER = LogicalRuntimeId("other-runtime")
TTL = 10.0


class FakeClock:
    """Wall-clock seconds that move only when told."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _clocked(store: RuntimeStore) -> FakeClock:
    clock = FakeClock()
    store.lease_clock = clock  # type: ignore[attr-defined]
    return clock


def _writes(
    store: RuntimeStore, runtime_id: LogicalRuntimeId
) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of every write of the contract, each adding a row."""
    delta = SessionDelta(session_snapshot=b'{"messages": []}')
    state = rich_state(1)
    receipt: RunBoundaryReceipt = receipt_for(RunId.new(), [state.input_id])
    return {
        "persist_input_state": lambda: store.persist_input_state(runtime_id, state),
        "persist_runtime_state": lambda: store.persist_runtime_state(
            runtime_id, RuntimeState.RETIRED
        ),
        "atomic_lifecycle_commit": lambda: store.atomic_lifecycle_commit(
            runtime_id, RuntimeState.RETIRED, [state]
        ),
        "commit_recovery": lambda: store.commit_recovery(
            runtime_id, RuntimeState.RETIRED, [state], []
        ),
        "atomic_apply": lambda: store.atomic_apply(runtime_id, delta, receipt, [state]),
        "commit_session_boundary": lambda: store.commit_session_boundary(
            runtime_id,
            delta,
            RunId.new(),
            RunApplyBoundary.RUN_START,
            [state.input_id],
            [state],
        ),
    }


WRITE_NAMES = (
    "persist_input_state",
    "persist_runtime_state",
    "atomic_lifecycle_commit",
    "commit_recovery",
    "atomic_apply",
    "commit_session_boundary",
)


class OwnershipConformance(ConformanceHooks):
    """Claim, renew, release, expiry, takeover, fenced writes."""

    def test_a_claim_takes_a_free_runtime_and_refuses_a_second_owner(self) -> None:
        async def body(store: RuntimeStore) -> None:
            clock = _clocked(store)
            assert await store.claim(R, "owner-1", TTL) == 1
            with pytest.raises(RuntimeOwnedError) as refused:
                await store.claim(R, "owner-2", TTL)
            assert refused.value.owner == "owner-1"
            assert refused.value.expires_at == clock.now + TTL
            assert refused.value.runtime_id in (R, str(R))
            assert await store.claim(OTHER, "owner-2", TTL) == 1  # per runtime
            (lease, other) = sorted(
                await store.load_leases(), key=lambda x: x.runtime_id != str(R)
            )
            assert (lease.owner, lease.epoch, lease.expires_at) == (
                "owner-1",
                1,
                clock.now + TTL,
            )
            assert other.owner == "owner-2"

        self.run(body)

    def test_an_expired_lease_is_taken_over_with_a_higher_epoch(self) -> None:
        async def body(store: RuntimeStore) -> None:
            clock = _clocked(store)
            first = await store.claim(R, "owner-1", TTL)
            clock.now += TTL  # expiry is exclusive: now it has run out
            second = await store.claim(R, "owner-2", TTL)
            assert second == first + 1
            assert await store.renew("owner-1", {R: first}, TTL) == [R]
            assert await store.renew("owner-2", {R: second}, TTL) == []

        self.run(body)

    def test_renewal_keeps_the_lease_and_release_frees_it(self) -> None:
        async def body(store: RuntimeStore) -> None:
            clock = _clocked(store)
            epoch = await store.claim(R, "owner-1", TTL)
            clock.now += TTL - 1
            assert await store.renew("owner-1", {R: epoch}, TTL) == []
            clock.now += TTL - 1  # past the first expiry, not the renewed one
            with pytest.raises(RuntimeOwnedError):
                await store.claim(R, "owner-2", TTL)
            await store.release(R, "owner-2", epoch)  # not its lease: no effect
            with pytest.raises(RuntimeOwnedError):
                await store.claim(R, "owner-2", TTL)
            await store.release(R, "owner-1", epoch)
            assert await store.claim(R, "owner-2", TTL) == epoch + 1

        self.run(body)

    def test_a_renewal_after_a_release_does_not_bring_the_lease_back(self) -> None:
        """A renewal sent before a release and applied after it (PD-67)."""

        async def body(store: RuntimeStore) -> None:
            _clocked(store)
            epoch = await store.claim(R, "owner-1", TTL)
            await store.release(R, "owner-1", epoch)
            assert await store.renew("owner-1", {R: epoch}, TTL) == [R]
            [lease] = await store.load_leases()
            assert lease.released
            assert await store.claim(R, "owner-2", TTL) == epoch + 1

        self.run(body)

    def test_a_waiting_claim_gets_the_lease_when_it_is_released(self) -> None:
        async def body(store: RuntimeStore) -> None:
            _clocked(store)
            epoch = await store.claim(R, "owner-1", TTL)
            waiting = asyncio.ensure_future(store.claim(R, "owner-2", TTL, wait=60))
            await asyncio.sleep(0)
            assert not waiting.done()
            await store.release(R, "owner-1", epoch)
            assert await waiting == epoch + 1

        self.run(body)

    def test_a_claim_that_waits_too_short_is_refused(self) -> None:
        async def body(store: RuntimeStore) -> None:
            _clocked(store)
            await store.claim(R, "owner-1", TTL)
            with pytest.raises(RuntimeOwnedError):
                await store.claim(R, "owner-2", TTL, wait=0.01)

        self.run(body)

    def test_bad_lease_arguments_are_refused_by_name(self) -> None:
        async def body(store: RuntimeStore) -> None:
            with pytest.raises(ValueError, match="lease_ttl"):
                await store.claim(R, "owner-1", 0)
            with pytest.raises(ValueError, match="owner"):
                await store.claim(R, "", TTL)
            assert await store.load_leases() == []

        self.run(body)

    @pytest.mark.parametrize("write", WRITE_NAMES)
    def test_a_fenced_write_is_refused_whole(self, write: str) -> None:
        async def body(store: RuntimeStore) -> None:
            clock = _clocked(store)
            old = await store.claim(R, "owner-1", TTL)
            stale = store.fenced(R, old)
            await _writes(stale, R)[write]()  # current: it goes through
            before = {t: self.raw_rows(store, t, R) for t in TABLES}
            clock.now += TTL
            new = await store.claim(R, "owner-2", TTL)
            with pytest.raises(FencedError) as fenced:
                await _writes(stale, R)[write]()
            assert fenced.value.epoch == new
            assert {t: self.raw_rows(store, t, R) for t in TABLES} == before
            await _writes(stale, OTHER)[write]()  # only its runtime is fenced
            await _writes(store.fenced(R, new), R)[write]()  # the new owner writes

        self.run(body)
