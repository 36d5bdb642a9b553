"""The record part of the store conformance suite: every record round-trips,
boundary commits mint and stamp receipts (S-5, decision 16), and runtimes
never see each other's rows (S-3).

``StoreConformance`` composes it with the other contract groups.
"""

from __future__ import annotations

import pytest

from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.runs import RunApplyBoundary
from meerkat_runtime.store.base import (
    RuntimeStore,
    RuntimeStoreError,
    SessionDelta,
    load_payloads,
    load_skeletons,
    loads_lazily,
)
from meerkat_runtime.testing.conformance_support import (
    A,
    B,
    ConformanceHooks,
    receipt_for,
    rich_state,
)


class RecordConformance(ConformanceHooks):
    """Round trips, boundary receipts and runtime isolation."""

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

    # ---------------------------------------------------------------- payloads

    def test_skeletons_and_payloads_read_back_what_was_written(self) -> None:
        """PD-64: a skeleton is the record with, for a store that
        ``lazy_payloads``, its payload left in the store (only its key
        kept); ``load_payloads`` reads back exactly the stored payloads, in
        one call, of any of a runtime's inputs."""

        async def body(store: RuntimeStore) -> None:
            states = [rich_state(steps) for steps in (0, 1, 5)]
            await store.atomic_lifecycle_commit(A, RuntimeState.IDLE, states)
            skeletons = {s.input_id: s for s in await load_skeletons(store, A)}
            for state in states:
                skeleton = skeletons[state.input_id]
                assert skeleton.payload_key() == state.payload_key()
                assert skeleton.history() == state.history()
                if loads_lazily(store):
                    assert not skeleton.payload_loaded()
                else:
                    assert skeleton == state
            ids = [s.input_id for s in states[::-1]]
            payloads = await load_payloads(store, A, ids)
            assert payloads == {s.input_id: s.persisted_input for s in states}

        self.run(body)

    def test_a_payload_the_store_does_not_hold_is_corrupt_naming_the_input(
        self,
    ) -> None:
        """A payload asked for by id and not found (another runtime's input,
        an unknown one) is ``Corrupt``, naming the input: never an absence
        the caller could take for an empty payload."""

        async def body(store: RuntimeStore) -> None:
            state = rich_state(1)
            await store.persist_input_state(B, state)
            with pytest.raises(RuntimeStoreError.Corrupt, match=str(state.input_id)):
                await load_payloads(store, A, [state.input_id])

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
