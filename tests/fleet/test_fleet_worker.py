"""``FleetWorker`` in one process over a memory store (PD-67..PD-69):
fair-share claims, takeover after expiry, release on close and when idle,
lost ownership, the work-source seam. Lease expiry is driven by the store's
``lease_clock``, never by waiting for it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from meerkat_runtime.ids import LogicalRuntimeId, RunId, SessionId
from meerkat_runtime.sessions.executor import (
    CoreApplyOutput,
    CoreExecutor,
    RunControlCommand,
    RunPrimitive,
)
from meerkat_runtime.sessions.fleet import EchoExecutor, FleetWorker, ledger_work
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.memory import InMemoryRuntimeStore
from meerkat_runtime.testing.fleet import (
    Acknowledged,
    check_exactly_once,
    load_sessions,
    session_ids,
)

TTL = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def clocked_store() -> tuple[InMemoryRuntimeStore, Clock]:
    store = InMemoryRuntimeStore(lease_ttl=TTL)
    clock = Clock()
    store.lease_clock = clock
    return store, clock


class Blocking:
    """An executor whose runs wait until ``release`` is set."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    def factory(self, session_id: SessionId) -> CoreExecutor:  # noqa: ARG002
        blocking = self

        class Executor(EchoExecutor):
            async def apply(
                self, run_id: RunId, primitive: RunPrimitive
            ) -> CoreApplyOutput:
                blocking.started.set()
                await blocking.release.wait()
                return await super().apply(run_id, primitive)

            async def control(self, command: RunControlCommand) -> None:
                pass

        return Executor()


def worker(store: RuntimeStore, owner: str, **options: object) -> FleetWorker:
    return FleetWorker(store, owner=owner, rng=random.Random(owner), **options)  # type: ignore[arg-type]


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    while not await condition():
        await asyncio.sleep(0.01)


async def no_work(store: RuntimeStore) -> None:
    async def done() -> bool:
        return not await store.list_runtimes_with_work()

    await until(done)


async def assert_exactly_once(store: RuntimeStore, acked: Acknowledged) -> None:
    check = await check_exactly_once(store, acked)
    assert check.problems == []
    assert check.inputs == sum(len(ids) for ids in acked.values())


def test_two_workers_share_the_runtimes_and_apply_each_input_once() -> None:
    async def main() -> None:
        store = InMemoryRuntimeStore()
        acked = await load_sessions(store, session_ids(24), 3)
        a = worker(store, "a", scan_interval=0.01, claim_batch=2)
        b = worker(store, "b", scan_interval=0.01, claim_batch=2)
        async with a, b:
            await no_work(store)
        assert a.claims > 0
        assert b.claims > 0
        assert a.claims + b.claims >= 24
        await assert_exactly_once(store, acked)
        assert all(lease.released for lease in await store.load_leases())

    asyncio.run(main())


def test_a_round_claims_at_most_the_batch_the_fair_share_and_the_cap() -> None:
    async def main() -> None:
        store, _ = clocked_store()
        await load_sessions(store, session_ids(20), 1)
        # Another live owner holds ten of the twenty runtimes.
        for sid in session_ids(20)[:10]:
            await store.claim(LogicalRuntimeId(str(sid)), "other", TTL)
        blocking = Blocking()
        w = FleetWorker(
            store,
            blocking.factory,
            owner="me",
            claim_batch=4,
            max_runtimes=6,
            rng=random.Random(1),
        )
        view = await w.look()
        assert len(view.free) == 10
        assert view.share == 10  # (10 live + 10 free) / 2 owners
        assert await w.run_once() == 4  # the batch
        assert await w.run_once() == 2  # the cap
        assert await w.run_once() == 0
        held = {
            str(lease.runtime_id)
            for lease in await store.load_leases()
            if lease.owner == "me"
        }
        assert held == {str(sid) for sid in w.held}
        assert not held & {str(sid) for sid in session_ids(20)[:10]}
        blocking.release.set()
        await w.close()

    asyncio.run(main())


def test_a_dead_owners_runtimes_are_taken_over_after_their_leases_expire() -> None:
    async def main() -> None:
        store, clock = clocked_store()
        acked = await load_sessions(store, session_ids(5), 2, release=False)
        w = worker(store, "survivor")
        assert await w.run_once() == 0  # the loader's leases are live
        clock.now += TTL  # ... and now they have run out
        assert await w.run_once() == 5
        await no_work(store)
        await w.close()
        await assert_exactly_once(store, acked)

    asyncio.run(main())


def test_close_stops_the_runs_and_releases_so_another_takes_over_at_once() -> None:
    async def main() -> None:
        store, _ = clocked_store()
        acked = await load_sessions(store, session_ids(3), 2)
        blocking = Blocking()
        first = FleetWorker(store, blocking.factory, owner="first")
        assert await first.run_once() == 3
        await blocking.started.wait()  # a run is in flight
        await first.close()
        assert all(lease.released for lease in await store.load_leases())
        second = worker(store, "second")
        assert await second.run_once() == 3  # no waiting for an expiry
        await no_work(store)
        await second.close()
        await assert_exactly_once(store, acked)

    asyncio.run(main())


