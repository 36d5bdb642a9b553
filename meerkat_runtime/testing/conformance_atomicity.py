"""The atomicity part of the store conformance suite: every multi-record
commit is all or nothing, and a refused write (bad type, unencodable state)
writes nothing and leaves the store usable.

``StoreConformance`` composes it with the other contract groups.
"""

from __future__ import annotations

from typing import Any

import pytest

from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.inputs import (
    InputDurability,
)
from meerkat_runtime.runs import RunApplyBoundary
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStore, RuntimeStoreError, SessionDelta
from meerkat_runtime.testing.conformance_support import (
    A,
    B,
    ConformanceHooks,
    poisoned,
    receipt_for,
    rich_state,
)


class AtomicityConformance(ConformanceHooks):
    """All-or-nothing commits and write failures that leave nothing behind."""

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
