"""Shared pieces of the store conformance suite: the runtime ids, the record
builders and the hooks every contract group leans on.

They live apart from ``conformance`` so each contract group (records,
atomicity, corruption, ownership) can import them without importing the
class that composes the groups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.ids import BlobId, IdempotencyKey, InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState, PolicySnapshot
from meerkat_runtime.inputs import (
    AnyContentBlock,
    BlobImage,
    ImageBlock,
    InputDurability,
    InputHeader,
    Operator,
    PromptInput,
    TextBlock,
)
from meerkat_runtime.policy import DefaultPolicyTable
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store.base import RuntimeStore


class ConformanceHooks:
    """The hooks of ``StoreConformance``, a base of every contract group so
    each can call them: ``make_store`` (override it), ``raw_rows`` and
    ``corrupt_row`` (override them for a store other than the built-in
    ones), and ``run``, which gives a test body a fresh store and closes it."""

    def make_store(self) -> RuntimeStore:
        raise NotImplementedError(
            "override make_store() to return a fresh, empty store"
        )

    def raw_rows(
        self, store: RuntimeStore, table: str, runtime_id: LogicalRuntimeId
    ) -> dict[str, bytes]:
        return store.raw_rows(table, runtime_id)  # type: ignore[attr-defined, no-any-return]

    def corrupt_row(
        self,
        store: RuntimeStore,
        table: str,
        runtime_id: LogicalRuntimeId,
        record_id: str,
        data: bytes,
    ) -> None:
        store.corrupt_row(table, runtime_id, record_id, data)  # type: ignore[attr-defined]

    def run(self, body: Callable[[RuntimeStore], Awaitable[None]]) -> None:
        async def main() -> None:
            store = self.make_store()
            try:
                await body(store)
            finally:
                await store.close()

        asyncio.run(main())


A = LogicalRuntimeId("runtime-a")
B = LogicalRuntimeId("runtime-b")


def rich_state(phase_steps: int = 5, run_id: RunId | None = None) -> InputState:
    """An input state exercising every record field; ``phase_steps`` walks it
    accepted -> queued -> staged -> applied -> pending -> consumed."""
    run_id = run_id or RunId.new()
    header = InputHeader(
        id=InputId.new(),
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        source=Operator(),
        durability=InputDurability.DURABLE,
        idempotency_key=IdempotencyKey(f"key-{InputId.new()}"),
    )
    blocks: list[AnyContentBlock] = [
        TextBlock(text="hi"),
        ImageBlock(
            media_type="image/png", data=BlobImage(blob_id=BlobId("sha256:" + "a" * 64))
        ),
    ]
    payload = PromptInput(header=header, text="hello", blocks=blocks)
    state = InputState.new_accepted(header.id)
    state.persisted_input = payload
    state.durability = InputDurability.DURABLE
    state.idempotency_key = header.idempotency_key
    decision = DefaultPolicyTable().resolve(payload, True)
    state.policy = PolicySnapshot(version=1, decision=decision)
    steps: list[il.InputLifecycleInput] = [
        il.QueueAccepted(),
        il.StageForRun(run_id),
        il.MarkApplied(run_id),
        il.MarkAppliedPendingConsumption(0),
        il.Consume(),
    ]
    for step in steps[:phase_steps]:
        state.apply(step)
    return state


def poisoned(state: InputState) -> InputState:
    """A state that cannot be encoded: writing it must fail the whole commit."""
    bad = state.clone()
    bad.reconstruction_source = object()  # type: ignore[assignment]
    return bad


def receipt_for(
    run_id: RunId, ids: list[InputId], sequence: int = 0
) -> RunBoundaryReceipt:
    return RunBoundaryReceipt(
        run_id=run_id,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=ids,
        message_count=len(ids),
        sequence=sequence,
    )
