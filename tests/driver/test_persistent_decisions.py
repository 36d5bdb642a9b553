"""Persistent driver beyond the ported seed suite (tests/driver/test_driver_persistent.py): the port decisions 5, 13, 14, 16, 18, 22, 23, 24 and restarts.

Rule ids: D-5 (durable before ack), D-6 (boundary commit), D-7 .. D-9 (terminal
events and control ops), D-11 (recovery), D-13 (recycle), Z-7 / Z-8 (restart
scenarios), T-15 / T-20 (keys and images across restarts), and the port
decisions 4, 5, 7, 12, 13, 14, 16, 18, 22, 23 and 24 of docs/behaviour.md section 13.

A "restart" is a new driver on the same store followed by ``recover()``; for
SQLite it also opens a new store object on the same file while the old one is
left as it was (a crash, not a clean shutdown).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from meerkat_runtime import (
    IdempotencyKey,
    InputAbandonReason,
    InputDurability,
    InputHeader,
    InputId,
    InputLifecycleInput,
    InputLifecycleState,
    InputState,
    InputTerminalOutcome,
    LogicalRuntimeId,
    PolicySnapshot,
    PromptInput,
    QueueMode,
    RecoveryReport,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunId,
    RuntimeControlCommand,
    RuntimeDriverError,
    RuntimeState,
    SupersessionKey,
    codec,
)
from meerkat_runtime.blobs import (
    BlobRef,
    BlobStore,
    BlobStoreError,
    FileBlobStore,
    MemoryBlobStore,
)
from meerkat_runtime.driver.ephemeral import DriverObservation
from meerkat_runtime.driver.images import hydrate_images
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleInput as _LcInput
from meerkat_runtime.generated.policy_table import PolicyDecision
from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.inputs import (
    AnyContentBlock,
    BlobImage,
    ImageBlock,
    InlineImage,
    RuntimeTurnMetadata,
    TextBlock,
)
from meerkat_runtime.policy import DefaultPolicyTable, PolicySubject, PolicyTable
from meerkat_runtime.runs import (
    BoundaryApplied,
    RunCancelled,
    RunCompleted,
    RunFailed,
)
from meerkat_runtime.store import (
    InMemoryRuntimeStore,
    RuntimeStore,
    SessionDelta,
    SqliteRuntimeStore,
)
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.store.records import INPUTS, RECEIPTS, SNAPSHOTS, STATES

RID = LogicalRuntimeId("persistent-driver-test")
TABLES = (INPUTS, RECEIPTS, STATES, SNAPSHOTS)
_S = InputLifecycleState

RawStore = InMemoryRuntimeStore | SqliteRuntimeStore
Snapshot = tuple[DriverObservation, bytes]


# ---------------------------------------------------------------- backends


class Backend:
    """Opens the store under test. Memory: one store object for the whole test
    (a restart keeps it); SQLite: every ``open`` is a new object on the same
    file, as a restarted process would make."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._opened: list[RawStore] = []

    def open(self) -> RawStore:
        if self.kind == "memory":
            if not self._opened:
                self._opened.append(InMemoryRuntimeStore())
            return self._opened[0]
        store = SqliteRuntimeStore(self.path)
        self._opened.append(store)
        return store

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(str(request.param), tmp_path / "runtime.db")


