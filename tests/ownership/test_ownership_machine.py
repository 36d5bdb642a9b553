"""Two owners contending for one runtime over one shared store (issue 15):
a Hypothesis state machine beside a reference model of the lease (PD-36,
PD-37).

Two slots, owners "A" and "B", each hold at most one persistent driver
with leases of its own (``OwnerLeases``); both write to the same store.
Two fake clocks, the store's wall clock (``lease_clock``) and the owners'
monotonic clock (``OwnerLeases(clock=)``, PD-63), move when a rule says:
together as time passes, or the wall clock alone when it jumps ahead. Rules: claim (recover), accept,
run, renew, release, crash (a driver dropped without releasing), time
passing (a little, or past every lease), and writes sent straight to the
store under an old epoch.

Each rule checks its outcome against the model: a claim succeeds exactly
when the lease is free, released, expired or the claimer's own; a write
succeeds exactly when its owner's epoch is the current one and its local
deadline has not passed, and a refused write leaves nothing visible. After
every step: the store's lease is the model's; while the clocks agree, at
most one driver trusts its lease, and that one holds the current epoch of
an unexpired lease (after a jump only the store's fence stands between
two owners, and the write rules check that it does); no
input is named by two receipts; every acknowledged input is stored, and a
consumed one is named by a receipt. At the end a third owner takes over and
recovers every acknowledged input not yet consumed.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from meerkat_runtime import (
    InMemoryRuntimeStore,
    InputHeader,
    LogicalRuntimeId,
    PromptInput,
    RunEvent,
    RunId,
    RuntimeOwnedError,
    SqliteRuntimeStore,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import FencedError, InternalError
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.ledger import Lane
from meerkat_runtime.sessions.ownership import SAFETY_MARGIN, OwnerLeases
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.testing.conformance_ownership import FakeClock
from meerkat_runtime.testing.conformance_support import receipt_for, rich_state

T = TypeVar("T")
RID = LogicalRuntimeId("contended")
# Fake seconds; renewals are this machine's rules, and the background
# renewer would first wake after a quarter of it, in real seconds: never.
TTL = 10_000.0
TRUSTED = TTL * (1 - SAFETY_MARGIN)  # how long an owner trusts its lease


@dataclass
class Slot:
    """One owner's driver, as the model knows it."""

    name: str
    driver: PersistentRuntimeDriver | None = None
    leases: OwnerLeases | None = None
    epoch: int = 0
    deadline: float = 0.0  # on the fake clock: trusted until then
    lost: list[str] = field(default_factory=list)  # reasons heard, in order

    def trusts(self, now: float) -> bool:
        return self.driver is not None and not self.lost and now < self.deadline


def idle(slot: Slot) -> bool:
    return slot.driver is None


def driving(slot: Slot) -> bool:
    return slot.driver is not None


def renewing(slot: Slot) -> bool:
    return slot.leases is not None and not slot.lost


def can_run(slot: Slot) -> bool:
    """Its driver may start a run: it has queued inputs and, not having
    given its runtime up, no run of its own left in flight."""
    return (
        slot.driver is not None
        and not slot.lost
        and bool(slot.driver.queued_input_ids(Lane.QUEUE))
    )


@dataclass
class ModelLease:
    owner: str | None = None
    epoch: int = 0
    expires_at: float = 0.0  # 0: released (or never claimed)


Visible = tuple[object, ...]


