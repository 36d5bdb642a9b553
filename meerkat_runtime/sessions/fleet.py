"""``FleetWorker``: one of N processes sharing the runtimes of one database
(PD-67, PD-68, PD-69).

Theory of operation: a worker is a ``RuntimeSessionAdapter`` under one owner
id plus a placement task. Every ``scan_interval`` (jittered, so N workers
do not ask in step) the task runs one *round*:

1. **Reap.** A session the adapter dropped (its lease was lost: taken over
   after a pause, fenced) is forgotten; one whose loop died is unregistered,
   which releases its lease so another worker recovers it; one with no
   unfinished input for ``idle_release`` seconds is unregistered too.
2. **Look.** The *work sources* name runtimes that have work; the lease
   table names those with a live owner (any worker, this one included).
   What is left, minus runtimes parked here after a failed claim, is free.
3. **Claim a fair share** (PD-68): ``share = ceil((live leases + free) /
   live owners)``, where the live owners are the distinct owners of live
   leases plus this worker. The worker claims at most ``share - held``,
   ``max_runtimes - held`` and ``claim_batch`` runtimes per round, picked
   in random order. The batch keeps a worker that starts first (and sees no
   other owner yet) from taking everything in one round; random order keeps
   two workers from racing for the same runtimes. A claim that loses the
   race (``RuntimeOwnedError``) just moves on.
4. **Run.** A claimed runtime is registered with an executor from
   ``executor_factory``: the adapter claims its lease, recovers its pending
   work (a dead owner's staged run is queued again, a committed receipt's
   inputs are consumed: nothing lost, nothing applied twice) and starts its
   loop.

A dead worker's runtimes come back as free once their leases expire; a
paused one loses them (its renewals stop) and its late writes are fenced.
``close`` stops placing, optionally waits for the held sessions to finish
what they hold (``drain``), then closes the adapter: loops stop (a run in
flight is rolled back, to be run again by the next owner) and every lease
is *released*, so other workers take the runtimes at their next round
instead of after the lease's lifetime.

**Work sources** (PD-69) are the seam for other kinds of pending work: a
source is ``async (store) -> iterable of runtime ids``. The default,
``ledger_work``, asks ``store.list_runtimes_with_work(unowned=True)``
(inputs accepted into a runtime's ledger and not finished, of runtimes
without a live lease, so the store does not decode the records of runtimes
being worked on). A source may name leased runtimes too: the worker leaves
those out itself. The second default, ``inbox_work``, names the runtimes
whose inbox holds inputs submitted by non-owners (PD-58); the placement
itself does not know the difference.

A round that finds nothing free doubles the pause before the next (up to
``MAX_BACKOFF`` times ``scan_interval``), and a worker at its cap does not
look at all: the look is a scan of the store.

Live leases are judged on the store's ``lease_clock`` when it has one (a
seam for tests), else on this process's wall clock. Over PostgreSQL the
leases' expiries are on the database's clock (PD-55): a skew only makes a
worker count an owner as live a little too long or too short, which costs a
refused claim or a late one, never safety (the store's claim decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from meerkat_runtime.blobs import BlobStore, MemoryBlobStore
from meerkat_runtime.errors import MeerkatError, RuntimeOwnedError, is_retryable
from meerkat_runtime.ids import LogicalRuntimeId, RunId, SessionId
from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
from meerkat_runtime.sessions.executor import (
    CoreApplyOutput,
    CoreExecutor,
    RunControlCommand,
    RunPrimitive,
    RunResult,
    StagedInput,
    receipt_for,
)
from meerkat_runtime.store.base import RuntimeStore, keeps_inbox, owns_leases
from meerkat_runtime.store.leases import Lease

log = logging.getLogger(__name__)

WorkSource = Callable[[RuntimeStore], Awaitable[Iterable[LogicalRuntimeId]]]
ExecutorFactory = Callable[[SessionId], CoreExecutor]

DEFAULT_MAX_RUNTIMES = 256
DEFAULT_CLAIM_BATCH = 8
DEFAULT_SCAN_INTERVAL = 0.25  # seconds between two rounds, on average
DEFAULT_IDLE_RELEASE = 30.0  # seconds a runtime with no work stays held
DEFAULT_PARK = 5.0  # seconds a runtime that could not be run is left alone
DRAIN_POLL = 0.05
MAX_BACKOFF = 8  # times scan_interval, between rounds that find nothing free
CLOSE_RELEASE_TRIES = 5  # a busy store at close: then the leases expire instead


async def ledger_work(store: RuntimeStore) -> list[LogicalRuntimeId]:
    """The default work source: runtimes with unfinished accepted inputs
    and no live lease (the store skips decoding the leased ones' records)."""
    return await store.list_runtimes_with_work(unowned=True)


async def inbox_work(store: RuntimeStore) -> list[LogicalRuntimeId]:
    """Runtimes with inputs submitted to their inbox and not yet admitted
    (PD-58); a store without an inbox has none. Leased ones are left out by
    the worker."""
    if not keeps_inbox(store):
        return []
    return await store.list_runtimes_with_inbox()


DEFAULT_WORK_SOURCES: tuple[WorkSource, ...] = (ledger_work, inbox_work)


class EchoExecutor:
    """The default executor of ``meerkat-runtime worker``: applies every
    run at once and answers the prompts' text back. No model, no side
    effect: a fleet with it only moves inputs to completion (demos,
    benchmarks, a smoke test of a deployment)."""

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        text = ""
        if isinstance(primitive, StagedInput):
            text = " / ".join(append.text or "" for append in primitive.appends)
        return CoreApplyOutput(
            receipt=receipt_for(run_id, primitive),
            run_result=RunResult(text=f"echo: {text}"),
        )

    async def control(self, command: RunControlCommand) -> None:
        pass


def echo_executor(session_id: SessionId) -> CoreExecutor:  # noqa: ARG001
    """``ExecutorFactory`` of ``EchoExecutor`` (the worker's default)."""
    return EchoExecutor()


@dataclass(slots=True)
class _Held:
    """What the worker remembers of a runtime it claimed."""

    claimed_at: float
    epoch: int  # of the lease it was claimed under
    idle_since: float | None = None


@dataclass(frozen=True, slots=True)
class PlacementView:
    """One round's look at the store: what is free, and the fair share."""

    free: list[LogicalRuntimeId]
    share: int


class FleetWorker:
    """Claims, runs and releases runtimes of a shared store (module doc)."""

    def __init__(
        self,
        store: RuntimeStore,
        executor_factory: ExecutorFactory = echo_executor,
        *,
        blob_store: BlobStore | None = None,
        owner: str | None = None,
        work_sources: Sequence[WorkSource] = DEFAULT_WORK_SOURCES,
        max_runtimes: int = DEFAULT_MAX_RUNTIMES,
        claim_batch: int = DEFAULT_CLAIM_BATCH,
        scan_interval: float = DEFAULT_SCAN_INTERVAL,
        idle_release: float = DEFAULT_IDLE_RELEASE,
        rng: random.Random | None = None,
        adapter: RuntimeSessionAdapter | None = None,
    ) -> None:
        """``adapter``: a persistent adapter of your own (its options: run
        timeout, back-off, policy); by default one over ``store`` and
        ``blob_store`` (in memory when None) under ``owner``."""
        if not owns_leases(store):
            raise ValueError(
                f"a fleet needs a store that keeps leases; {type(store).__name__} "
                "keeps none"
            )
        for name, value in (
            ("max_runtimes", max_runtimes),
            ("claim_batch", claim_batch),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, not {value!r}")
        for name, seconds in (
            ("scan_interval", scan_interval),
            ("idle_release", idle_release),
        ):
            if not isinstance(seconds, int | float) or not seconds >= 0:
                raise ValueError(f"{name} must be seconds ≥ 0, not {seconds!r}")
        self.store = store
        self.adapter = adapter or RuntimeSessionAdapter.persistent(
            store, blob_store or MemoryBlobStore(), owner=owner
        )
        assert self.adapter.ownership is not None  # the store keeps leases
        self.owner = self.adapter.ownership.owner
        self.executor_factory = executor_factory
        self.work_sources = tuple(work_sources)
        self.max_runtimes = max_runtimes
        self.claim_batch = claim_batch
        self.scan_interval = scan_interval
        self.idle_release = idle_release
        self.rng = rng or random.Random()
        self.held: dict[SessionId, _Held] = {}
        self.claims = 0  # runtimes claimed so far (released ones included)
        self._parked: dict[LogicalRuntimeId, float] = {}  # until (monotonic)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._woken = asyncio.Event()  # cuts the pause between rounds short
        self._found = False  # whether the last round's look found free work

    # ---------------------------------------------------------------- life

    def start(self) -> None:
        """Start placing (once)."""
        if self._closing:
            raise RuntimeError("the fleet worker is closed")
        if self._task is None:
            self._task = asyncio.ensure_future(self._placing())

    async def close(self, *, drain: float = 0.0) -> None:
        """Stop claiming; wait up to ``drain`` seconds for the held sessions
        to finish their work; then stop every loop and release every lease.
        The store stays open (it is the caller's)."""
        self._closing = True
        self._woken.set()
        if self._task is not None:
            # Not cancelled: a claim cut off mid-recovery would finish in the
            # background and hold its lease past ``adapter.close``. The
            # round checks ``_closing`` between claims.
            await asyncio.wait({self._task})
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and await self._busy():
            await asyncio.sleep(DRAIN_POLL)
        for session_id, held in list(self.held.items()):
            if session_id not in self.adapter.sessions:
                await self._give_back_lost(session_id, held)
        await self.adapter.close()
        self.held.clear()
        await self._release_remaining()

    async def _release_remaining(self) -> None:
        """After the adapter closed: release every live lease the store still
        names this worker for (a release the adapter tried may have met a
        busy store). A store that stays unavailable is given up on after a
        few tries: the leases then expire on their own."""
        for attempt in range(CLOSE_RELEASE_TRIES):
            try:
                # Expired ones too: "expired" is judged on the store's clock,
                # and a late renewal may revive a lease this process gave up.
                mine = [x for x in await self.store.load_leases() if not x.released]
                await self._sweep(mine, closed=True, strict=True)
                return
            except MeerkatError as exc:
                if not is_retryable(exc) or attempt + 1 == CLOSE_RELEASE_TRIES:
                    log.warning("fleet %s: leases left to expire: %s", self.owner, exc)
                    return
            await asyncio.sleep(DRAIN_POLL * (attempt + 1))

    async def __aenter__(self) -> FleetWorker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _busy(self) -> bool:
        for session_id in list(self.held):
            if session_id in self.adapter.sessions and (
                await self.adapter.list_active_inputs(session_id)
            ):
                return True
        return False

    async def _placing(self) -> None:
        quiet = 0  # rounds in a row that found nothing free
        while not self._closing:
            try:
                await self.run_once()
            except MeerkatError as exc:  # the store is down: try next round
                log.warning("fleet %s: placement round failed: %s", self.owner, exc)
            except Exception:  # a bug must not end placement silently
                log.exception("fleet %s: placement round failed", self.owner)
            # The look scans the store: ask less often while it finds
            # nothing, at once again when it does.
            quiet = 0 if self._found else quiet + 1
            backoff = min(2 ** min(quiet, 8), MAX_BACKOFF)
            pause = self.scan_interval * backoff * self.rng.uniform(0.5, 1.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), pause)

    # ---------------------------------------------------------------- a round

    async def run_once(self) -> int:
        """One placement round (module doc); the number of runtimes claimed."""
        await self.reap()
        self._found = False
        if self._closing or len(self.held) >= self.max_runtimes:
            return 0  # full: no need to scan
        view = await self.look()
        self._found = bool(view.free)
        room = min(
            self.claim_batch,
            self.max_runtimes - len(self.held),
            view.share - len(self.held),
        )
        if room <= 0:
            return 0
        # Side by side: each claim recovers its runtime, a few reads each.
        done = await asyncio.gather(*(self._claim(rid) for rid in view.free[:room]))
        return sum(done)

    async def look(self) -> PlacementView:
        """What is free to claim now, in random order, and the fair share."""
        wanted: set[LogicalRuntimeId] = set()
        for source in self.work_sources:
            wanted.update(await source(self.store))
        now = self._lease_now()
        leases = [x for x in await self.store.load_leases() if x.held_at(now)]
        live = {x.runtime_id: x.owner for x in await self._sweep(leases)}
        mono = time.monotonic()
        self._parked = {rid: t for rid, t in self._parked.items() if t > mono}
        free = [
            rid
            for rid in sorted(wanted)
            if str(rid) not in live
            and rid not in self._parked
            and SessionId(str(rid)) not in self.held
        ]
        self.rng.shuffle(free)
        owners = {*live.values(), self.owner}
        share = math.ceil((len(live) + len(free)) / len(owners))
        return PlacementView(free, share)

    def _lease_now(self) -> float:
        return (getattr(self.store, "lease_clock", None) or time.time)()

    async def _sweep(
        self, live: list[Lease], *, closed: bool = False, strict: bool = False
    ) -> list[Lease]:
        """Release the live leases the store says are this worker's but
        that run nothing here; the others. They are what a claim leaves
        behind when its recovery failed after the lease was lost in this
        process's view only (a pause), while a late renewal kept the row
        alive: released, the runtime is free now instead of at expiry. No
        claim of this worker is in flight meanwhile (rounds claim after
        they look), and owner ids are unique per worker. Once ``closed``,
        nothing runs here: every live lease of this owner goes."""
        kept: list[Lease] = []
        for lease in live:
            running = (
                not closed and SessionId(lease.runtime_id) in self.adapter.sessions
            )
            if lease.owner != self.owner or running:
                kept.append(lease)
                continue
            rid = LogicalRuntimeId(lease.runtime_id)
            try:
                await self.store.release(rid, self.owner, lease.epoch)
            except MeerkatError:
                if strict:  # the caller retries
                    raise
                continue
            log.info("fleet %s: released stray lease of %s", self.owner, rid)
        return kept

    async def _claim(self, runtime_id: LogicalRuntimeId) -> int:
        """Claim, recover and start one runtime: 1 when it runs here."""
        session_id = SessionId(str(runtime_id))
        try:
            executor = self.executor_factory(session_id)
        except Exception:  # the application's factory: its bug, this runtime
            log.exception("fleet %s: no executor for %s", self.owner, runtime_id)
            self._park(runtime_id)
            return 0
        try:
            await self.adapter.register_session_with_executor(session_id, executor)
        except RuntimeOwnedError:
            return 0  # another worker was quicker
        except MeerkatError as exc:
            log.warning("fleet %s: could not take %s: %s", self.owner, runtime_id, exc)
            self._park(runtime_id)
            return 0
        session = self.adapter.sessions.get(session_id)
        if session is None or not session.has_live_loop():
            # Retired, stopped or destroyed: nothing will run it here.
            await self._release(session_id, "it cannot run")
            self._park(runtime_id)
            return 0
        lease = getattr(session.driver, "lease", None)
        epoch = lease.epoch if lease is not None else 0
        self.held[session_id] = _Held(claimed_at=time.monotonic(), epoch=epoch)
        self.claims += 1
        log.info("fleet %s: claimed %s", self.owner, runtime_id)
        return 1

    def _park(self, runtime_id: LogicalRuntimeId) -> None:
        self._parked[runtime_id] = time.monotonic() + max(
            DEFAULT_PARK, self.idle_release
        )

    async def reap(self) -> None:
        """Forget lost sessions, release dead and long-idle ones."""
        now = time.monotonic()
        for session_id, held in list(self.held.items()):
            session = self.adapter.sessions.get(session_id)
            if session is None:  # dropped by the adapter: ownership lost
                await self._give_back_lost(session_id, held)
            elif not session.has_live_loop():
                await self._release(session_id, "its loop ended")
                self._park(LogicalRuntimeId(str(session_id)))
            elif session.driver.active_input_ids():
                held.idle_since = None
            elif held.idle_since is None:
                held.idle_since = now
            elif now - held.idle_since >= self.idle_release:
                await self._release(session_id, "idle")

    async def _give_back_lost(self, session_id: SessionId, held: _Held) -> None:
        """Forget a session the adapter dropped, and release its lease at
        the epoch it was claimed under. When another owner took it over,
        that is a no-op (the store's row has a later epoch). When the loss
        was this process's own view (a pause ran past its local deadline
        while a renewal still reached the store), the row still names this
        worker, live, and would keep every other worker out until it
        expires. Its writes are fenced whatever happens: the session is
        gone, and a later owner's claim raises the epoch."""
        del self.held[session_id]
        log.info("fleet %s: lost %s", self.owner, session_id)
        with contextlib.suppress(MeerkatError):
            await self.store.release(
                LogicalRuntimeId(str(session_id)), self.owner, held.epoch
            )

    async def _release(self, session_id: SessionId, why: str) -> None:
        self.held.pop(session_id, None)
        if session_id in self.adapter.sessions:
            await self.adapter.unregister_session(session_id)  # releases the lease
        log.info("fleet %s: released %s (%s)", self.owner, session_id, why)


__all__ = [
    "DEFAULT_WORK_SOURCES",
    "EchoExecutor",
    "ExecutorFactory",
    "FleetWorker",
    "PlacementView",
    "WorkSource",
    "echo_executor",
    "inbox_work",
    "ledger_work",
]
