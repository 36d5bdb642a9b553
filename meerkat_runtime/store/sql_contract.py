"""What the two SQL stores (SQLite, PostgreSQL) do alike, written once.

``SqlRuntimeStore`` holds the contract methods whose logic does not depend
on the database: claiming a lease (checked arguments, a refusal raised,
waiting for the holder), renewing leases (which runtimes were lost), and
the reads of one kind of record (a receipt, a runtime's receipts, its
session snapshot, its phase), decoded by ``records``, and the two loads of a
runtime's inputs (whole or as skeletons) over the store's ``_load_inputs``. Each store gives the
primitives: one claim attempt, one renewal, rows of a query in its own SQL
dialect, and the text of those queries (``RecordQueries``).

What differs stays in the stores: every write (the transactions, group
commit, the fence check), the load of a runtime's inputs (SQLite streams
them and counts them again, PD-33; PostgreSQL does not, PD-54) and the
lifecycle.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from meerkat_runtime.errors import RuntimeOwnedError
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store import leases, records
from meerkat_runtime.store.base import RuntimeStore


@dataclass(frozen=True)
class RecordQueries:
    """The single-record reads of a SQL store, in its dialect (positional
    parameters, in the order given)."""

    receipt: str  # (runtime, run, sequence) -> receipt_json
    receipts: str  # (runtime,) -> run, sequence, receipt_json in commit order
    snapshot: str  # (runtime,) -> session_snapshot
    phase: str  # (runtime,) -> runtime_state_json


class SqlRuntimeStore(RuntimeStore):
    """The contract methods the SQL stores share (see the module notes)."""

    keeps_leases = True

    @property
    @abstractmethod
    def queries(self) -> RecordQueries:
        """The store's SQL for the reads of this class."""

    @abstractmethod
    async def _rows(self, sql: str, params: tuple[Any, ...], context: str) -> list[Any]:
        """Every row ``sql`` returns, read on one of the store's connections."""

    @abstractmethod
    async def _claim_once(
        self, runtime_id: str, owner: str, ttl: float
    ) -> int | RuntimeOwnedError:
        """One claim: the new epoch, or the refusal (not raised)."""

    @abstractmethod
    def _claim_clock(self) -> leases.Clock:
        """The clock a waiting claim is paced by."""

    @abstractmethod
    async def _renew_lost(
        self, owner: str, pairs: list[tuple[str, int]], ttl: float
    ) -> Collection[str]:
        """Renew the (runtime, epoch) leases in one write; the runtimes not
        renewed."""

    @abstractmethod
    async def _load_inputs(
        self,
        runtime_id: LogicalRuntimeId,
        decode: Callable[[str, str, object], InputState],
    ) -> list[InputState]:
        """A runtime's input records in arrival order, each read by
        ``decode`` (whole, or its skeleton: PD-64)."""

    async def load_input_states(self, runtime_id: LogicalRuntimeId) -> list[InputState]:
        return await self._load_inputs(runtime_id, records.decode_state)

    async def load_input_skeletons(
        self, runtime_id: LogicalRuntimeId
    ) -> list[InputState]:
        return await self._load_inputs(runtime_id, records.decode_skeleton_state)

    # ---------------------------------------------------------------- ownership

    async def claim(
        self,
        runtime_id: LogicalRuntimeId,
        owner: str,
        ttl: float | None = None,
        *,
        wait: float = 0.0,
    ) -> int:
        rid, owner = str(runtime_id), leases.checked_owner(owner)
        span = self.lease_ttl if ttl is None else leases.checked_ttl(ttl)

        async def attempt() -> int:
            outcome = await self._claim_once(rid, owner, span)
            if isinstance(outcome, RuntimeOwnedError):
                raise outcome
            return outcome

        return await leases.claim_waiting(attempt, wait, self._claim_clock())

    async def renew(
        self,
        owner: str,
        epochs: Mapping[LogicalRuntimeId, int],
        ttl: float | None = None,
    ) -> list[LogicalRuntimeId]:
        span = self.lease_ttl if ttl is None else leases.checked_ttl(ttl)
        ids = {str(rid): rid for rid in epochs}
        pairs = [(key, epochs[rid]) for key, rid in ids.items()]
        lost = set(await self._renew_lost(owner, pairs, span))
        return [rid for key, rid in ids.items() if key in lost]

    # ---------------------------------------------------------------- reads

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        rid = str(runtime_id)
        sequence = records.receipt_sequence(sequence)
        rows = await self._rows(
            self.queries.receipt, (rid, str(run_id), sequence), "load_boundary_receipt"
        )
        if not rows:
            return None
        return records.decode_receipt(rid, f"{run_id}/{sequence}", rows[0][0])

    async def load_boundary_receipts(
        self, runtime_id: LogicalRuntimeId
    ) -> list[RunBoundaryReceipt]:
        rid = str(runtime_id)
        rows = await self._rows(self.queries.receipts, (rid,), "load_boundary_receipts")
        return [
            records.decode_receipt(rid, f"{run}/{seq}", data) for run, seq, data in rows
        ]

    async def load_session_snapshot(self, runtime_id: LogicalRuntimeId) -> bytes | None:
        rid = str(runtime_id)
        rows = await self._rows(self.queries.snapshot, (rid,), "load_session_snapshot")
        if not rows:
            return None
        return records.stored_bytes(rows[0][0], records.SNAPSHOTS, rid)

    async def load_runtime_state(
        self, runtime_id: LogicalRuntimeId
    ) -> RuntimeState | None:
        rid = str(runtime_id)
        rows = await self._rows(self.queries.phase, (rid,), "load_runtime_state")
        return records.decode_phase(rid, rows[0][0]) if rows else None