class OwnershipMachine(RuleBasedStateMachine):
    """Subclasses choose the store."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.wall = FakeClock()  # the store's: lease expiries
        self.mono = FakeClock()  # the owners': their local deadlines
        self.jumped = False  # the wall clock jumped ahead of the owners'
        self.store = self.open_store()
        self.store.lease_clock = self.wall  # type: ignore[attr-defined]
        self.slots = {name: Slot(name) for name in ("A", "B")}
        self.lease = ModelLease()
        self.acked: set[str] = set()
        self.refused = 0  # writes refused: the machine's own count
        self.owners: list[OwnerLeases] = []  # every one made, to stop at the end

    def open_store(self) -> RuntimeStore:
        raise NotImplementedError

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def visible(self) -> Visible:
        """Everything of the runtime a reader sees."""
        states = self.wait(self.store.load_input_states(RID))
        receipts = self.wait(self.store.load_boundary_receipts(RID))
        return (
            sorted(
                (str(s.input_id), s.current_state(), len(s.history())) for s in states
            ),
            sorted((str(r.run_id), r.sequence) for r in receipts),
            self.wait(self.store.load_runtime_state(RID)),
        )

    def pick(self, data: st.DataObject, wanted: Callable[[Slot], bool]) -> str:
        """One of the owners ``wanted`` holds for (the rule's precondition
        made sure there is one)."""
        names = [name for name, slot in self.slots.items() if wanted(slot)]
        return data.draw(st.sampled_from(names), label="owner")

    def current(self, slot: Slot) -> bool:
        """Whether ``slot``'s next write must go through."""
        return slot.trusts(self.mono.now) and slot.epoch == self.lease.epoch

    def any_slot(self, wanted: Callable[[Slot], bool]) -> bool:
        return any(wanted(slot) for slot in self.slots.values())

    def refusal(
        self, call: Coroutine[Any, Any, object], *kinds: type[Exception]
    ) -> Exception | None:
        """What of ``kinds`` the call raised; None when it went through."""
        try:
            self.wait(call)
        except kinds as error:
            return error
        return None

    def write(
        self,
        slot: Slot,
        before: Visible,
        call: Coroutine[Any, Any, object],
        expected: bool,
    ) -> bool:
        """Run an owner's write; whether it went through, which must be
        ``expected``. A refused write is fenced (by the store, or by the
        owner itself past its deadline), leaves nothing behind, and the
        owner has given its runtime up."""
        error = self.refusal(call, InternalError, FencedError)
        if error is None:
            assert expected, f"{slot.name} wrote under a lease it no longer holds"
            return True
        assert not expected, error
        fenced = error.store_error if isinstance(error, InternalError) else error
        assert isinstance(fenced, FencedError), error
        assert self.visible() == before, "a refused write left something behind"
        assert slot.lost, "a refused owner did not give its runtime up"
        self.refused += 1
        return False

    # ---------------------------------------------------------------- rules

    @precondition(lambda self: self.any_slot(idle))
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        self.claim_as(self.pick(data, idle))

    def claim_as(self, name: str) -> None:
        slot = self.slots[name]
        now, lease = self.wall.now, self.lease
        free = lease.owner in (None, name) or lease.expires_at <= now
        leases = OwnerLeases(
            self.store, name, lambda _, why: slot.lost.append(why), clock=self.mono
        )
        self.owners.append(leases)
        driver = PersistentRuntimeDriver(
            RID, self.store, MemoryBlobStore(), ownership=leases
        )
        refused = self.refusal(driver.recover(), RuntimeOwnedError)
        if not free:
            assert isinstance(refused, RuntimeOwnedError), f"{name} took a held lease"
            assert (refused.owner, refused.expires_at) == (
                lease.owner,
                lease.expires_at,
            )
            return
        assert refused is None, refused
        assert driver.lease is not None
        self.lease = ModelLease(name, lease.epoch + 1, now + TTL)
        assert driver.lease.epoch == self.lease.epoch
        slot.driver, slot.leases, slot.epoch = driver, leases, self.lease.epoch
        slot.deadline, slot.lost = self.mono.now + TRUSTED, []
        # It recovered every acknowledged input not yet consumed.
        known = {str(i) for i in driver.active_input_ids()}
        assert self.unfinished() <= known

    @precondition(lambda self: self.any_slot(driving))
    @rule(data=st.data())
    def accept(self, data: st.DataObject) -> None:
        name = self.pick(data, driving)
        slot = self.slots[name]
        assert slot.driver is not None
        expected, before = self.current(slot), self.visible()
        prompt = PromptInput(header=InputHeader.new(), text=f"from {name}")
        if self.write(slot, before, slot.driver.accept_input(prompt), expected):
            self.acked.add(str(prompt.id()))

    @precondition(lambda self: self.any_slot(can_run))
    @rule(data=st.data())
    def run(self, data: st.DataObject) -> None:
        """One run of up to three queued inputs, as an executor would."""
        slot = self.slots[self.pick(data, can_run)]
        driver = slot.driver
        assert driver is not None
        batch = driver.queued_input_ids(Lane.QUEUE)[:3]
        expected, before = self.current(slot), self.visible()
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_batch(batch, run_id)
        receipt = receipt_for(run_id, batch)
        boundary = RunEvent.BoundaryApplied(run_id=run_id, receipt=receipt)
        if self.write(slot, before, driver.on_run_event(boundary), expected):
            done = RunEvent.RunCompleted(run_id=run_id, consumed_input_ids=batch)
            self.wait(driver.on_run_event(done))

    @precondition(lambda self: self.any_slot(renewing))
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        name = self.pick(data, renewing)
        slot = self.slots[name]
        assert slot.leases is not None
        self.wait(slot.leases.renew_once())
        if self.mono.now >= slot.deadline or slot.epoch != self.lease.epoch:
            assert slot.lost, f"{name} kept a lease it could not renew"
            return
        assert not slot.lost, slot.lost
        # Expired or not, nobody took over: the lease is extended.
        self.lease.expires_at = self.wall.now + TTL
        slot.deadline = self.mono.now + TRUSTED

    @precondition(lambda self: self.any_slot(driving))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        name = self.pick(data, driving)
        slot = self.slots[name]
        assert slot.leases is not None
        self.wait(slot.leases.release(RID))
        stop_renewing(slot.leases)
        if not slot.lost and slot.epoch == self.lease.epoch:
            self.lease.expires_at = 0.0
        self.slots[name] = Slot(name)

    @precondition(lambda self: self.any_slot(driving))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The process dies: no release, its lease runs out on its own."""
        name = self.pick(data, driving)
        leases = self.slots[name].leases
        assert leases is not None
        stop_renewing(leases)
        self.slots[name] = Slot(name)

    @rule(fraction=st.sampled_from([0.3, 0.6]))
    def time_passes(self, fraction: float) -> None:
        self.wall.now += TTL * fraction
        self.mono.now += TTL * fraction

    @rule()
    def every_lease_runs_out(self) -> None:
        self.wall.now += TTL
        self.mono.now += TTL

    @rule()
    def the_wall_clock_jumps_ahead(self) -> None:
        """PD-37's unsafe case for the clock: the store sees every lease
        expired while its owner still trusts it. A takeover may come early;
        the old owner's writes must then be fenced by the store."""
        self.wall.now += TTL
        self.jumped = True

    @precondition(lambda self: self.lease.epoch >= 2)
    @rule(data=st.data())
    def write_under_an_old_epoch(self, data: st.DataObject) -> None:
        """A stale owner's write that skips every check of its own."""
        epoch = data.draw(st.integers(1, self.lease.epoch - 1), label="epoch")
        before = self.visible()
        with pytest.raises(FencedError):
            self.wait(
                self.store.fenced(RID, epoch).persist_input_state(RID, rich_state(1))
            )
        assert self.visible() == before
        self.refused += 1

    # ---------------------------------------------------------------- invariants

    @invariant()
    def the_store_holds_the_model_lease(self) -> None:
        stored = self.wait(self.store.load_leases())
        if self.lease.owner is None:
            assert stored == []
            return
        (lease,) = stored
        assert (lease.owner, lease.epoch, lease.expires_at) == (
            self.lease.owner,
            self.lease.epoch,
            self.lease.expires_at,
        )

    @invariant()
    def at_most_one_owner_trusts_its_lease(self) -> None:
        """While the clocks agree (PD-37). After a jump two may trust their
        lease; the rules check that only the current epoch's writes pass."""
        if self.jumped:
            return
        trusting = [s for s in self.slots.values() if s.trusts(self.mono.now)]
        assert len(trusting) <= 1, [s.name for s in trusting]
        for slot in trusting:
            assert slot.epoch == self.lease.epoch
            assert self.lease.expires_at > self.wall.now

    @invariant()
    def no_input_applied_twice_and_none_acknowledged_lost(self) -> None:
        states = self.wait(self.store.load_input_states(RID))
        receipts = self.wait(self.store.load_boundary_receipts(RID))
        named = Counter(str(i) for r in receipts for i in r.contributing_input_ids)
        assert all(count == 1 for count in named.values()), named
        phases = {str(s.input_id): s.current_state() for s in states}
        assert self.acked <= set(phases), "an acknowledged input is lost"
        for input_id, phase in phases.items():
            if phase is InputLifecycleState.CONSUMED:
                assert named[input_id] == 1, input_id

    def unfinished(self) -> set[str]:
        states = self.wait(self.store.load_input_states(RID))
        return {str(s.input_id) for s in states if not s.is_terminal()} & self.acked

    def teardown(self) -> None:
        try:
            self.every_lease_runs_out()
            self.slots["C"] = Slot("C")
            self.claim_as("C")  # recovers every unfinished acknowledged input
            assert self.slots["C"].driver is not None
        finally:
            for leases in self.owners:
                stop_renewing(leases)
            self.wait(asyncio.sleep(0))  # the cancelled renewers end
            self.wait(self.store.close())
            self.loop.close()


def stop_renewing(leases: OwnerLeases) -> None:
    """What a crash does to the renewer (the machine renews by rule)."""
    renewer = leases._renewer  # the machine plays the process
    if renewer is not None:
        renewer.cancel()


class MemoryOwnershipMachine(OwnershipMachine):
    def open_store(self) -> RuntimeStore:
        return InMemoryRuntimeStore(lease_ttl=TTL)


class SqliteOwnershipMachine(OwnershipMachine):
    """Both owners write to one file through one store object, as two
    processes' stores would through the file's lease table."""

    def open_store(self) -> RuntimeStore:
        self.folder = tempfile.mkdtemp(prefix="meerkat-owners-")
        return SqliteRuntimeStore(f"{self.folder}/owners.db", lease_ttl=TTL)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


# Each step reads the whole runtime back several times: a fifth of the
# profile's examples keeps CI's time (``make fuzz`` runs 300 each).
SMALL = settings(max_examples=max(settings().max_examples // 5, 20))
TestMemoryOwnership = MemoryOwnershipMachine.TestCase
TestMemoryOwnership.settings = SMALL
TestSqliteOwnership = SqliteOwnershipMachine.TestCase
TestSqliteOwnership.settings = SMALL
