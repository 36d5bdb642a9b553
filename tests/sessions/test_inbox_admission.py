"""Submission from a process that does not own the runtime (PD-58 .. PD-61):
a submitter and an owner, each with its own store object on one SQLite file
(what two processes would hold), the owner's admission in arrival order,
exactly once across crashes, fenced when stale, and completions read back
from the store whoever owns the runtime by then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from meerkat_runtime import (
    InputLifecycleState,
    PersistentRuntimeDriver,
    RuntimeSessionAdapter,
    RuntimeSubmitter,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.errors import (
    FencedError,
    InternalError,
    NotReadyError,
    ValidationFailedError,
)
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.inputs import InputDurability, InputHeader, PromptInput
from meerkat_runtime.outcomes import (
    Accepted,
    Deduplicated,
    Rejected,
    RejectReason,
    Submitted,
)
from meerkat_runtime.policy import PolicyTable, QueueMode
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    CompletedWithoutResult,
    RuntimeTerminated,
)
from meerkat_runtime.sessions.loop import StoreBackoff
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.testing.conformance_ownership import FakeClock
from meerkat_runtime.testing.faults import Fault, FaultyStore, SimulatedCrash
from tests.sessions.executors import ToyExecutor
from tests.sessions.helpers import TIMEOUT, RoutingPolicyTable, event, prompt

S = SessionId("fleet")
R = LogicalRuntimeId(str(S))
FAST = StoreBackoff(initial=0.001, maximum=0.01)


def run(body: Callable[[Path], Awaitable[None]], tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(body(tmp_path / "fleet.db"), 20 * TIMEOUT))


def owner_adapter(
    store: RuntimeStore,
    owner: str = "owner",
    *,
    inbox_poll: float = 0.005,
    max_pending_inputs: int = 100,
    policy_table: PolicyTable | None = None,
) -> RuntimeSessionAdapter:
    return RuntimeSessionAdapter.persistent(
        store,
        MemoryBlobStore(),
        policy_table,
        owner=owner,
        retry_delay=0.001,
        inbox_poll=inbox_poll,
        max_pending_inputs=max_pending_inputs,
    )


# Long enough that the watcher never looks during a test: the test admits.
NO_WATCHING = 3600.0


async def states(db: Path) -> dict[str, InputLifecycleState]:
    async with SqliteRuntimeStore(db) as store:
        return {
            str(s.input_id): s.current_state() for s in await store.load_input_states(R)
        }


def test_submitted_inputs_run_in_arrival_order_and_complete(tmp_path: Path) -> None:
    async def body(db: Path) -> None:
        submitter = RuntimeSubmitter(SqliteRuntimeStore(db), poll=FAST)
        inputs = [prompt(f"m{i}") for i in range(4)]
        handles = []
        for inp in inputs:
            outcome, handle = await submitter.submit_with_completion(S, inp)
            assert outcome == Submitted(input_id=inp.id())
            assert handle is not None
            handles.append(handle)
        store = SqliteRuntimeStore(db)
        owner, executor = owner_adapter(store), ToyExecutor()
        await owner.register_session_with_executor(S, executor)
        outcomes = await asyncio.gather(*(h.wait() for h in handles))
        assert outcomes == [CompletedWithoutResult()] * 4
        assert executor.applied_ids() == [inp.id() for inp in inputs]
        assert await store.load_inbox(R) == []
        assert await store.list_runtimes_with_inbox() == []
        await owner.close()
        await store.close()
        await submitter.close()
        await submitter.store.close()
        assert set((await states(db)).values()) == {InputLifecycleState.CONSUMED}

    run(body, tmp_path)


def test_the_watcher_admits_what_is_submitted_while_the_owner_runs(
    tmp_path: Path,
) -> None:
    async def body(db: Path) -> None:
        store = SqliteRuntimeStore(db)
        owner, executor = owner_adapter(store), ToyExecutor()
        await owner.register_session_with_executor(S, executor)
        async with SqliteRuntimeStore(db) as other:
            submitter = RuntimeSubmitter(other, poll=FAST)
            _, handle = await submitter.submit_with_completion(S, prompt("late"))
            assert handle is not None
            assert await handle.wait() == CompletedWithoutResult()
            await submitter.close()
        assert len(executor.calls) == 1
        await owner.close()
        await store.close()

    run(body, tmp_path)


def test_keys_are_deduplicated_across_the_inbox_and_the_ledger(tmp_path: Path) -> None:
    async def body(db: Path) -> None:
        store = SqliteRuntimeStore(db)
        owner = owner_adapter(store, inbox_poll=NO_WATCHING)
        await owner.register_session(S)
        direct = await owner.accept_input(S, prompt("direct", key="k"))
        assert isinstance(direct, Accepted)
        async with SqliteRuntimeStore(db) as other:
            submitter = RuntimeSubmitter(other)
            again = prompt("again", key="k")
            assert await submitter.submit(S, again) == Deduplicated(
                input_id=again.id(), existing_id=direct.input_id
            )
            first, second = prompt("one", key="j"), prompt("two", key="j")
            assert isinstance(await submitter.submit(S, first), Submitted)
            assert await submitter.submit(S, second) == Deduplicated(
                input_id=second.id(), existing_id=first.id()
            )
            # Admitted, the key is the ledger's: still the same answer.
            assert await owner.admit_inbox(S) == 1
            assert await submitter.submit(S, second) == Deduplicated(
                input_id=second.id(), existing_id=first.id()
            )
        assert await owner.list_active_inputs(S) == [direct.input_id, first.id()]
        await owner.close()
        await store.close()

    run(body, tmp_path)


def test_a_key_accepted_directly_meanwhile_settles_the_entry_into_it(
    tmp_path: Path,
) -> None:
    """The entry's waiter follows the input its key went to."""

    async def body(db: Path) -> None:
        store = SqliteRuntimeStore(db)
        owner = owner_adapter(store, inbox_poll=NO_WATCHING)
        await owner.register_session(S)
        async with SqliteRuntimeStore(db) as other:
            submitter = RuntimeSubmitter(other, poll=FAST)
            submitted, handle = await submitter.submit_with_completion(
                S, prompt("via inbox", key="k")
            )
            direct = await owner.accept_input(S, prompt("direct", key="k"))
            assert isinstance(direct, Accepted)
            assert await owner.admit_inbox(S) == 1
            entry = await store.load_inbox_entry(R, submitted.input_id)  # type: ignore[attr-defined]
            assert entry is not None
            assert entry.settlement is not None
            assert entry.settlement.deduplicated_into == direct.input_id
            await owner.register_session_with_executor(S, ToyExecutor())
            assert handle is not None
            assert await handle.wait() == CompletedWithoutResult()
            await submitter.close()
        assert await owner.list_active_inputs(S) == []
        await owner.close()
        await store.close()

    run(body, tmp_path)