def run(backend: Backend, body: Callable[[Backend], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await body(backend)
        finally:
            await backend.close()

    asyncio.run(main())


class FaultyStore(RuntimeStore):
    """Delegates to ``inner``; each method named in ``fail`` raises instead
    (``WriteFailed`` for writes, ``ReadFailed`` for reads) before touching the
    inner store. ``calls`` logs every method called."""

    def __init__(self, inner: RawStore) -> None:
        self.inner = inner
        self.fail: set[str] = set()
        self.calls: list[str] = []

    def _enter(self, name: str, *, write: bool) -> None:
        self.calls.append(name)
        if name in self.fail:
            error = (
                RuntimeStoreError.WriteFailed if write else RuntimeStoreError.ReadFailed
            )
            raise error(message_for(name))

    async def commit_session_boundary(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta,
        run_id: RunId,
        boundary: RunApplyBoundary,
        contributing_input_ids: Sequence[InputId],
        input_updates: Sequence[InputState],
    ) -> RunBoundaryReceipt:
        self._enter("commit_session_boundary", write=True)
        return await self.inner.commit_session_boundary(
            runtime_id,
            session_delta,
            run_id,
            boundary,
            contributing_input_ids,
            input_updates,
        )

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        self._enter("atomic_apply", write=True)
        await self.inner.atomic_apply(
            runtime_id, session_delta, receipt, input_updates, session_store_key
        )

    async def load_input_states(self, runtime_id: LogicalRuntimeId) -> list[InputState]:
        self._enter("load_input_states", write=False)
        return await self.inner.load_input_states(runtime_id)

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        self._enter("load_boundary_receipt", write=False)
        return await self.inner.load_boundary_receipt(runtime_id, run_id, sequence)

    async def load_session_snapshot(self, runtime_id: LogicalRuntimeId) -> bytes | None:
        self._enter("load_session_snapshot", write=False)
        return await self.inner.load_session_snapshot(runtime_id)

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        self._enter("persist_input_state", write=True)
        await self.inner.persist_input_state(runtime_id, state)

    async def load_input_state(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InputState | None:
        self._enter("load_input_state", write=False)
        return await self.inner.load_input_state(runtime_id, input_id)

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        self._enter("persist_runtime_state", write=True)
        await self.inner.persist_runtime_state(runtime_id, state)

    async def load_runtime_state(
        self, runtime_id: LogicalRuntimeId
    ) -> RuntimeState | None:
        self._enter("load_runtime_state", write=False)
        return await self.inner.load_runtime_state(runtime_id)

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        self._enter("atomic_lifecycle_commit", write=True)
        await self.inner.atomic_lifecycle_commit(
            runtime_id, runtime_state, input_states
        )


def message_for(method: str) -> str:
    return f"injected {method} failure"


# ---------------------------------------------------------------- builders


def prompt(
    text: str = "hello",
    *,
    key: str | None = None,
    scope: str | None = None,
    durability: InputDurability = InputDurability.DURABLE,
    steer: bool = False,
    blocks: list[AnyContentBlock] | None = None,
) -> PromptInput:
    header = InputHeader.new(
        durability=durability,
        idempotency_key=IdempotencyKey(key) if key is not None else None,
        supersession_key=SupersessionKey(scope) if scope is not None else None,
    )
    metadata = RuntimeTurnMetadata(handling_mode=HandlingMode.STEER) if steer else None
    return PromptInput(header=header, text=text, blocks=blocks, turn_metadata=metadata)


def image_prompt(raw: bytes) -> PromptInput:
    blocks: list[AnyContentBlock] = [
        TextBlock(text="look"),
        ImageBlock(
            media_type="image/png",
            data=InlineImage(data=base64.b64encode(raw).decode("ascii")),
        ),
    ]
    return prompt("look at this", blocks=blocks)


def receipt(
    run_id: RunId, ids: Sequence[InputId], sequence: int = 0
) -> RunBoundaryReceipt:
    return RunBoundaryReceipt(
        run_id=run_id,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=list(ids),
        message_count=len(ids),
        sequence=sequence,
    )


def boundary(
    run_id: RunId, ids: Sequence[InputId], sequence: int = 0
) -> BoundaryApplied:
    return BoundaryApplied(
        run_id=run_id,
        receipt=receipt(run_id, ids, sequence),
        session_snapshot=b'{"messages": [1]}',
    )


def stored_state(inp: PromptInput, steps: Sequence[_LcInput]) -> InputState:
    """A record as an earlier process would have written it."""
    state = InputState.new_accepted(inp.id())
    state.persisted_input = inp
    state.durability = inp.header.durability
    state.idempotency_key = inp.header.idempotency_key
    decision = DefaultPolicyTable().resolve(inp, True)
    state.policy = PolicySnapshot(version=decision.policy_version, decision=decision)
    for step in steps:
        state.apply(step)
    return state


def applied_steps(run_id: RunId, attempts: int = 1) -> list[_LcInput]:
    """queued -> (staged -> rolled back) * (attempts - 1) -> staged -> applied
    pending consumption at boundary 0."""
    steps: list[_LcInput] = [InputLifecycleInput.QueueAccepted()]
    for _ in range(attempts - 1):
        steps += [
            InputLifecycleInput.StageForRun(run_id=RunId.new()),
            InputLifecycleInput.RollbackStaged(),
        ]
    steps += [
        InputLifecycleInput.StageForRun(run_id=run_id),
        InputLifecycleInput.MarkApplied(run_id=run_id),
        InputLifecycleInput.MarkAppliedPendingConsumption(boundary_sequence=0),
    ]
    return steps


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """The default table with some kinds' ``queue_mode`` replaced (decision 20)."""

    routes: dict[str, QueueMode]

    def resolve(self, input: PolicySubject, runtime_idle: bool) -> PolicyDecision:
        decision = DefaultPolicyTable().resolve(input, runtime_idle)
        mode = self.routes.get(input.kind_id())
        if mode is None:
            return decision
        return msgspec.structs.replace(decision, queue_mode=mode)


def new_driver(
    store: RuntimeStore,
    blobs: BlobStore | None = None,
    table: PolicyTable | None = None,
) -> PersistentRuntimeDriver:
    return PersistentRuntimeDriver(
        RID, store, blobs or MemoryBlobStore(), policy_table=table
    )


async def restart(
    backend: Backend, blobs: BlobStore | None = None
) -> tuple[PersistentRuntimeDriver, RecoveryReport, RawStore]:
    store = backend.open()
    driver = new_driver(store, blobs)
    report = await driver.recover()
    return driver, report, store


async def accepted(driver: PersistentRuntimeDriver, *inputs: PromptInput) -> None:
    for inp in inputs:
        outcome = await driver.accept_input(inp)
        assert outcome.is_accepted(), outcome


async def staged_alone(
    driver: PersistentRuntimeDriver, first: PromptInput, *more: PromptInput
) -> RunId:
    """Accept ``first`` (then ``more``), start a run and stage ``first``
    alone in it (staging writes nothing, D-2); the run's id."""
    await accepted(driver, first, *more)
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_input(first.id(), run_id)
    return run_id


# ---------------------------------------------------------------- observing


def everything(driver: PersistentRuntimeDriver) -> Snapshot:
    """``observe()`` and a JSON dump of every input state."""
    observation = driver.observe()
    states = [driver.input_state(r.input_id) for r in observation.inputs]
    return observation, codec.encode([s.to_record() for s in states if s is not None])


def raw(store: RawStore) -> dict[str, dict[str, bytes]]:
    return {table: store.raw_rows(table, RID) for table in TABLES}


async def stored(store: RuntimeStore, input_id: InputId) -> InputState:
    state = await store.load_input_state(RID, input_id)
    assert state is not None, f"no stored record for {input_id}"
    return state


async def assert_store_matches_memory(
    driver: PersistentRuntimeDriver, store: RuntimeStore
) -> None:
    """Decision 14's other half: after a successful operation the store holds
    exactly what memory holds for every durable input (staged inputs excepted:
    staging itself writes nothing, D-2; the next lifecycle commit does)."""
    on_disk = {s.input_id: s.to_record() for s in await store.load_input_states(RID)}
    for record in driver.observe().inputs:
        if record.durability is InputDurability.EPHEMERAL:
            assert record.input_id not in on_disk
        elif record.current_state is not _S.STAGED:
            assert on_disk.get(record.input_id) == record, record.input_id


# ================================================================ decision 14

Call = Callable[[], Awaitable[object]]
Prepare = Callable[[FaultyStore], Awaitable[tuple[PersistentRuntimeDriver, Call]]]


async def _prep_accept(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("earlier", key="k-earlier"))
    inp = prompt("new", key="k-new")
    return driver, lambda: driver.accept_input(inp)


async def _running(
    store: FaultyStore, count: int, staged: int = 1
) -> tuple[PersistentRuntimeDriver, RunId, list[InputId]]:
    """A driver with ``count`` accepted prompts, the first ``staged`` staged
    for a current run."""
    driver = new_driver(store)
    inputs = [prompt(f"p{i}") for i in range(count)]
    await accepted(driver, *inputs)
    ids = [i.id() for i in inputs]
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_batch(ids[:staged], run_id)
    return driver, run_id, ids


async def _prep_boundary(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, ids = await _running(store, 2)
    event = boundary(run_id, ids[:1])
    return driver, lambda: driver.on_run_event(event)


async def _prep_completed(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, ids = await _running(store, 2)
    await driver.on_run_event(boundary(run_id, ids[:1]))
    event = RunCompleted(run_id=run_id, consumed_input_ids=ids[:1])
    return driver, lambda: driver.on_run_event(event)


async def _prep_failed(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, _ = await _running(store, 3, staged=2)
    event = RunFailed(run_id=run_id, error="boom", recoverable=True)
    return driver, lambda: driver.on_run_event(event)


async def _prep_cancelled(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, _ = await _running(store, 2)
    event = RunCancelled(run_id=run_id)
    return driver, lambda: driver.on_run_event(event)


async def _prep_withdraw(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, run_id, _ = await _running(store, 3, staged=2)
    return driver, lambda: driver.withdraw_run(run_id)


async def _prep_retire(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, _, _ = await _running(store, 2)
    return driver, driver.retire


async def _prep_reset(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("a", key="k-a"), prompt("b"))
    return driver, driver.reset


async def _prep_destroy(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("a", key="k-a"), prompt("b"))
    return driver, driver.destroy


async def _prep_stop(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, _, _ = await _running(store, 2)
    return driver, lambda: driver.on_runtime_control(RuntimeControlCommand.STOP)


async def _prep_recycle(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver = new_driver(store)
    await accepted(driver, prompt("a"), prompt("b"))
    await driver.retire()
    return driver, driver.recycle_preserving_work


async def _prep_abandon(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    driver, _, _ = await _running(store, 3)
    return driver, lambda: driver.abandon_pending_inputs(InputAbandonReason.Cancelled())


async def _prep_recover(store: FaultyStore) -> tuple[PersistentRuntimeDriver, Call]:
    """An earlier process left: one input applied with its receipt, one
    staged (stored as queued), one queued, and a retired runtime."""
    earlier, run_id, ids = await _running(store, 3)
    await earlier.on_run_event(boundary(run_id, ids[:1]))
    await earlier.retire()
    driver = new_driver(store)
    return driver, driver.recover


async def _prep_recover_after_accept(
    store: FaultyStore,
) -> tuple[PersistentRuntimeDriver, Call]:
    """As ``_prep_recover``, but the new driver already holds an input."""
    driver, call = await _prep_recover(store)
    await accepted(driver, prompt("accepted before recover", key="k-early"))
    return driver, call


# case -> (the failing store method, the operation, what the driver's
# Internal error says before the store's own text: D-5 .. D-9, D-11)
CASES: dict[str, tuple[str, Prepare, str]] = {
    "accept": ("persist_input_state", _prep_accept, ""),
    "boundary_applied": (
        "atomic_apply",
        _prep_boundary,
        "runtime boundary commit failed: ",
    ),
    "run_completed": (
        "atomic_lifecycle_commit",
        _prep_completed,
        "terminal event persist failed: ",
    ),
    "run_failed": (
        "atomic_lifecycle_commit",
        _prep_failed,
        "terminal event persist failed: ",
    ),
    "run_cancelled": (
        "atomic_lifecycle_commit",
        _prep_cancelled,
        "terminal event persist failed: ",
    ),
    "withdraw_run": (
        "atomic_lifecycle_commit",
        _prep_withdraw,
        "run withdrawal persist failed: ",
    ),
    "retire": ("atomic_lifecycle_commit", _prep_retire, "retire persist failed: "),
    "reset": ("atomic_lifecycle_commit", _prep_reset, "reset persist failed: "),
    "destroy": ("atomic_lifecycle_commit", _prep_destroy, "destroy persist failed: "),
    "stop": ("atomic_lifecycle_commit", _prep_stop, "control op persist failed: "),
    "recycle_preserving_work": (
        "atomic_lifecycle_commit",
        _prep_recycle,
        "recycle persist failed: ",
    ),
    "abandon_pending_inputs": (
        "atomic_lifecycle_commit",
        _prep_abandon,
        "pending input abandon persist failed: ",
    ),
    "recover": ("atomic_lifecycle_commit", _prep_recover, "recovery persist failed: "),
    "recover_load_states": ("load_input_states", _prep_recover, ""),
    "recover_load_receipt": ("load_boundary_receipt", _prep_recover, ""),
    "recover_load_runtime_state": ("load_runtime_state", _prep_recover, ""),
    "recover_after_accept": (
        "atomic_lifecycle_commit",
        _prep_recover_after_accept,
        "recovery persist failed: ",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_store_failure_restores_memory_and_writes_nothing(
    backend: Backend, case: str
) -> None:
    """Decision 14 (D-4 .. D-9, D-11, D-13) and decision 22: whatever
    operation's store call fails, the caller gets ``Internal`` with the
    operation's text and then the store's (D-5: the store's alone; D-11 step
    11: "recovery persist failed"; a failed read: the store's alone), memory
    is exactly as before the call (states, lanes, batch, phase, signal, event
    buffer), nothing reached the store, and the same call succeeds once the
    store works again."""
    failing, prepare, context = CASES[case]

    async def body(b: Backend) -> None:
        inner = b.open()
        store = FaultyStore(inner)
        driver, call = await prepare(store)
        before = everything(driver)
        rows_before = raw(inner)

        store.fail = {failing}
        with pytest.raises(RuntimeDriverError.Internal) as err:
            await call()
        kind = "read" if failing.startswith("load_") else "write"
        assert str(err.value) == (
            f"Internal error: {context}Store {kind} failed: {message_for(failing)}"
        )
        assert everything(driver) == before
        assert raw(inner) == rows_before
        assert len(driver.drain_events()) == before[0].events

        store.fail = set()
        await call()
        assert raw(inner) != rows_before
        await assert_store_matches_memory(driver, inner)

    run(backend, body)


def test_failed_destroy_keeps_idempotency_keys(backend: Backend) -> None:
    """Decisions 12 and 14: destroy forgets keys, so a destroy the store
    refused must give them back: the key still deduplicates afterwards."""

    async def body(b: Backend) -> None:
        store = FaultyStore(b.open())
        driver = new_driver(store)
        original = prompt("a", key="k-keep")
        await accepted(driver, original)
        store.fail = {"atomic_lifecycle_commit"}
        with pytest.raises(RuntimeDriverError.Internal):
            await driver.destroy()
        store.fail = set()
        outcome = await driver.accept_input(prompt("again", key="k-keep"))
        assert outcome.is_deduplicated()
        assert getattr(outcome, "existing_id", None) == original.id()

    run(backend, body)


def test_failed_recover_keeps_keys_of_inputs_accepted_before_it(
    backend: Backend,
) -> None:
    """Decision 22: a recovery that fails leaves the driver as before,
    including the idempotency index of the inputs it already held, even when
    a stored record it loaded (and dropped again) carries the same key."""

    async def body(b: Backend) -> None:
        inner = b.open()
        older = prompt("from the last process", key="shared-key")
        await inner.persist_input_state(
            RID, stored_state(older, [InputLifecycleInput.QueueAccepted()])
        )
        store = FaultyStore(inner)
        driver = new_driver(store)
        mine = prompt("accepted before recover", key="shared-key")
        await accepted(driver, mine)
        store.fail = {"atomic_lifecycle_commit"}
        with pytest.raises(RuntimeDriverError.Internal):
            await driver.recover()
        # The stored input it queued (in one step) is out of the lane again.
        assert driver.queued_input_ids() == [mine.id()]
        store.fail = set()
        outcome = await driver.accept_input(prompt("dup", key="shared-key"))
        assert outcome.is_deduplicated()
        assert getattr(outcome, "existing_id", None) == mine.id()

    run(backend, body)


def test_live_recover_with_nothing_new_keeps_what_dequeue_handed_out(
    backend: Backend,
) -> None:
    """R-5 (review finding): ``dequeue_next`` marks what it handed out until
    the lanes change; a live ``recover()`` that queues nothing new leaves
    the lanes, so the next dequeue still moves on to the next input."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        first, second = prompt("first"), prompt("second")
        await accepted(driver, first, second)
        taken = driver.dequeue_next()
        assert taken is not None
        assert taken[0] == first.id()
        await driver.recover()
        after = driver.dequeue_next()
        assert after is not None
        assert after[0] == second.id()

    run(backend, body)


class FailingBlobStore(MemoryBlobStore):
    async def put_image(self, media_type: str, data: str) -> BlobRef:
        raise BlobStoreError.Internal(
            f"injected blob failure ({media_type}, {len(data)} chars): disk full"
        )


def test_blob_failure_at_accept_restores_memory(backend: Backend) -> None:
    """D-5 step 3 with decision 14: when an image cannot be externalised the
    accept fails with Internal carrying the blob store's text, and leaves no
    ledger entry, lane entry, event or store row."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store, FailingBlobStore())
        await accepted(driver, prompt("text only"))
        before, rows = everything(driver), raw(store)
        with pytest.raises(RuntimeDriverError.Internal, match="disk full"):
            await driver.accept_input(image_prompt(b"img"))
        assert everything(driver) == before
        assert raw(store) == rows

    run(backend, body)


# ================================================================ decision 13


def test_ephemeral_input_never_reaches_the_store(backend: Backend) -> None:
    """Decision 13 / D-5: an ephemeral input is accepted, staged, applied and
    consumed in memory, yet never written (neither at accept nor in a later
    commit); neither is one abandoned by reset. A restart has no trace of
    them, not even their idempotency keys."""

    async def body(b: Backend) -> None:
        store = FaultyStore(b.open())
        driver = new_driver(store)
        durable = prompt("durable")
        fleeting = prompt(
            "fleeting", key="eph-key", durability=InputDurability.EPHEMERAL
        )
        await accepted(driver, durable, fleeting)
        assert set(store.inner.raw_rows(INPUTS, RID)) == {str(durable.id())}
        assert store.calls == ["persist_input_state"]

        run_id = RunId.new()
        ids = [durable.id(), fleeting.id()]
        driver.start_run(run_id)
        driver.stage_batch(ids, run_id)
        await driver.on_run_event(boundary(run_id, ids))
        await driver.on_run_event(RunCompleted(run_id=run_id, consumed_input_ids=ids))
        state = driver.input_state(fleeting.id())
        assert state is not None
        assert state.current_state() is _S.CONSUMED

        later = prompt("later", durability=InputDurability.EPHEMERAL)
        await accepted(driver, later)
        assert (await driver.reset()).inputs_abandoned == 1
        assert set(store.inner.raw_rows(INPUTS, RID)) == {str(durable.id())}
        assert await store.load_input_state(RID, fleeting.id()) is None
        assert (await stored(store, durable.id())).current_state() is _S.CONSUMED

        restarted, report, _ = await restart(b)
        assert restarted.input_state(fleeting.id()) is None
        assert restarted.input_state(later.id()) is None
        assert report == RecoveryReport()
        again = prompt("same key, new process", key="eph-key")
        assert (await restarted.accept_input(again)).is_accepted()

    run(backend, body)


# ================================================================ restarts (Z-8)


def test_restart_with_queued_inputs(backend: Backend) -> None:
    """Z-8 / D-11, decisions 4, 18, 24: queued inputs come back queued in the
    same lanes and order with their stored policy; each restart counts one
    more recovery, in memory and on disk."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, steer, c = prompt("a"), prompt("steer", steer=True), prompt("c")
        await accepted(driver, a, steer, c)
        lanes = (driver.observe().queue, driver.observe().steer)
        assert lanes == ((a.id(), c.id()), (steer.id(),))
        policies = {i: driver.input_state(i) for i in (a.id(), steer.id(), c.id())}

        for count in (1, 2):
            driver, report, store = await restart(b)
            assert report == RecoveryReport(inputs_recovered=3)
            assert (driver.observe().queue, driver.observe().steer) == lanes
            for input_id, before in policies.items():
                state = driver.input_state(input_id)
                assert state is not None
                assert before is not None
                assert state.current_state() is _S.QUEUED
                assert state.policy == before.policy
                assert state.recovery_count == count
                assert (await stored(store, input_id)).recovery_count == count
            assert driver.runtime_state() is RuntimeState.IDLE
            assert await store.load_runtime_state(RID) is RuntimeState.IDLE
            assert driver.take_wake_requested()

        dequeued = driver.dequeue_next()
        assert dequeued is not None
        assert dequeued[0] == steer.id()  # the steer lane drains first

    run(backend, body)


def test_restart_with_a_staged_input_brings_it_back_queued(backend: Backend) -> None:
    """D-2 / Z-8: staging is never persisted, so a crash while an input is
    staged brings it back queued at the head of its lane, without the
    attempt: the store still held it as queued (nothing to requeue)."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, c = prompt("a"), prompt("c")
        await staged_alone(driver, a, c)

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=2)
        assert driver.observe().queue == (a.id(), c.id())
        state = driver.input_state(a.id())
        assert state is not None
        assert state.current_state() is _S.QUEUED
        assert state.attempt_count() == 0
        assert state.recovery_count == 1
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_restart_after_committed_boundary_consumes(backend: Backend) -> None:
    """D-11 step 1, decisions 18 and 24: an input applied with its receipt
    committed is consumed by recovery (counted recovered, not requeued) and
    never replayed; a second restart leaves the finished input alone."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, c = prompt("a"), prompt("c")
        run_id = await staged_alone(driver, a, c)
        await driver.on_run_event(boundary(run_id, [a.id()]))

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=2)
        state = driver.input_state(a.id())
        assert state is not None
        assert state.current_state() is _S.CONSUMED
        assert state.terminal_outcome() == InputTerminalOutcome.Consumed()
        assert (state.last_run_id(), state.last_boundary_sequence()) == (run_id, 0)
        assert state.recovery_count == 1
        assert driver.active_input_ids() == [c.id()]
        assert driver.observe().queue == (c.id(),)
        await assert_store_matches_memory(driver, store)

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1)
        assert (await stored(store, a.id())).recovery_count == 1
        assert (await stored(store, c.id())).recovery_count == 2

    run(backend, body)


def test_restart_with_applied_input_without_receipt_requeues(backend: Backend) -> None:
    """D-11 step 1 (spec input RecoverRequeue), decision 24: an applied input
    whose receipt never reached the store runs again: queued, its run,
    boundary and attempt metadata kept, and persisted back that way."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("applied, receipt lost")
        run_id = RunId.new()
        await store.persist_input_state(RID, stored_state(inp, applied_steps(run_id)))

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1, inputs_requeued=1)
        state = driver.input_state(inp.id())
        assert state is not None
        assert state.current_state() is _S.QUEUED
        assert (state.last_run_id(), state.last_boundary_sequence()) == (run_id, 0)
        assert state.attempt_count() == 1
        assert state.history()[-1].from_state is _S.APPLIED_PENDING_CONSUMPTION
        assert state.history()[-1].to_state is _S.QUEUED
        assert driver.observe().queue == (inp.id(),)
        on_disk = await stored(store, inp.id())
        assert on_disk.current_state() is _S.QUEUED
        assert (on_disk.last_run_id(), on_disk.last_boundary_sequence()) == (
            run_id,
            0,
        )
        assert on_disk.recovery_count == 1
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_restart_requeues_applied_input_a_foreign_receipt_does_not_name(
    backend: Backend,
) -> None:
    """D-11 step 1: a receipt at the input's (run, sequence) that does not
    list the input is no proof it was applied: it runs again."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("applied")
        run_id = RunId.new()
        await store.persist_input_state(RID, stored_state(inp, applied_steps(run_id)))
        await store.atomic_apply(RID, None, receipt(run_id, [InputId.new()]), [])

        driver, report, _ = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1, inputs_requeued=1)
        state = driver.input_state(inp.id())
        assert state is not None
        assert state.current_state() is _S.QUEUED

    run(backend, body)


def test_restart_abandons_applied_input_with_attempts_used_up(
    backend: Backend,
) -> None:
    """RecoverRequeue exhausted, decisions 3, 23, 24: an applied input without
    receipt whose attempts are used up is abandoned with
    ``max_attempts_exhausted`` and never queued."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("tried three times")
        await store.persist_input_state(
            RID, stored_state(inp, applied_steps(RunId.new(), attempts=3))
        )

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1, inputs_abandoned=1)
        state = driver.input_state(inp.id())
        assert state is not None
        assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.MaxAttemptsExhausted(attempts=3)
        )
        assert driver.observe().queue == ()
        assert driver.active_input_ids() == []
        assert (await stored(store, inp.id())).current_state() is _S.ABANDONED

    run(backend, body)


def test_restart_normalises_pre_run_records(backend: Backend) -> None:
    """D-11 step 2, decision 24: stored accepted and staged records (an older
    writer's) come back queued and count as requeued; a record without a
    payload cannot run and is abandoned ``cancelled`` with a detail line."""

    async def body(b: Backend) -> None:
        store = b.open()
        accepted_only, staged = prompt("accepted"), prompt("staged")
        await store.persist_input_state(RID, stored_state(accepted_only, []))
        await store.persist_input_state(
            RID,
            stored_state(
                staged,
                [
                    InputLifecycleInput.QueueAccepted(),
                    InputLifecycleInput.StageForRun(run_id=RunId.new()),
                ],
            ),
        )
        bare = InputState.new_accepted(InputId.new())
        bare.durability = InputDurability.DURABLE
        await store.persist_input_state(RID, bare)

        driver, report, store = await restart(b)
        assert report.inputs_recovered == 3
        assert report.inputs_requeued == 2
        assert report.inputs_abandoned == 1
        assert len(report.details) == 1
        assert str(bare.input_id) in report.details[0]
        assert driver.observe().queue == (accepted_only.id(), staged.id())
        state = driver.input_state(staged.id())
        assert state is not None
        assert state.attempt_count() == 1
        lost = driver.input_state(bare.input_id)
        assert lost is not None
        assert lost.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.Cancelled()
        )
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_restart_of_a_retired_runtime(backend: Backend) -> None:
    """Z-8 / D-11 step 9: a retired runtime comes back retired with its queue
    intact, refusing new input."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a, c = prompt("a"), prompt("c")
        await accepted(driver, a, c)
        await driver.retire()

        driver, report, store = await restart(b)
        assert report == RecoveryReport(inputs_recovered=2)
        assert driver.runtime_state() is RuntimeState.RETIRED
        assert driver.observe().queue == (a.id(), c.id())
        assert await store.load_runtime_state(RID) is RuntimeState.RETIRED
        with pytest.raises(RuntimeDriverError.NotReady):
            await driver.accept_input(prompt("late"))

    run(backend, body)


@pytest.mark.parametrize("how", ["stop", "destroy"])
def test_restart_of_a_stopped_or_destroyed_runtime(backend: Backend, how: str) -> None:
    """Z-5 / D-11 step 9: a stopped or destroyed runtime comes back in that
    phase, its inputs abandoned as stored, nothing active."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a = prompt("a")
        await accepted(driver, a)
        if how == "stop":
            await driver.on_runtime_control(RuntimeControlCommand.STOP)
            phase = RuntimeState.STOPPED
        else:
            await driver.destroy()
            phase = RuntimeState.DESTROYED

        driver, report, store = await restart(b)
        assert report == RecoveryReport()
        assert driver.runtime_state() is phase
        assert await store.load_runtime_state(RID) is phase
        assert driver.active_input_ids() == []
        state = driver.input_state(a.id())
        assert state is not None
        assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.Destroyed()
        )

    run(backend, body)


def test_recycle_persists_idle_and_survives_a_restart(backend: Backend) -> None:
    """Decision 7 / D-13: recycling a retired runtime makes it idle and
    accepting with its work, and that idle phase is what a restart finds."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        a = prompt("a")
        await accepted(driver, a)
        await driver.retire()
        assert await driver.recycle_preserving_work() == 1
        assert driver.runtime_state() is RuntimeState.IDLE
        assert driver.observe().queue == (a.id(),)

        driver, report, store = await restart(b)
        assert driver.runtime_state() is RuntimeState.IDLE
        assert await store.load_runtime_state(RID) is RuntimeState.IDLE
        assert report == RecoveryReport(inputs_recovered=1)
        assert (await driver.accept_input(prompt("b"))).is_accepted()

    run(backend, body)


# ================================================================ decisions 5 and 22


@pytest.mark.parametrize("phase", [RuntimeState.STOPPED, RuntimeState.DESTROYED])
def test_terminal_runtime_with_active_inputs_is_store_corruption(
    backend: Backend, phase: RuntimeState
) -> None:
    """Decision 5 (D-11 step 10) with decision 22: recovery fails closed with
    an error naming store corruption, and changes nothing in memory or on
    disk."""

    async def body(b: Backend) -> None:
        store = b.open()
        inp = prompt("left behind")
        await store.persist_input_state(
            RID, stored_state(inp, [InputLifecycleInput.QueueAccepted()])
        )
        await store.persist_runtime_state(RID, phase)
        rows = raw(store)
        driver = new_driver(store)
        before = everything(driver)

        with pytest.raises(RuntimeDriverError.Internal, match="store corruption"):
            await driver.recover()
        assert everything(driver) == before
        assert driver.input_state(inp.id()) is None
        assert driver.runtime_state() is RuntimeState.IDLE
        assert raw(store) == rows

    run(backend, body)


@pytest.mark.parametrize("table", [INPUTS, RECEIPTS, STATES])
def test_corrupt_row_fails_recovery_without_side_effects(
    backend: Backend, table: str
) -> None:
    """Decision 22 (and the records module's ReadFailed naming the table): a
    corrupt stored row makes recovery raise; nothing is loaded into memory
    and nothing is written."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a, c = prompt("a"), prompt("c")
        run_id = await staged_alone(driver, a, c)
        await driver.on_run_event(boundary(run_id, [a.id()]))
        await driver.retire()
        record = {
            INPUTS: str(c.id()),
            RECEIPTS: f"{run_id}/0",
            STATES: str(RID),
        }[table]
        store.corrupt_row(table, RID, record, b"{not json")
        rows = raw(store)

        fresh = new_driver(b.open())
        before = everything(fresh)
        with pytest.raises(RuntimeDriverError.Internal) as err:
            await fresh.recover()
        assert table in str(err.value)
        assert everything(fresh) == before
        assert fresh.observe().inputs == ()
        assert raw(store) == rows

    run(backend, body)


# ================================================================ decision 23


def test_supersession_writes_both_inputs_in_one_commit(backend: Backend) -> None:
    """Decisions 20 and 23 (with 14): a replacement prompt supersedes the
    older one; the superseded state and the new input reach the store in the
    same atomic commit. If that commit fails neither is written and memory is
    unchanged; once it succeeds both are stored and survive a restart."""

    async def body(b: Backend) -> None:
        inner = b.open()
        store = FaultyStore(inner)
        table = RoutingTable({"prompt": QueueMode.SUPERSEDE})
        driver = new_driver(store, table=table)
        older, newer = prompt("v1", scope="draft"), prompt("v2", scope="draft")
        await accepted(driver, older)
        before, rows = everything(driver), raw(inner)

        store.fail = {"atomic_lifecycle_commit"}
        store.calls.clear()
        with pytest.raises(RuntimeDriverError.Internal) as err:
            await driver.accept_input(newer)
        assert message_for("atomic_lifecycle_commit") in str(err.value)
        assert store.calls == ["atomic_lifecycle_commit"]
        assert everything(driver) == before
        assert raw(inner) == rows

        store.fail = set()
        store.calls.clear()
        assert (await driver.accept_input(newer)).is_accepted()
        assert store.calls == ["atomic_lifecycle_commit"]
        old_state = await stored(inner, older.id())
        assert old_state.terminal_outcome() == InputTerminalOutcome.Superseded(
            superseded_by=newer.id()
        )
        assert (await stored(inner, newer.id())).current_state() is _S.QUEUED
        assert driver.observe().queue == (newer.id(),)

        restarted, report, _ = await restart(b)
        assert report == RecoveryReport(inputs_recovered=1)
        assert restarted.observe().queue == (newer.id(),)

    run(backend, body)


# ================================================================ decision 16


def test_boundary_with_identical_stored_receipt_persists_states(
    backend: Backend,
) -> None:
    """Decision 16 / D-6 step 3: the session layer committed the receipt
    first; BoundaryApplied with the identical receipt succeeds and the input
    states are persisted anyway (memory never runs ahead of the store)."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a = prompt("a")
        run_id = await staged_alone(driver, a)
        await store.atomic_apply(RID, None, receipt(run_id, [a.id()]), [])

        await driver.on_run_event(
            BoundaryApplied(run_id=run_id, receipt=receipt(run_id, [a.id()]))
        )
        on_disk = await stored(store, a.id())
        assert on_disk.current_state() is _S.APPLIED_PENDING_CONSUMPTION
        assert await store.load_boundary_receipt(RID, run_id, 0) == receipt(
            run_id, [a.id()]
        )
        await assert_store_matches_memory(driver, store)

    run(backend, body)


def test_boundary_with_conflicting_stored_receipt_fails_and_restores(
    backend: Backend,
) -> None:
    """Decision 16 with 14: a different receipt already stored for the same
    (run, sequence) is a write conflict; the driver raises Internal, memory
    is restored (still staged) and the store keeps its receipt."""

    async def body(b: Backend) -> None:
        store = b.open()
        driver = new_driver(store)
        a = prompt("a")
        run_id = await staged_alone(driver, a)
        theirs = msgspec.structs.replace(receipt(run_id, [a.id()]), message_count=7)
        await store.atomic_apply(RID, None, theirs, [])
        before, rows = everything(driver), raw(store)

        with pytest.raises(RuntimeDriverError.Internal, match="receipt conflict"):
            await driver.on_run_event(boundary(run_id, [a.id()]))
        assert everything(driver) == before
        assert raw(store) == rows
        state = driver.input_state(a.id())
        assert state is not None
        assert state.current_state() is _S.STAGED

    run(backend, body)


# ================================================================ T-15 / decision 12


def test_idempotency_keys_survive_restarts(backend: Backend) -> None:
    """T-15 / decision 12 / D-11 step 5: after a restart a key still
    deduplicates, against a queued input, a consumed one and one abandoned by
    reset; the duplicate is not stored."""

    async def body(b: Backend) -> None:
        driver = new_driver(b.open())
        done, reset_one = prompt("done", key="k-done"), prompt("r", key="k-reset")
        await accepted(driver, done)
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_input(done.id(), run_id)
        await driver.on_run_event(boundary(run_id, [done.id()]))
        await driver.on_run_event(
            RunCompleted(run_id=run_id, consumed_input_ids=[done.id()])
        )
        await accepted(driver, reset_one)
        await driver.reset()
        waiting = prompt("waiting", key="k-wait")
        await accepted(driver, waiting)

        driver, _, store = await restart(b)
        rows = raw(store)[INPUTS]
        for key, original in (
            ("k-done", done),
            ("k-reset", reset_one),
            ("k-wait", waiting),
        ):
            duplicate = prompt("again", key=key)
            outcome = await driver.accept_input(duplicate)
            assert outcome.is_deduplicated(), key
            assert getattr(outcome, "existing_id", None) == original.id()
            assert await store.load_input_state(RID, duplicate.id()) is None
        assert raw(store)[INPUTS] == rows

    run(backend, body)


# ================================================================ images (T-20)


def test_stored_payload_has_blob_refs_that_hydrate(backend: Backend) -> None:
    """T-20 / D-5 step 3 / decision 13: the stored payload carries blob refs,
    no inline bytes; ``hydrate_images`` restores exactly the inline data."""

    async def body(b: Backend) -> None:
        store = b.open()
        blobs = MemoryBlobStore()
        driver = new_driver(store, blobs)
        raw_png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
        inp = image_prompt(raw_png)
        await accepted(driver, inp)

        payload = (await stored(store, inp.id())).persisted_input
        assert isinstance(payload, PromptInput)
        assert payload.blocks is not None
        image = payload.blocks[1]
        assert isinstance(image, ImageBlock)
        assert isinstance(image.data, BlobImage)
        assert b"\x89PNG" not in store.raw_rows(INPUTS, RID)[str(inp.id())]
        assert await blobs.exists(image.data.blob_id)

        hydrated = await hydrate_images(blobs, payload)
        assert hydrated == inp

    run(backend, body)


def test_file_blob_store_keeps_images_across_a_restart(
    backend: Backend, tmp_path: Path
) -> None:
    """T-20 / D-11: with a FileBlobStore the image survives the restart: the
    recovered input's blob refs hydrate to the original inline data through a
    new blob store object on the same folder."""

    async def body(b: Backend) -> None:
        root = tmp_path / "blobs"
        driver = new_driver(b.open(), FileBlobStore(root))
        inp = image_prompt(b"pixels" * 50)
        await accepted(driver, inp)

        blobs = FileBlobStore(root)
        driver, report, _ = await restart(b, blobs)
        assert report == RecoveryReport(inputs_recovered=1)
        dequeued = driver.dequeue_next()
        assert dequeued is not None
        assert dequeued[0] == inp.id()
        assert await hydrate_images(blobs, dequeued[1]) == inp

    run(backend, body)
