"""The ``RuntimeStore`` conformance suite, shipped so any store can prove itself.

Use it from a test module::

    from meerkat_runtime.testing.conformance import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self) -> RuntimeStore:
            return MyStore(...)

``make_store`` is the one hook; ``raw_rows`` and ``corrupt_row`` read and
damage stored bytes behind the store's back (the built-in stores provide
them; override for yours). Every test is synchronous and runs its own event
loop, so no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
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
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStore, RuntimeStoreError, SessionDelta
from meerkat_runtime.store.verify import verify
from meerkat_runtime.testing.conformance_ownership import OwnershipConformance

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


class StoreConformance(OwnershipConformance):
    """The contract every ``RuntimeStore`` meets (docs/behaviour.md section 8),
    ownership included (``conformance_ownership``)."""

    # ---------------------------------------------------------------- hooks

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

    # ---------------------------------------------------------------- round trips

    @pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 5])
    def test_input_state_round_trip(self, steps: int) -> None:
        async def body(store: RuntimeStore) -> None:
            state = rich_state(steps)
            await store.persist_input_state(A, state)
            loaded = await store.load_input_state(A, state.input_id)
            assert loaded == state
            assert [s.to_record() for s in await store.load_input_states(A)] == [
                state.to_record()
            ]

        self.run(body)

    def test_abandoned_state_round_trip(self) -> None:
        async def body(store: RuntimeStore) -> None:
            state = rich_state(1)
            state.apply(il.Abandon(InputAbandonReason.MaxAttemptsExhausted(attempts=3)))
            state.recovery_count = 2
            await store.persist_input_state(A, state)
            assert await store.load_input_state(A, state.input_id) == state

        self.run(body)

    @pytest.mark.parametrize("phase", list(RuntimeState))
    def test_runtime_state_round_trip(self, phase: RuntimeState) -> None:
        async def body(store: RuntimeStore) -> None:
            assert await store.load_runtime_state(A) is None
            await store.persist_runtime_state(A, phase)
            assert await store.load_runtime_state(A) is phase

        self.run(body)

    def test_upsert_keeps_one_row_per_input(self) -> None:
        async def body(store: RuntimeStore) -> None:
            state = rich_state(1)
            await store.persist_input_state(A, state)
            state.apply(il.Abandon(InputAbandonReason.Reset()))
            await store.persist_input_state(A, state)
            loaded = await store.load_input_states(A)
            assert len(loaded) == 1
            assert loaded[0].current_state() is il.InputLifecycleState.ABANDONED

        self.run(body)

    def test_missing_records_read_as_none(self) -> None:
        async def body(store: RuntimeStore) -> None:
            assert await store.load_input_state(A, InputId.new()) is None
            assert await store.load_boundary_receipt(A, RunId.new(), 0) is None
            assert await store.load_session_snapshot(A) is None
            assert await store.load_input_states(A) == []

        self.run(body)

    # ---------------------------------------------------------------- boundaries

    def test_atomic_apply_writes_receipt_snapshot_and_states(self) -> None:
        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            state = rich_state(4, run_id)
            receipt = receipt_for(run_id, [state.input_id])
            await store.atomic_apply(
                A, SessionDelta(session_snapshot=b"snap"), receipt, [state]
            )
            assert await store.load_boundary_receipt(A, run_id, 0) == receipt
            assert await store.load_session_snapshot(A) == b"snap"
            assert await store.load_input_state(A, state.input_id) == state

        self.run(body)

    def test_receipts_are_listed_in_commit_order(self) -> None:
        """``load_boundary_receipts``: every receipt of the runtime, in the
        order committed (not by run id: the newer run commits first here),
        and none of another runtime's."""

        async def body(store: RuntimeStore) -> None:
            older_run, newer_run = RunId.new(), RunId.new()
            committed = [
                receipt_for(newer_run, [], 0),
                receipt_for(older_run, [], 0),
                receipt_for(newer_run, [], 1),
            ]
            for receipt in committed:
                await store.atomic_apply(A, None, receipt, [])
            await store.atomic_apply(B, None, receipt_for(RunId.new(), []), [])
            assert await store.load_boundary_receipts(A) == committed

        self.run(body)

    def test_commit_session_boundary_mints_sequences_per_run(self) -> None:
        """S-5: sequences start at 0 per run; states are stamped with them."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            state = rich_state(4, run_id)
            delta = SessionDelta(session_snapshot=b'{"messages": [1, 2, 3]}')
            first = await store.commit_session_boundary(
                A, delta, run_id, RunApplyBoundary.RUN_START, [state.input_id], [state]
            )
            second = await store.commit_session_boundary(
                A,
                delta,
                run_id,
                RunApplyBoundary.RUN_CHECKPOINT,
                [state.input_id],
                [state],
            )
            other = await store.commit_session_boundary(
                A, delta, RunId.new(), RunApplyBoundary.RUN_START, [], []
            )
            assert (first.sequence, second.sequence, other.sequence) == (0, 1, 0)
            assert first.message_count == 3
            assert first.conversation_digest is not None
            assert await store.load_boundary_receipt(A, run_id, 1) == second
            stored = await store.load_input_state(A, state.input_id)
            assert stored is not None
            assert (stored.last_run_id(), stored.last_boundary_sequence()) == (
                run_id,
                1,
            )

        self.run(body)

    @pytest.mark.parametrize("steps", range(6))
    def test_commit_session_boundary_stamps_an_input_in_any_phase(
        self, steps: int
    ) -> None:
        """S-3, S-5: a store never judges lifecycle legality. Stamping writes
        the receipt's (run, sequence) on the state whatever its phase,
        ``accepted`` (which the lifecycle itself never stamps) included, and
        changes nothing else."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            state = rich_state(steps)
            receipt = await store.commit_session_boundary(
                A,
                SessionDelta(session_snapshot=b"snap"),
                run_id,
                RunApplyBoundary.RUN_START,
                [state.input_id],
                [state],
            )
            stored = await store.load_input_state(A, state.input_id)
            assert stored is not None
            assert (stored.last_run_id(), stored.last_boundary_sequence()) == (
                run_id,
                receipt.sequence,
            )
            assert stored.current_state() is state.current_state()
            assert stored.history() == state.history()
            assert await store.load_session_snapshot(A) == b"snap"

        self.run(body)

    def test_identical_receipt_recommit_is_a_no_op(self) -> None:
        """Decision 16."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            state = rich_state(4, run_id)
            receipt = receipt_for(run_id, [state.input_id])
            await store.atomic_apply(A, None, receipt, [state])
            await store.atomic_apply(A, None, receipt, [state])
            assert await store.load_boundary_receipt(A, run_id, 0) == receipt

        self.run(body)

    def test_conflicting_receipt_is_refused_and_writes_nothing(self) -> None:
        """Decision 16: a different receipt for the same (run, sequence)."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            state = rich_state(4, run_id)
            receipt = receipt_for(run_id, [state.input_id])
            await store.atomic_apply(
                A, SessionDelta(session_snapshot=b"one"), receipt, [state]
            )
            other = rich_state(4, run_id)
            conflicting = receipt_for(run_id, [other.input_id])
            with pytest.raises(RuntimeStoreError.WriteFailed, match="receipt conflict"):
                await store.atomic_apply(
                    A, SessionDelta(session_snapshot=b"two"), conflicting, [other]
                )
            assert await store.load_boundary_receipt(A, run_id, 0) == receipt
            assert await store.load_session_snapshot(A) == b"one"
            assert await store.load_input_state(A, other.input_id) is None

        self.run(body)

    # ---------------------------------------------------------------- atomicity

    def test_lifecycle_commit_is_all_or_nothing(self) -> None:
        async def body(store: RuntimeStore) -> None:
            good, bad = rich_state(1), poisoned(rich_state(1))
            await store.persist_runtime_state(A, RuntimeState.IDLE)
            with pytest.raises(RuntimeStoreError):
                await store.atomic_lifecycle_commit(
                    A, RuntimeState.RETIRED, [good, bad]
                )
            assert await store.load_runtime_state(A) is RuntimeState.IDLE
            assert await store.load_input_states(A) == []
            assert self.raw_rows(store, records.INPUTS, A) == {}

        self.run(body)

    def test_recovery_commit_counts_and_is_all_or_nothing(self) -> None:
        """Decision 18 through ``commit_recovery``: a recounted input loads
        with one more recovery, a changed one as given, a finished one
        untouched, and a later write of the counted state does not count it
        twice, an ephemeral record (decision 13) is never counted; a failed
        recovery commit changes nothing, counts included."""

        async def body(store: RuntimeStore) -> None:
            queued, staged, done = rich_state(1), rich_state(2), rich_state(5)
            other, ephemeral = rich_state(1), rich_state(1)
            ephemeral.durability = InputDurability.EPHEMERAL  # recovery drops it
            await store.atomic_lifecycle_commit(
                A, RuntimeState.IDLE, [queued, staged, done, ephemeral]
            )
            await store.persist_input_state(B, other)
            queued.recovery_count = staged.recovery_count = 1  # as a driver does
            staged.apply(il.RollbackStaged())
            await store.commit_recovery(A, RuntimeState.IDLE, [staged], [queued])
            assert await self._counts(store, A) == {
                queued.input_id: 1,
                staged.input_id: 1,
                done.input_id: 0,
                ephemeral.input_id: 0,
            }
            assert await store.load_input_state(A, queued.input_id) == queued
            assert await store.load_input_states(B) == [other]  # S-3
            await store.persist_input_state(A, queued)  # written with its count
            assert (await self._counts(store, A))[queued.input_id] == 1
            queued.recovery_count = staged.recovery_count = 2
            with pytest.raises(RuntimeStoreError):
                await store.commit_recovery(
                    A, RuntimeState.RETIRED, [poisoned(staged)], [queued, staged]
                )
            assert await store.load_runtime_state(A) is RuntimeState.IDLE
            assert (await self._counts(store, A))[queued.input_id] == 1
            await store.commit_recovery(A, RuntimeState.IDLE, [], [queued, staged])
            assert await self._counts(store, A) == {
                queued.input_id: 2,
                staged.input_id: 2,
                done.input_id: 0,
                ephemeral.input_id: 0,
            }

        self.run(body)

    @staticmethod
    async def _counts(
        store: RuntimeStore, runtime_id: LogicalRuntimeId
    ) -> dict[InputId, int]:
        return {
            s.input_id: s.recovery_count
            for s in await store.load_input_states(runtime_id)
        }

    def test_atomic_apply_is_all_or_nothing(self) -> None:
        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            good, bad = rich_state(4, run_id), poisoned(rich_state(4, run_id))
            receipt = receipt_for(run_id, [good.input_id, bad.input_id])
            with pytest.raises(RuntimeStoreError):
                await store.atomic_apply(
                    A, SessionDelta(session_snapshot=b"s"), receipt, [good, bad]
                )
            assert await store.load_boundary_receipt(A, run_id, 0) is None
            assert await store.load_session_snapshot(A) is None
            assert await store.load_input_states(A) == []

        self.run(body)

    def test_session_boundary_commit_is_all_or_nothing(self) -> None:
        """S-5: a state that cannot be encoded fails the whole commit as
        ``WriteFailed`` in every store; nothing is written. (Its phase is
        never a reason: S-3.)"""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            state = poisoned(rich_state(4, run_id))
            with pytest.raises(RuntimeStoreError.WriteFailed):
                await store.commit_session_boundary(
                    A,
                    SessionDelta(session_snapshot=b"s"),
                    run_id,
                    RunApplyBoundary.RUN_START,
                    [state.input_id],
                    [state],
                )
            assert await store.load_boundary_receipt(A, run_id, 0) is None
            assert await store.load_session_snapshot(A) is None
            assert self.raw_rows(store, records.INPUTS, A) == {}

        self.run(body)

    @pytest.mark.parametrize("call", ["atomic_apply", "commit_session_boundary"])
    def test_a_wrongly_typed_session_delta_writes_nothing(self, call: str) -> None:
        """S-5 / S-6: a session delta that is not a ``SessionDelta`` (or a
        missing one where a boundary needs it) is ``WriteFailed`` naming it,
        and neither the receipt nor anything else is written."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            bad: Any = b"raw" if call == "atomic_apply" else None
            write = (
                store.atomic_apply(A, bad, receipt_for(run_id, []), [])
                if call == "atomic_apply"
                else store.commit_session_boundary(
                    A, bad, run_id, RunApplyBoundary.RUN_START, [], []
                )
            )
            with pytest.raises(RuntimeStoreError.WriteFailed, match="SessionDelta"):
                await write
            assert await store.load_boundary_receipts(A) == []
            assert await store.load_session_snapshot(A) is None

        self.run(body)

    def test_failed_write_leaves_the_store_usable(self) -> None:
        async def body(store: RuntimeStore) -> None:
            with pytest.raises(RuntimeStoreError):
                await store.persist_input_state(A, poisoned(rich_state(1)))
            state = rich_state(1)
            await store.persist_input_state(A, state)
            assert await store.load_input_state(A, state.input_id) == state

        self.run(body)

    def test_wrongly_typed_values_are_write_failures_naming_them(self) -> None:
        """S-2: a value of the wrong type is ``WriteFailed`` naming what was
        expected, from every store alike, and nothing is written."""

        async def body(store: RuntimeStore) -> None:
            with pytest.raises(RuntimeStoreError.WriteFailed, match="RuntimeState"):
                await store.persist_runtime_state(A, "idle")  # type: ignore[arg-type]
            with pytest.raises(RuntimeStoreError.WriteFailed, match="InputState"):
                await store.persist_input_state(A, "x")  # type: ignore[arg-type]
            with pytest.raises(RuntimeStoreError.WriteFailed, match="InputState"):
                await store.atomic_lifecycle_commit(
                    A,
                    RuntimeState.IDLE,
                    [rich_state(1), None],  # type: ignore[list-item]
                )
            for table in (records.INPUTS, records.STATES):
                assert self.raw_rows(store, table, A) == {}

        self.run(body)

    # ---------------------------------------------------------------- isolation

    def test_runtimes_are_isolated(self) -> None:
        """S-3: runtime B never sees runtime A's rows."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            state = rich_state(4, run_id)
            await store.atomic_apply(
                A,
                SessionDelta(session_snapshot=b"a"),
                receipt_for(run_id, [state.input_id]),
                [state],
            )
            await store.persist_runtime_state(A, RuntimeState.RETIRED)
            assert await store.load_input_states(B) == []
            assert await store.load_input_state(B, state.input_id) is None
            assert await store.load_boundary_receipt(B, run_id, 0) is None
            assert await store.load_session_snapshot(B) is None
            assert await store.load_runtime_state(B) is None
            assert await store.load_boundary_receipts(B) == []

        self.run(body)

    # ---------------------------------------------------------------- corrupt data

    @pytest.mark.parametrize("data", [b"not json", b'{"input_id": 5}', b"{}"])
    def test_corrupt_input_row_names_runtime_record_and_table(
        self, data: bytes
    ) -> None:
        async def body(store: RuntimeStore) -> None:
            state = rich_state(1)
            await store.persist_input_state(A, state)
            self.corrupt_row(store, records.INPUTS, A, str(state.input_id), data)
            for read in (
                store.load_input_states(A),
                store.load_input_state(A, state.input_id),
            ):
                with pytest.raises(RuntimeStoreError.ReadFailed) as err:
                    await read
                message = str(err.value)
                assert records.INPUTS in message
                assert str(A) in message
                assert str(state.input_id) in message

        self.run(body)

    def test_corrupt_receipt_and_phase_rows_are_read_failures(self) -> None:
        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            await store.atomic_apply(A, None, receipt_for(run_id, []), [])
            await store.persist_runtime_state(A, RuntimeState.IDLE)
            self.corrupt_row(store, records.RECEIPTS, A, f"{run_id}/0", b"[1]")
            self.corrupt_row(store, records.STATES, A, str(A), b'"sleeping"')
            with pytest.raises(RuntimeStoreError.ReadFailed, match=records.RECEIPTS):
                await store.load_boundary_receipt(A, run_id, 0)
            with pytest.raises(RuntimeStoreError.ReadFailed, match=records.STATES):
                await store.load_runtime_state(A)

        self.run(body)

    def test_a_receipt_row_naming_another_receipt_is_a_read_failure(self) -> None:
        """Decision 16 and D-11: recovery trusts a receipt to be the one its
        key names; a row holding another run's (or sequence's) receipt is
        corrupt, on every read path, naming the table and the record."""

        async def body(store: RuntimeStore) -> None:
            run_id, other = RunId.new(), RunId.new()
            await store.atomic_apply(A, None, receipt_for(run_id, []), [])
            foreign = records.encode_receipt(receipt_for(other, [], sequence=7))
            self.corrupt_row(store, records.RECEIPTS, A, f"{run_id}/0", foreign)
            with pytest.raises(RuntimeStoreError.ReadFailed, match=f"{run_id}/0"):
                await store.load_boundary_receipt(A, run_id, 0)
            with pytest.raises(RuntimeStoreError.ReadFailed, match=records.RECEIPTS):
                await store.load_boundary_receipts(A)

        self.run(body)

    @pytest.mark.parametrize(
        "field",
        [
            "sequence",
            "message_count",
            "run_id",
            "contributing_input_ids",
            "conversation_digest",
            "big_sequence",
        ],
    )
    def test_a_receipt_it_could_not_read_back_is_refused(self, field: str) -> None:
        """S-6 and the bad-input rule: a receipt with a wrongly typed field
        (a struct is not checked when built in code) is ``WriteFailed``
        naming the field, and nothing is written: stored, it would fail
        every later read, and so every recovery."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            good = receipt_for(run_id, [InputId.new()])
            wrong: dict[str, object] = {
                "sequence": "0",
                "message_count": True,
                "run_id": str(run_id),
                "contributing_input_ids": ["not-an-id"],
                "conversation_digest": "\ud800",  # a lone surrogate
                "big_sequence": 2**63,
            }
            name = "sequence" if field == "big_sequence" else field
            bad = msgspec.structs.replace(good, **{name: wrong[field]})
            with pytest.raises(RuntimeStoreError.WriteFailed, match=name):
                await store.atomic_apply(A, None, bad, [])
            assert await store.load_boundary_receipts(A) == []

        self.run(body)

    @pytest.mark.parametrize("sequence", [True, "0", 0.0])
    def test_a_receipt_lookup_needs_an_int_sequence(self, sequence: object) -> None:
        """A lookup by a sequence that is not an int is refused naming it,
        never blamed on the stored receipt."""

        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            await store.atomic_apply(A, None, receipt_for(run_id, []), [])
            with pytest.raises(RuntimeStoreError.ReadFailed, match="must be an int"):
                await store.load_boundary_receipt(A, run_id, sequence)  # type: ignore[arg-type]

        self.run(body)

    # ---------------------------------------------------------------- verify

    def test_verify_reports_inconsistencies(self) -> None:
        async def body(store: RuntimeStore) -> None:
            run_id = RunId.new()
            consumed = rich_state(5, run_id)  # consumed by run_id/0 ...
            await store.persist_input_state(A, consumed)  # ... but no receipt
            stray = InputId.new()
            await store.atomic_apply(A, None, receipt_for(RunId.new(), [stray]), [])
            problems = await verify(store, A)
            assert len(problems) == 2, problems
            assert any(
                "no receipt names it" in p and str(consumed.input_id) in p
                for p in problems
            )
            assert any(str(stray) in p for p in problems)
            assert await verify(store, B) == []

        self.run(body)
