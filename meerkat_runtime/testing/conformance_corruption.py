"""The corrupt-data part of the store conformance suite: damaged rows read as
``ReadFailed`` naming where they are, receipts that could not be read back
are refused at write time, and ``verify`` reports inconsistencies.

``StoreConformance`` composes it with the other contract groups.
"""

from __future__ import annotations

import msgspec
import pytest

from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStore, RuntimeStoreError
from meerkat_runtime.store.verify import verify
from meerkat_runtime.testing.conformance_support import (
    A,
    B,
    ConformanceHooks,
    receipt_for,
    rich_state,
)


class CorruptionConformance(ConformanceHooks):
    """Corrupt rows, unreadable receipts and ``verify``."""

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