def test_an_id_accepted_directly_meanwhile_settles_the_entry_into_itself(
    tmp_path: Path,
) -> None:
    """The same input (one id) sent both ways: it runs once, and the
    submitter's waiter is answered when it does."""

    async def body(db: Path) -> None:
        store = SqliteRuntimeStore(db)
        owner = owner_adapter(store, inbox_poll=NO_WATCHING)
        await owner.register_session(S)
        async with SqliteRuntimeStore(db) as other:
            submitter = RuntimeSubmitter(other, poll=FAST)
            both_ways = prompt("twice")
            _, handle = await submitter.submit_with_completion(S, both_ways)
            assert isinstance(await owner.accept_input(S, both_ways), Accepted)
            assert await owner.admit_inbox(S) == 1
            executor = ToyExecutor()
            await owner.register_session_with_executor(S, executor)
            assert handle is not None
            assert await handle.wait() == CompletedWithoutResult()
            assert executor.applied_ids() == [both_ways.id()]
            await submitter.close()
        await owner.close()
        await store.close()

    run(body, tmp_path)


def test_a_runtime_that_refuses_input_answers_the_submitter(tmp_path: Path) -> None:
    async def body(db: Path) -> None:
        store = SqliteRuntimeStore(db)
        owner = owner_adapter(store, inbox_poll=NO_WATCHING)
        await owner.register_session(S)
        async with SqliteRuntimeStore(db) as other:
            submitter = RuntimeSubmitter(other, poll=FAST)
            # Submitted while it accepted, refused by the time it is admitted.
            _, handle = await submitter.submit_with_completion(S, prompt())
            await owner.retire_runtime(S)
            late = prompt()  # PD-73: refused at once, nothing stored
            refused = Rejected(reason=RejectReason.NotReady(state=RuntimeState.RETIRED))
            assert await submitter.submit(S, late) == refused
            with pytest.raises(NotReadyError, match="retired"):  # as an accept
                await submitter.submit_with_completion(S, late)
            assert await owner.admit_inbox(S) == 1
            assert handle is not None
            outcome = await handle.wait()
            assert isinstance(outcome, RuntimeTerminated)
            assert "retired" in outcome.reason
            await submitter.close()
        assert await store.list_runtimes_with_inbox() == []
        await owner.close()
        await store.close()

    run(body, tmp_path)