def test_a_runtime_without_work_is_released_after_idle_release() -> None:
    async def main() -> None:
        store, _ = clocked_store()
        await load_sessions(store, session_ids(2), 1)
        w = worker(store, "idler", idle_release=0.0)
        assert await w.run_once() == 2
        await no_work(store)
        await w.reap()  # idle from now
        await w.reap()  # idle for 0 s: released
        assert w.held == {}
        assert all(lease.released for lease in await store.load_leases())
        await w.close()

    asyncio.run(main())


def test_a_worker_that_loses_a_lease_stops_that_runtime_and_forgets_it() -> None:
    async def main() -> None:
        store, clock = clocked_store()
        acked = await load_sessions(store, session_ids(1), 2)
        blocking = Blocking()
        w = FleetWorker(store, blocking.factory, owner="paused")
        assert await w.run_once() == 1
        await blocking.started.wait()
        [sid] = w.held
        clock.now += TTL  # the worker "paused" past its lease
        thief_epoch = await store.claim(LogicalRuntimeId(str(sid)), "thief", TTL)
        assert w.adapter.ownership is not None
        await w.adapter.ownership.renew_once()  # finds it taken over
        await until(lambda: _gone(w, sid))
        blocking.release.set()  # the run ends: its boundary is not written
        await w.reap()
        assert w.held == {}
        [lease] = await store.load_leases()
        assert (lease.owner, lease.epoch, lease.released) == (
            "thief",
            thief_epoch,
            False,
        )
        await w.close()
        assert (await check_exactly_once(store, acked)).receipts == 0

    asyncio.run(main())


async def _gone(w: FleetWorker, sid: SessionId) -> bool:
    return sid not in w.adapter.sessions


def test_work_sources_are_the_seam_for_other_kinds_of_work() -> None:
    async def main() -> None:
        store, _ = clocked_store()
        asked: list[RuntimeStore] = []

        async def inbox(s: RuntimeStore) -> list[LogicalRuntimeId]:
            asked.append(s)
            return [LogicalRuntimeId("from-the-inbox")]

        w = FleetWorker(store, owner="seam", work_sources=(ledger_work, inbox))
        assert await w.run_once() == 1
        assert asked == [store]
        assert list(w.held) == [SessionId("from-the-inbox")]
        await w.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_runtimes", 0),
        ("claim_batch", -1),
        ("scan_interval", -1.0),
        ("idle_release", float("nan")),
    ],
)
def test_bad_options_are_refused_by_name(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        FleetWorker(InMemoryRuntimeStore(), **{option: value})  # type: ignore[arg-type]


def test_a_store_without_leases_is_refused() -> None:
    class NoLeases(InMemoryRuntimeStore):
        keeps_leases = False

    with pytest.raises(ValueError, match="NoLeases keeps none"):
        FleetWorker(NoLeases())


def test_a_worker_at_its_cap_does_not_scan_the_store() -> None:
    async def main() -> None:
        store, _ = clocked_store()
        looks: list[int] = []

        async def counted(_: RuntimeStore) -> list[LogicalRuntimeId]:
            looks.append(1)
            return [LogicalRuntimeId("a"), LogicalRuntimeId("b")]

        w = FleetWorker(store, owner="full", work_sources=(counted,), max_runtimes=1)
        assert await w.run_once() == 1
        assert await w.run_once() == 0
        assert len(looks) == 1
        await w.close()

    asyncio.run(main())


def test_a_factory_that_fails_parks_that_runtime_and_placement_goes_on() -> None:
    async def main() -> None:
        store, _ = clocked_store()
        await load_sessions(store, session_ids(2), 1)

        def factory(session_id: SessionId) -> CoreExecutor:
            if session_id == session_ids(2)[0]:
                raise RuntimeError("no model for this one")
            return EchoExecutor()

        w = FleetWorker(store, factory, owner="picky", rng=random.Random(3))
        assert await w.run_once() == 1
        assert list(w.held) == [session_ids(2)[1]]
        assert await w.run_once() == 0  # the other is parked, not retried now
        await w.close()

    asyncio.run(main())


def test_a_stray_lease_of_this_worker_is_released_at_its_next_look() -> None:
    """A claim whose recovery failed after its lease was lost locally can
    leave the store's row live under this owner: the next look frees it."""

    async def main() -> None:
        store, _ = clocked_store()
        await load_sessions(store, session_ids(1), 1)
        [sid] = session_ids(1)
        w = FleetWorker(store, owner="sweeper")
        await store.claim(LogicalRuntimeId(str(sid)), "sweeper", TTL)  # the stray
        await w.run_once()  # the look releases it
        [lease] = await store.load_leases()
        assert lease.released
        assert await w.run_once() == 1  # then it is free like any other
        await no_work(store)
        await w.close()
        assert all(lease.released for lease in await store.load_leases())

    asyncio.run(main())
