"""Ownership through the session adapter (PD-36, PD-37): claims on
registration, refusals naming the owner, takeover, fenced owners dropping
their sessions, renewals that fail or stall."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meerkat_runtime import (
    InMemoryRuntimeStore,
    RuntimeOwnedError,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.errors import FencedError, InternalError, NotReadyError
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.sessions.completion import RuntimeTerminated
from meerkat_runtime.testing.conformance_ownership import FakeClock
from meerkat_runtime.testing.faults import FaultyStore, RenewalFault
from tests.sessions.executors import Step, ToyExecutor
from tests.sessions.helpers import TIMEOUT, GatedPersist, prompt

S = SessionId("owned")
R = LogicalRuntimeId(str(S))


def adapter(store: object, owner: str) -> RuntimeSessionAdapter:
    return RuntimeSessionAdapter.persistent(
        store,  # type: ignore[arg-type]
        MemoryBlobStore(),
        owner=owner,
        retry_delay=0.001,
    )


def test_a_second_owner_is_refused_until_the_first_unregisters() -> None:
    async def body() -> None:
        store = InMemoryRuntimeStore()
        first, second = adapter(store, "first"), adapter(store, "second")
        await first.register_session(S)
        with pytest.raises(RuntimeOwnedError) as refused:
            await second.register_session(S)
        assert refused.value.owner == "first"
        assert S not in second.sessions
        await first.unregister_session(S)
        await second.register_session(S)
        (lease,) = await store.load_leases()
        assert (lease.owner, lease.epoch) == ("second", 2)
        await second.close()
        assert (await store.load_leases())[0].released

    asyncio.run(body())


def test_a_claim_waits_for_the_owner_to_leave_when_told_to() -> None:
    async def body() -> None:
        store = InMemoryRuntimeStore()
        first = adapter(store, "first")
        second = RuntimeSessionAdapter.persistent(
            store, MemoryBlobStore(), owner="second", claim_wait=60
        )
        await first.register_session(S)
        waiting = asyncio.ensure_future(second.register_session(S))
        await asyncio.sleep(0)
        assert not waiting.done()
        await first.close()
        await asyncio.wait_for(waiting, TIMEOUT)
        assert S in second.sessions

    asyncio.run(body())


def test_a_taken_over_owner_is_fenced_and_drops_its_session() -> None:
    """The first owner stalls (its renewals hang), its lease expires on the
    store's clock, the second takes over; the first's next accept is
    fenced: nothing of it stored, its waiter told ownership was lost, and
    every later call refused naming why."""

    async def body() -> None:
        store = InMemoryRuntimeStore(lease_ttl=60)
        clock = FakeClock()
        store.lease_clock = clock
        stalled = FaultyStore(store)
        stalled.renewal_fault = RenewalFault.STALL
        first, second = adapter(stalled, "first"), adapter(store, "second")
        await first.register_session(S)
        _, waiter = await first.accept_input_with_completion(S, prompt("one"))
        assert waiter is not None
        clock.now += 61
        await second.register_session(S)
        assert await second.list_active_inputs(S)  # it recovered "one"
        with pytest.raises(InternalError) as fenced:
            await first.accept_input(S, prompt("two"))
        assert isinstance(fenced.value.store_error, FencedError)
        outcome = await asyncio.wait_for(waiter.wait(), TIMEOUT)
        assert isinstance(outcome, RuntimeTerminated)
        assert outcome.reason.startswith("runtime ownership lost")
        with pytest.raises(NotReadyError, match="ownership lost"):
            await first.accept_input(S, prompt("three"))
        stored = await store.load_input_states(R)
        assert len(stored) == 1  # "two" and "three" never reached it
        await second.close()
        await first.close()

    asyncio.run(body())


@pytest.mark.parametrize("fault", list(RenewalFault))
def test_an_owner_that_cannot_renew_stops_at_its_deadline(fault: RenewalFault) -> None:
    """Renewals fail or hang: at the local deadline the session is dropped
    (its loop and a run in flight stop, its waiter hears why), and its
    driver refuses to write although no one else took the lease."""

    async def body() -> None:
        faulty = FaultyStore(InMemoryRuntimeStore(lease_ttl=0.2))
        owner = adapter(faulty, "owner")
        executor = ToyExecutor([Step.HOLD])
        await owner.register_session_with_executor(S, executor)
        session = owner.sessions[S]
        faulty.renewal_fault = fault
        _, waiter = await owner.accept_input_with_completion(S, prompt("one"))
        assert waiter is not None
        await asyncio.wait_for(executor.held.wait(), TIMEOUT)
        outcome = await asyncio.wait_for(waiter.wait(), TIMEOUT * 4)
        assert isinstance(outcome, RuntimeTerminated)
        assert "could not be renewed" in outcome.reason
        assert S not in owner.sessions
        assert session.loop is not None
        await asyncio.wait_for(session.loop.join(), TIMEOUT)
        assert not session.loop.alive()
        assert faulty.renewals >= 1
        driver = session.driver
        with pytest.raises(InternalError, match="fenced"):
            await driver.accept_input(prompt("late"))
        faulty.stall_released.set()
        await owner.close()

    asyncio.run(body())


def test_waiters_of_a_run_whose_boundary_is_fenced_hear_ownership_was_lost() -> None:
    """The loop ends when its boundary commit is fenced; the waiters must
    hear why (ownership lost), not merely that the loop exited."""

    async def body() -> None:
        store = InMemoryRuntimeStore(lease_ttl=60)
        clock = FakeClock()
        store.lease_clock = clock
        first, second = adapter(store, "first"), adapter(store, "second")
        executor = ToyExecutor([Step.HOLD])
        await first.register_session_with_executor(S, executor)
        _, waiter = await first.accept_input_with_completion(S, prompt("one"))
        assert waiter is not None
        await asyncio.wait_for(executor.held.wait(), TIMEOUT)
        clock.now += 61
        await second.register_session(S)
        executor.release.set()  # its boundary commit now meets the new epoch
        outcome = await asyncio.wait_for(waiter.wait(), TIMEOUT)
        assert isinstance(outcome, RuntimeTerminated)
        assert outcome.reason.startswith("runtime ownership lost: a write was fenced")
        assert await store.load_boundary_receipts(R) == []
        await second.close()
        await first.close()

    asyncio.run(body())


class GatedSqliteStore(GatedPersist, SqliteRuntimeStore):
    """On a file, gated (``GatedPersist``): the fence check waits too."""


def test_an_accept_waiting_while_close_releases_the_lease_hears_closed(
    tmp_path: Path,
) -> None:
    """The second accept waits for the session lock while close gives the
    lease back; its write is then refused, and must say the adapter is
    closed, not that another owner fenced it."""

    async def body() -> None:
        store = GatedSqliteStore(tmp_path / "closing.db")
        owner = adapter(store, "closing")
        await owner.register_session(S)
        store.gate = gate = asyncio.Event()
        first = asyncio.ensure_future(owner.accept_input(S, prompt("one")))
        await asyncio.wait_for(store.entered.wait(), TIMEOUT)
        second = asyncio.ensure_future(owner.accept_input(S, prompt("two")))
        await asyncio.sleep(0)  # past its closed check, waiting for the lock
        await owner.close()
        gate.set()
        assert (await asyncio.wait_for(first, TIMEOUT)).is_accepted()
        with pytest.raises(NotReadyError, match="adapter is closed"):
            await asyncio.wait_for(second, TIMEOUT)
        assert len(await store.load_input_states(R)) == 1
        await store.close()

    asyncio.run(body())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "must not be blank"),
        ("   ", "must not be blank"),
        ("worker\x1b[2J", "contains control characters"),
        ("\ud800", "lone surrogate"),
        ("w" * 513, "longer than 512"),
    ],
)
def test_session_ids_and_owners_are_held_to_the_id_rules(
    text: str, problem: str
) -> None:
    """A session id and an owner id are keys a store holds and operators
    read: refused when made, naming the field, before anything is stored."""
    with pytest.raises(ValueError, match=f"^SessionId .*{problem}"):
        SessionId(text)
    store = InMemoryRuntimeStore()
    with pytest.raises(ValueError, match=f"^owner .*{problem}"):
        RuntimeSessionAdapter.persistent(store, MemoryBlobStore(), owner=text)
    with pytest.raises(ValueError, match=f"^lease owner .*{problem}"):
        asyncio.run(store.claim(R, text))
    assert asyncio.run(store.load_leases()) == []