@pytest.mark.parametrize("mode", [QueueMode.SUPERSEDE, QueueMode.COALESCE])
def test_replacement_reaches_the_submitters_waiter(
    tmp_path: Path, mode: QueueMode
) -> None:
    """Decisions 1 and 19 across processes: the older entry is replaced at
    admission; its waiter hears "superseded", or follows the aggregate."""

    async def body(db: Path) -> None:
        async with SqliteRuntimeStore(db) as other:
            submitter = RuntimeSubmitter(other, poll=FAST)
            old, new = event("a", supersession="s"), event("b", supersession="s")
            _, older = await submitter.submit_with_completion(S, old)
            _, newer = await submitter.submit_with_completion(S, new)
            store = SqliteRuntimeStore(db)
            owner = owner_adapter(store, policy_table=RoutingPolicyTable(mode))
            executor = ToyExecutor()
            await owner.register_session_with_executor(S, executor)
            assert older is not None
            assert newer is not None
            expected = (
                AbandonedOutcome(reason="superseded")
                if mode is QueueMode.SUPERSEDE
                else CompletedWithoutResult()
            )
            assert await older.wait() == expected
            assert await newer.wait() == CompletedWithoutResult()
            assert executor.applied_ids() == [new.id()]
            await submitter.close()
            await owner.close()
            await store.close()

    run(body, tmp_path)


def test_bad_input_is_refused_by_the_submitter_leaving_nothing(tmp_path: Path) -> None:
    async def body(db: Path) -> None:
        async with SqliteRuntimeStore(db) as store:
            submitter = RuntimeSubmitter(store)
            bad = PromptInput(header=InputHeader.new(), text=["not", "text"])  # type: ignore[arg-type]
            with pytest.raises(ValidationFailedError, match="text"):
                await submitter.submit_with_completion(S, bad)
            derived = PromptInput(
                header=InputHeader.new(durability=InputDurability.DERIVED), text="x"
            )
            assert isinstance(await submitter.submit(S, derived), Rejected)
            with pytest.raises(ValidationFailedError, match="derived"):
                await submitter.submit_with_completion(S, derived)
            assert await store.list_runtimes_with_inbox() == []
            assert await store.load_inbox(R) == []

    run(body, tmp_path)


def test_the_pending_limit_leaves_the_rest_in_the_inbox(tmp_path: Path) -> None:
    async def body(db: Path) -> None:
        store = SqliteRuntimeStore(db)
        inputs = [prompt(f"m{i}") for i in range(3)]
        for inp in inputs:
            await store.submit_to_inbox(R, inp)
        owner = owner_adapter(store, max_pending_inputs=2)
        await owner.register_session(S)  # admits on registration
        assert await owner.list_active_inputs(S) == [i.id() for i in inputs[:2]]
        assert [e.input_id for e in await store.load_inbox(R)] == [inputs[2].id()]
        await owner.close()
        await store.close()

    run(body, tmp_path)


@pytest.mark.parametrize(
    "fault", [Fault.CRASH_BEFORE, Fault.CRASH_MID_COMMIT, Fault.CRASH_AFTER]
)
def test_an_owner_crash_during_admission_admits_exactly_once(
    tmp_path: Path, fault: Fault
) -> None:
    async def body(db: Path) -> None:
        inputs = [prompt(f"m{i}") for i in range(3)]
        async with SqliteRuntimeStore(db) as other:
            for inp in inputs:
                await other.submit_to_inbox(R, inp)
        crashed = FaultyStore(SqliteRuntimeStore(db))
        driver = PersistentRuntimeDriver(R, crashed, MemoryBlobStore())
        await driver.recover()
        crashed.arm(fault, "admit_from_inbox")
        with pytest.raises(SimulatedCrash):
            await driver.admit_from_inbox()
        await crashed.close()
        async with SqliteRuntimeStore(db) as store:  # the restarted owner
            again = PersistentRuntimeDriver(R, store, MemoryBlobStore())
            await again.recover()
            committed = fault is Fault.CRASH_AFTER
            assert await again.admit_from_inbox() == (0 if committed else 3)
            assert again.active_input_ids() == [i.id() for i in inputs]
            assert await store.load_inbox(R) == []
            loaded = await store.load_input_states(R)
            assert [s.input_id for s in loaded] == [i.id() for i in inputs]

    run(body, tmp_path)


