"""Backends, builders and observers shared by the persistent driver's tests.

Each test runs on both stores (``backend``, in this folder's conftest.py).
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
    InputDurability,
    InputHeader,
    InputId,
    InputLifecycleInput,
    InputLifecycleState,
    InputState,
    LogicalRuntimeId,
    PolicySnapshot,
    PromptInput,
    QueueMode,
    RecoveryReport,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunId,
    RuntimeState,
    SupersessionKey,
    codec,
)
from meerkat_runtime.blobs import (
    BlobStore,
    MemoryBlobStore,
)
from meerkat_runtime.driver.ephemeral import DriverObservation
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleInput as _LcInput
from meerkat_runtime.generated.policy_table import PolicyDecision
from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.inputs import (
    AnyContentBlock,
    ImageBlock,
    InlineImage,
    RuntimeTurnMetadata,
    TextBlock,
)
from meerkat_runtime.policy import DefaultPolicyTable, PolicySubject, PolicyTable
from meerkat_runtime.runs import (
    BoundaryApplied,
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
