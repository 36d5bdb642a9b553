"""``InMemoryRuntimeStore``: the contract, in memory, for tests and ephemeral use.

Theory of operation: records are kept as encoded JSON exactly as a durable
store would hold them, so what a driver reads back is a decoded copy, never
a shared object. One asyncio lock makes each method one critical section; a
multi-row write builds every new row first and publishes them together, so a
failure part-way leaves nothing visible (S-9).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from meerkat_runtime.codec import gc_paused
from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import AnyInput, Input
from meerkat_runtime.outcomes import AcceptOutcome, Deduplicated, Submitted
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store import inbox, leases, records, work
from meerkat_runtime.store.base import (
    AppliesRunEnds,
    ConflictError,
    SessionDelta,
    mint_receipt,
    required_snapshot,
    snapshot_of,
    store_errors,
)

_Key = tuple[str, str, int]  # (runtime, run, sequence)
# An inbox row: (arrival, idempotency key, pending, stored record).
_InboxRow = tuple[int, str | None, bool, bytes]


class InMemoryRuntimeStore(AppliesRunEnds):
    # A write's only suspension point is waiting for the lock, before it
    # changes anything; the body under the lock never awaits.
    cancel_safe_writes = True

    keeps_leases = True
    keeps_inbox = True
    # It holds every record in memory anyway, and its recovery rewrites each
    # pending record (which needs the payloads): it loads them all (PD-64).
    lazy_payloads = False

    def __init__(self, *, lease_ttl: float = leases.DEFAULT_LEASE_TTL) -> None:
        self.lease_ttl = leases.checked_ttl(lease_ttl)
        # Wall clock of lease expiries (PD-37); a seam for tests.
        self.lease_clock: leases.Clock = time.time
        self._lock = asyncio.Lock()
        self._inputs: dict[str, dict[str, bytes]] = {}
        self._receipts: dict[_Key, bytes] = {}
        self._snapshots: dict[str, bytes] = {}
        self._states: dict[str, bytes] = {}
        self._leases: dict[str, leases.Lease] = {}
        self._inbox: dict[str, dict[str, _InboxRow]] = {}
        self._arrivals: dict[str, int] = {}  # the last arrival given, per runtime
        # Testing seam: raised by the next write instead of writing (once).
        self.fail_next_commit: Exception | None = None

    # ---------------------------------------------------------------- writes

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        async with self._writing(runtime_id):
            self._publish(str(runtime_id), self._encode_all([state]))

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        async with self._writing(runtime_id):
            self._states[str(runtime_id)] = records.encode_phase(state)

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        async with self._writing(runtime_id):
            rows = self._encode_all(input_states)
            self._states[str(runtime_id)] = records.encode_phase(runtime_state)
            self._publish(str(runtime_id), rows)

    async def _apply(  # S-6, and with runtime_state also S-8 (PD-70)
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState | None,
        input_updates: Sequence[InputState],
    ) -> None:
        """A boundary, and with ``runtime_state`` also the run's end."""
        async with self._writing(runtime_id):
            # Everything is read and encoded first: a bad value fails before
            # anything is published.
            snapshot = snapshot_of(session_delta)
            rid = str(runtime_id)
            key = (rid, str(receipt.run_id), receipt.sequence)
            encoded = records.encode_receipt(receipt)
            exists = self._receipt_exists(key, encoded)  # a different one raises
            rows = self._encode_all(input_updates)
            phase = (
                None if runtime_state is None else records.encode_phase(runtime_state)
            )
            if not exists:
                self._receipts[key] = encoded
            if snapshot is not None:
                self._snapshots[rid] = snapshot
            if phase is not None:
                self._states[rid] = phase
            self._publish(rid, rows)

    async def commit_session_boundary(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta,
        run_id: RunId,
        boundary: RunApplyBoundary,
        contributing_input_ids: Sequence[InputId],
        input_updates: Sequence[InputState],
    ) -> RunBoundaryReceipt:
        async with self._writing(runtime_id):
            snapshot = required_snapshot(session_delta)
            rid = str(runtime_id)
            sequence = 1 + max(
                (
                    seq
                    for (r, run, seq) in self._receipts
                    if r == rid and run == str(run_id)
                ),
                default=-1,
            )
            receipt = mint_receipt(
                run_id, boundary, contributing_input_ids, sequence, session_delta
            )
            stamped = [s.clone() for s in input_updates]
            for state in stamped:
                state.stamp_receipt_metadata(run_id, sequence)
            rows = self._encode_all(stamped)
            encoded = records.encode_receipt(receipt)
            self._receipts[(rid, str(run_id), sequence)] = encoded
            self._snapshots[rid] = snapshot
            self._publish(rid, rows)
            return receipt

    @contextlib.asynccontextmanager
    async def _writing(self, runtime_id: LogicalRuntimeId) -> AsyncIterator[None]:
        """One write's critical section. Whatever it raises (a value that
        cannot be encoded or stamped, a wrong type, a fenced epoch) is a
        store error, as the SQLite store reports it; nothing was published."""
        async with self._lock:
            with store_errors():
                failure, self.fail_next_commit = self.fail_next_commit, None
                if failure is not None:
                    raise failure
                fence = leases.fence_for(runtime_id)
                if fence is not None:
                    lease = self._leases.get(fence[0])
                    leases.check_fence(
                        fence[0], fence[1], None if lease is None else lease.epoch
                    )
                yield

    # ---------------------------------------------------------------- inbox

    async def submit_to_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        input: Input,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> AcceptOutcome:
        checked = inbox.checked_submission(input, max_input_bytes)
        if not isinstance(checked, Input):
            return checked
        rid, key = str(runtime_id), inbox.key_of(checked)
        async with self._writing(runtime_id):
            stored = self._states.get(rid)
            phase = None if stored is None else records.decode_phase(rid, stored)
            refused = inbox.refused_in(phase)
            if refused is not None:
                return refused
            duplicate = self._inbox_duplicate(rid, checked, key)
            if duplicate is not None:
                return duplicate
            data = inbox.encode_entry(checked)
            arrival = self._arrivals.get(rid, 0) + 1
            self._arrivals[rid] = arrival
            rows = self._inbox.setdefault(rid, {})
            rows[str(checked.id())] = (arrival, key, True, data)
        return Submitted(input_id=checked.id())

    def _inbox_duplicate(
        self, rid: str, inp: Input, key: str | None
    ) -> AcceptOutcome | None:
        """PD-59: the inbox first, then the ledger (as the SQL stores)."""
        rows = self._inbox.get(rid, {})
        iid = str(inp.id())
        for entry_id, (arrival, entry_key, pending, data) in rows.items():
            if entry_id == iid or (key is not None and entry_key == key):
                row = (entry_id, arrival, data, entry_key, pending)
                entry = inbox.decode_row(rid, row)
                found = inbox.duplicate_of(inp, entry)
                if found is not None:
                    return found
        ledger = self._inputs.get(rid, {})
        if iid in ledger:
            return Deduplicated(input_id=inp.id(), existing_id=inp.id())
        if key is None:
            return None
        pattern = inbox.key_pattern(key)
        candidates = [
            records.decode_state(rid, i, d) for i, d in ledger.items() if pattern in d
        ]
        existing = inbox.ledger_key_match(candidates, key)
        return (
            None
            if existing is None
            else Deduplicated(input_id=inp.id(), existing_id=existing)
        )

    async def admit_from_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        taken: Sequence[inbox.InboxEntry],
    ) -> None:
        rid = str(runtime_id)
        async with self._writing(runtime_id):
            rows = self._inbox.get(rid, {})
            changes: dict[str, _InboxRow | None] = {}
            for entry in taken:
                iid = str(entry.input_id)
                row = rows.get(iid)
                if row is None or not row[2] or iid in changes:
                    raise ConflictError(
                        f"inbox entry {iid!r} of runtime {rid!r} is no longer pending"
                    )
                settlement = entry.settlement
                changes[iid] = (
                    None
                    if settlement is None
                    else (
                        row[0],
                        row[1],
                        False,
                        inbox.encode_entry(entry.input, settlement),
                    )
                )
            encoded = self._encode_all(input_states)
            phase = records.encode_phase(runtime_state)
            for iid, new in changes.items():
                if new is None:
                    del rows[iid]
                else:
                    rows[iid] = new
            self._states[rid] = phase
            self._publish(rid, encoded)

    async def load_inbox(
        self, runtime_id: LogicalRuntimeId, limit: int | None = None
    ) -> list[inbox.InboxEntry]:
        entries = await self._inbox_rows(str(runtime_id), pending_only=True)
        return entries[:limit]

    async def load_whole_inbox(
        self, runtime_id: LogicalRuntimeId
    ) -> list[inbox.InboxEntry]:
        return await self._inbox_rows(str(runtime_id), pending_only=False)

    async def _inbox_rows(self, rid: str, pending_only: bool) -> list[inbox.InboxEntry]:
        async with self._lock:
            rows = sorted(
                (arrival, iid, data, key, pending)
                for iid, (arrival, key, pending, data) in self._inbox.get(
                    rid, {}
                ).items()
                if pending or not pending_only
            )
        return [
            inbox.decode_row(rid, (iid, arrival, data, key, pending))
            for arrival, iid, data, key, pending in rows
        ]

    async def load_inbox_entry(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> inbox.InboxEntry | None:
        rid, iid = str(runtime_id), str(input_id)
        async with self._lock:
            row = self._inbox.get(rid, {}).get(iid)
        if row is None:
            return None
        arrival, key, pending, data = row
        return inbox.decode_row(rid, (iid, arrival, data, key, pending))

    async def list_runtimes_with_inbox(self) -> list[LogicalRuntimeId]:
        async with self._lock:
            return [
                LogicalRuntimeId(rid)
                for rid, rows in sorted(self._inbox.items())
                if any(row[2] for row in rows.values())
            ]

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
            async with self._lock:
                lease = leases.claimed(
                    self._leases.get(rid), rid, owner, span, self.lease_clock()
                )
                self._leases[rid] = lease
                return lease.epoch

        return await leases.claim_waiting(attempt, wait, self.lease_clock)

    async def renew(
        self,
        owner: str,
        epochs: Mapping[LogicalRuntimeId, int],
        ttl: float | None = None,
    ) -> list[LogicalRuntimeId]:
        span = self.lease_ttl if ttl is None else leases.checked_ttl(ttl)
        lost: list[LogicalRuntimeId] = []
        async with self._lock:
            expires_at = self.lease_clock() + span
            for runtime_id, epoch in epochs.items():
                rid = str(runtime_id)
                if leases.renewable(self._leases.get(rid), owner, epoch):
                    self._leases[rid] = leases.Lease(rid, owner, epoch, expires_at)
                else:
                    lost.append(runtime_id)
        return lost

    async def release(
        self, runtime_id: LogicalRuntimeId, owner: str, epoch: int
    ) -> None:
        rid = str(runtime_id)
        async with self._lock:
            if leases.still_held(self._leases.get(rid), owner, epoch):
                self._leases[rid] = leases.Lease(rid, owner, epoch, 0.0)

    async def load_leases(self) -> list[leases.Lease]:
        async with self._lock:
            return sorted(self._leases.values(), key=lambda lease: lease.runtime_id)

    def _receipt_exists(self, key: _Key, encoded: bytes) -> bool:
        stored = self._receipts.get(key)
        if stored is None:
            return False
        if records.same_receipt(key[0], stored, encoded):
            return True
        raise ConflictError(
            f"receipt conflict: runtime {key[0]!r} run {key[1]!r} sequence {key[2]} "
            "already has a different receipt"
        )

    @staticmethod
    def _encode_all(states: Sequence[InputState]) -> list[tuple[str, bytes]]:
        return [records.input_row(s) for s in states]

    def _publish(self, runtime_id: str, rows: list[tuple[str, bytes]]) -> None:
        table = self._inputs.setdefault(runtime_id, {})
        table.update(rows)

    # ---------------------------------------------------------------- reads

    async def load_input_states(self, runtime_id: LogicalRuntimeId) -> list[InputState]:
        return await self._load_inputs(runtime_id, records.decode_state)

    async def load_input_skeletons(
        self, runtime_id: LogicalRuntimeId
    ) -> list[InputState]:
        return await self._load_inputs(runtime_id, records.decode_skeleton_state)

    async def _load_inputs(
        self,
        runtime_id: LogicalRuntimeId,
        decode: Callable[[str, str, object], InputState],
    ) -> list[InputState]:
        rid = str(runtime_id)
        async with self._lock:
            rows = list(self._inputs.get(rid, {}).items())
        with gc_paused():  # a bulk decode: see codec.gc_paused
            return [decode(rid, iid, data) for iid, data in rows]

    async def load_payloads(
        self, runtime_id: LogicalRuntimeId, input_ids: Sequence[InputId]
    ) -> dict[InputId, AnyInput]:
        rid = str(runtime_id)
        async with self._lock:
            table = self._inputs.get(rid, {})
            rows = [(str(i), table[str(i)]) for i in input_ids if str(i) in table]
        return records.payloads_found(rid, input_ids, rows)

    async def list_runtimes_with_work(
        self, *, unowned: bool = False
    ) -> list[LogicalRuntimeId]:
        async with self._lock:
            now = self.lease_clock()
            tables = [
                (rid, list(rows.values()))
                for rid, rows in self._inputs.items()
                if not (
                    unowned and rid in self._leases and self._leases[rid].held_at(now)
                )
            ]
        return sorted(
            LogicalRuntimeId(rid)
            for rid, rows in tables
            if any(work.is_work(row) for row in rows)
        )

    async def load_input_state(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InputState | None:
        rid = str(runtime_id)
        async with self._lock:
            data = self._inputs.get(rid, {}).get(str(input_id))
        return None if data is None else records.decode_state(rid, str(input_id), data)

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        key = (str(runtime_id), str(run_id), records.receipt_sequence(sequence))
        async with self._lock:
            data = self._receipts.get(key)
        return (
            None
            if data is None
            else records.decode_receipt(key[0], f"{key[1]}/{key[2]}", data)
        )

    async def load_boundary_receipts(
        self, runtime_id: LogicalRuntimeId
    ) -> list[RunBoundaryReceipt]:
        rid = str(runtime_id)
        async with self._lock:
            rows = [(k, v) for k, v in self._receipts.items() if k[0] == rid]
        return [records.decode_receipt(rid, f"{k[1]}/{k[2]}", v) for k, v in rows]

    async def load_session_snapshot(self, runtime_id: LogicalRuntimeId) -> bytes | None:
        async with self._lock:
            return self._snapshots.get(str(runtime_id))

    async def load_runtime_state(
        self, runtime_id: LogicalRuntimeId
    ) -> RuntimeState | None:
        rid = str(runtime_id)
        async with self._lock:
            data = self._states.get(rid)
        return None if data is None else records.decode_phase(rid, data)

    # ---------------------------------------------------------------- testing

    @contextlib.asynccontextmanager
    async def writes_paused(self) -> AsyncIterator[None]:
        """Every call waits while inside (a write held up by the store)."""
        async with self._lock:
            yield

    # ---------------------------------------------------------------- backdoor

    def raw_rows(self, table: str, runtime_id: LogicalRuntimeId) -> dict[str, bytes]:
        """Stored bytes by record id (tests and the conformance suite)."""
        rid = str(runtime_id)
        if table == records.INPUTS:
            return dict(self._inputs.get(rid, {}))
        if table == records.RECEIPTS:
            return {
                f"{k[1]}/{k[2]}": v for k, v in self._receipts.items() if k[0] == rid
            }
        if table == records.STATES:
            return {rid: self._states[rid]} if rid in self._states else {}
        if table == inbox.INBOX:
            return {iid: row[3] for iid, row in self._inbox.get(rid, {}).items()}
        return {rid: self._snapshots[rid]} if rid in self._snapshots else {}

    def corrupt_row(
        self, table: str, runtime_id: LogicalRuntimeId, record_id: str, data: bytes
    ) -> None:
        """Overwrite one stored row with arbitrary bytes (corruption tests)."""
        rid = str(runtime_id)
        if table == records.INPUTS:
            self._inputs.setdefault(rid, {})[record_id] = data
        elif table == records.STATES:
            self._states[rid] = data
        elif table == inbox.INBOX:
            arrival, key, pending, _ = self._inbox[rid][record_id]
            self._inbox[rid][record_id] = (arrival, key, pending, data)
        else:
            run, seq = record_id.rsplit("/", 1)
            self._receipts[(rid, run, int(seq))] = data