def test_a_refused_admission_leaves_memory_and_store_as_they_were(
    tmp_path: Path,
) -> None:
    async def body(db: Path) -> None:
        store = FaultyStore(SqliteRuntimeStore(db))
        await store.submit_to_inbox(R, prompt())
        driver = PersistentRuntimeDriver(R, store, MemoryBlobStore())
        await driver.recover()
        before = driver.observe()
        store.arm(Fault.FAIL, "admit_from_inbox")
        with pytest.raises(InternalError, match="inbox admission failed"):
            await driver.admit_from_inbox()
        assert driver.observe() == before
        assert len(await store.load_inbox(R)) == 1
        assert await driver.admit_from_inbox() == 1
        await store.close()

    run(body, tmp_path)


def test_a_stale_owners_admission_is_fenced_and_leaves_nothing(tmp_path: Path) -> None:
    async def body(db: Path) -> None:
        clock = FakeClock()
        stale_store, new_store = SqliteRuntimeStore(db), SqliteRuntimeStore(db)
        stale_store.lease_clock = new_store.lease_clock = clock
        stale = owner_adapter(stale_store, "stale", inbox_poll=NO_WATCHING)
        await stale.register_session(S)
        clock.now += 2 * stale_store.lease_ttl  # its lease ran out unrenewed
        successor = owner_adapter(new_store, "successor", inbox_poll=NO_WATCHING)
        await successor.register_session(S)
        submitted = prompt()
        await new_store.submit_to_inbox(R, submitted)
        with pytest.raises(InternalError, match="inbox admission failed") as fenced:
            await stale.sessions[S].driver.admit_from_inbox()  # type: ignore[attr-defined]
        assert isinstance(fenced.value.store_error, FencedError)
        assert [e.input_id for e in await new_store.load_inbox(R)] == [submitted.id()]
        assert await new_store.load_input_state(R, submitted.id()) is None
        assert await successor.admit_inbox(S) == 1
        for adapter, store in ((stale, stale_store), (successor, new_store)):
            await adapter.close()
            await store.close()

    run(body, tmp_path)


def test_a_completion_survives_an_owner_change(tmp_path: Path) -> None:
    """Admitted by one owner, run by the next: the submitter's handle is
    answered once, from the store."""

    async def body(db: Path) -> None:
        async with SqliteRuntimeStore(db) as other:
            submitter = RuntimeSubmitter(other, poll=FAST)
            _, handle = await submitter.submit_with_completion(S, prompt())
            assert handle is not None
            first_store = SqliteRuntimeStore(db)
            first = owner_adapter(first_store, "first", inbox_poll=NO_WATCHING)
            await first.register_session(S)  # admits, has no executor
            assert len(await first.list_active_inputs(S)) == 1
            await first.unregister_session(S)
            assert not handle.done()
            second_store = SqliteRuntimeStore(db)
            second = owner_adapter(second_store, "second")
            await second.register_session_with_executor(S, ToyExecutor())
            assert await handle.wait() == CompletedWithoutResult()
            assert await submitter.completion_for(S, handle.input_id) is None
            await submitter.close()
            for adapter, store in ((first, first_store), (second, second_store)):
                await adapter.close()
                await store.close()

    run(body, tmp_path)


def test_closing_the_submitter_answers_its_open_handles(tmp_path: Path) -> None:
    async def body(db: Path) -> None:
        async with SqliteRuntimeStore(db) as store:
            submitter = RuntimeSubmitter(store, poll=FAST)
            _, handle = await submitter.submit_with_completion(S, prompt())
            assert handle is not None
            await submitter.close()
            outcome = await handle.wait()
            assert isinstance(outcome, RuntimeTerminated)
            assert "submitter closed" in outcome.reason
            # As a closed adapter refuses an accept: not ready, saying why.
            for call in (submitter.submit, submitter.submit_with_completion):
                with pytest.raises(NotReadyError, match="runtime submitter is closed"):
                    await call(S, prompt())

    run(body, tmp_path)
