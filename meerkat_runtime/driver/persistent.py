"""``PersistentRuntimeDriver``: a runtime core plus a store: durable before ack.

Theory of operation (docs/behaviour.md section 7 and decisions 4, 5, 13, 14, 18,
22, 23, 24): every operation that must survive a restart runs inside a
checkpoint of its core (``journal``, the one undo mechanism). The in-memory
logic runs first; then the input states the operation touched are written
in one atomic store call (a lifecycle commit adds the stored phase and the
states the pure delegations changed since the last one, PD-6); only when
that returns is the caller answered. If the store fails, the checkpoint is
undone, so memory never runs ahead of the disk (decision 14), and the caller
gets ``RuntimeDriverError.Internal`` with the store's text, raised from the
store error, so its type and ``retryable`` survive (PD-28).
Ephemeral-durability inputs are never written (decision 13). Staging is not
persisted (D-2): after a crash, a staged input is recovered from its queued
record.

``recover()`` reads what the store holds (states, phase, the receipts that
may name applied inputs), refuses records the spec cannot have produced
(``audit_checks``, PD-49), and hands it to the core (``recovery``), which
rebuilds the runtime without IO: applied inputs whose boundary receipt was
committed are consumed, those without one run again, everything else
pre-run goes back to its lane with its stored kind, lane and policy
(decision 4); a failure changes nothing in memory or on disk (decision 22).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from meerkat_runtime.audit_checks import check_loaded, stored_receipts
from meerkat_runtime.blobs import BlobStore, BlobStoreError
from meerkat_runtime.codec import gc_paused
from meerkat_runtime.driver.core import (
    DEFAULT_MAX_PENDING_INPUTS,
    RuntimeControlCommand,
    RuntimeCore,
)
from meerkat_runtime.driver.face import RuntimeDriver
from meerkat_runtime.driver.images import externalize_images, has_inline_images
from meerkat_runtime.driver.journal import Checkpoint, reason_name
from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.errors import (
    FencedError,
    InternalError,
    NotReadyError,
    PendingLimitError,
    ValidationFailedError,
)
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input, InputDurability
from meerkat_runtime.outcomes import (
    Accepted,
    AcceptOutcome,
    Deduplicated,
    DestroyReport,
    RecoveryReport,
    Rejected,
    ResetReport,
    RetireReport,
)
from meerkat_runtime.policy import PolicyTable
from meerkat_runtime.runs import (
    BoundaryApplied,
    RunBoundaryReceipt,
    RunCompleted,
    RunEvent,
    RunStarted,
)
from meerkat_runtime.store.base import (
    CommittedThenCancelled,
    RuntimeStore,
    RuntimeStoreError,
    SessionDelta,
    cancel_safe,
    commit_recovery,
    ends_runs_atomically,
    keeps_inbox,
    load_payloads,
    load_skeletons,
    loads_lazily,
)
from meerkat_runtime.store.inbox import InboxEntry, InboxSettlement
from meerkat_runtime.store.leases import OwnerLease
from meerkat_runtime.telemetry import (
    fenced_write,
    run_withdrawn,
    traced_accept,
    traced_recovery,
    traced_run_end,
    traced_run_event,
)

if TYPE_CHECKING:
    from meerkat_runtime.sessions.ownership import OwnerLeases

T = TypeVar("T")


_S = il.InputLifecycleState
_APPLIED = (_S.APPLIED, _S.APPLIED_PENDING_CONSUMPTION)
RECOVERY_PERSIST_FAILED = "recovery persist failed"  # D-11 step 11
# PD-65: past this many unfinished inputs, a durable accept leaves its
# payload in the store (a lazy driver only).
PAYLOADS_KEPT = 1024

# Inbox entries one admission takes at most (one write; bounds its size).
INBOX_BATCH = 256


class PersistentRuntimeDriver(RuntimeDriver):
    """A runtime whose acknowledged inputs survive restarts. It has no
    synchronous mutators: every change a store must hold is awaited."""

    def __init__(
        self,
        runtime_id: LogicalRuntimeId,
        store: RuntimeStore,
        blob_store: BlobStore,
        *,
        policy_table: PolicyTable | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        max_pending_inputs: int = DEFAULT_MAX_PENDING_INPUTS,
        ownership: OwnerLeases | None = None,
        lazy_payloads: bool = False,
    ) -> None:
        """``ownership``: the runtime's lease is claimed from it before the
        first recovery, and every write is fenced by it (PD-36).
        ``lazy_payloads``: over a store that can (``loads_lazily``), leave
        payloads in the store until a run needs them (PD-64, PD-65): then
        ``dequeue_next``, ``payload`` and ``input_state`` answer an input's
        payload only once ``load_payloads`` has brought it back."""
        self.runtime_id = runtime_id
        self._core = RuntimeCore(
            runtime_id,
            policy_table=policy_table,
            max_input_bytes=max_input_bytes,
            max_pending_inputs=max_pending_inputs,
            tracks_unsaved=True,
        )
        self.store = store
        self.blob_store = blob_store
        self.ownership = ownership
        self.lease: OwnerLease | None = None
        self.lazy_payloads = lazy_payloads and loads_lazily(store)
        self.payloads_kept = PAYLOADS_KEPT  # PD-65 (a seam for tests)

    # ================================================================ accept

    @traced_accept
    async def accept_input(self, input: Input) -> AcceptOutcome:
        """D-5: acknowledged only after the store holds the input."""
        # D-5: a refused write surfaces as the store's own text, unprefixed.
        with self._undo_on_failure(None) as checkpoint:
            outcome = self._core.accept(input)
            if not isinstance(outcome, Accepted):
                return outcome  # rejected or deduplicated: nothing to write
            state = self._ledger_state(outcome.input_id)
            moved = has_inline_images(input) and await self._externalize(state)
            await self._persist_accept(checkpoint)
        if moved:  # its state copy is not what was persisted
            outcome = Accepted(
                input_id=outcome.input_id, policy=outcome.policy, state=state.clone()
            )
        self._shed(state)
        return outcome

    def _shed(self, state: InputState) -> None:
        """PD-65: a durable input accepted into a deep queue leaves its
        payload in the store; a short queue keeps it, so a run starting soon
        does not read it back."""
        if (
            self.lazy_payloads
            and self._core.pending_inputs() > self.payloads_kept
            and state.current_state() is _S.QUEUED
            and state.durability is not InputDurability.EPHEMERAL
        ):
            state.drop_payload()

    async def _externalize(self, state: InputState) -> bool:
        """T-20: inline images go to the blob store before the record is
        written; True when the stored payload changed."""
        if (
            state.persisted_input is None
            or state.durability is InputDurability.EPHEMERAL
        ):
            return False
        try:
            payload = await externalize_images(self.blob_store, state.persisted_input)
        except BlobStoreError as exc:
            raise InternalError(
                f"failed to externalize runtime input images: {exc}"
            ) from exc
        state.persisted_input = payload  # type: ignore[assignment]
        return True

    async def _persist_accept(self, checkpoint: Checkpoint) -> None:
        states = self._durable(checkpoint)
        if len(states) == 1:
            await self._write(
                self.store.persist_input_state(self.runtime_id, states[0])
            )
        elif states:
            # Decision 23: a superseded or coalesced input is written in the
            # same commit that acknowledges its replacement.
            await self._write_states(
                states,
                lambda: self.store.atomic_lifecycle_commit(
                    self.runtime_id, self._core.stored_phase(), states
                ),
            )

    async def _write_states(
        self, states: list[InputState], write: Callable[[], Awaitable[None]]
    ) -> None:
        """``_write`` of a call that writes ``states``: a payload left in the
        store is loaded first (a record is written whole, PD-64), and left
        there again afterwards."""
        missing = [s for s in states if not s.payload_loaded()]
        if missing:
            found = await load_payloads(
                self.store, self.runtime_id, [s.input_id for s in missing]
            )
            for state in missing:
                state.load_payload(found[state.input_id])
        try:
            await self._write(write())
        finally:
            for state in missing:
                state.drop_payload()

    async def load_payloads(self, ids: Sequence[InputId]) -> None:
        """Bring the payloads of ``ids`` left in the store back into memory,
        in one read (PD-64). The store's error is raised as it is, nothing
        changed: ``Corrupt`` naming the input whose record fails its checks,
        ``Unavailable`` when trying again may succeed."""
        missing = self._core.payloads_in_store(ids)
        if missing:
            found = await load_payloads(self.store, self.runtime_id, missing)
            self._core.put_payloads(found)

    async def input_state_with_payload(self, input_id: InputId) -> InputState | None:
        """``input_state``, with its payload read from the store when it was
        left there (the copy has it; the runtime's entry stays as it is)."""
        state = self._core.input_state(input_id)
        if state is not None and not state.payload_loaded():
            found = await load_payloads(self.store, self.runtime_id, [input_id])
            state.load_payload(found[input_id])
        return state

    async def _write(self, call: Awaitable[None]) -> None:
        """A store write that a cancelled caller cannot tear in half: the
        write runs to its end, and the caller learns how it ended, so memory
        follows what the store did (decision 14 also under cancellation). A
        store whose writes are cancel-safe does this itself, more cheaply.
        An owner whose lease is lost never writes again (PD-36)."""
        lease = self.lease
        if lease is not None and not lease.valid():
            if asyncio.iscoroutine(call):
                call.close()  # never started: nothing to wait for
            raise lease.refusal()
        try:
            if cancel_safe(self.store):
                await call
                return
            task = asyncio.ensure_future(call)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                while not task.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({task})
                if task.cancelled() or task.exception() is not None:
                    raise
                raise CommittedThenCancelled from None
        except FencedError as exc:
            fenced_write(self.runtime_id)
            if lease is not None:
                lease.lose(f"a write was fenced ({exc})")
            raise

    # ================================================================ inbox

    async def admit_from_inbox(self, limit: int = INBOX_BATCH) -> int:
        """PD-58: admit the first ``limit`` entries of the runtime's inbox,
        in arrival order, as ``accept_input`` would admit them, and remove
        them in the same write (``store.admit_from_inbox``): after a crash
        either the entries are still in the inbox or their states are in
        the ledger. An entry the runtime refuses (not accepting, a
        duplicate by then, a smaller size limit here) is settled with what
        became of it (PD-60); at the pending limit (PD-43) the rest stay in
        the inbox for later. The number of entries taken."""
        if not keeps_inbox(self.store):
            return 0
        entries = await self.store.load_inbox(self.runtime_id, limit)
        if not entries:
            return 0
        with self._undo_on_failure("inbox admission failed") as checkpoint:
            taken = self._admit_entries(entries)
            for entry in taken:
                state = self._core.peek_input_state(entry.input_id)
                if entry.pending and state and has_inline_images(entry.input):
                    await self._externalize(state)
            await self._write(
                self.store.admit_from_inbox(
                    self.runtime_id,
                    self._core.stored_phase(),
                    self._durable(checkpoint),
                    taken,
                )
            )
        return len(taken)

    def _admit_entries(self, entries: list[InboxEntry]) -> list[InboxEntry]:
        """Each entry through the accept pipeline, in order: admitted ones
        as they are, refused ones settled; stops at the pending limit."""
        taken: list[InboxEntry] = []
        for entry in entries:
            try:
                outcome = self._core.accept(entry.input)
            except PendingLimitError:
                break  # the rest wait in the inbox (PD-43)
            except (NotReadyError, ValidationFailedError) as exc:
                taken.append(entry.settled(InboxSettlement(refused=str(exc))))
                continue
            if isinstance(outcome, Deduplicated):
                settlement = InboxSettlement(deduplicated_into=outcome.existing_id)
                taken.append(entry.settled(settlement))
            elif isinstance(outcome, Rejected):
                taken.append(
                    entry.settled(InboxSettlement(refused=str(outcome.reason)))
                )
            else:
                taken.append(entry)
        return taken

    # ================================================================ runs

    @traced_run_event
    async def on_run_event(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            return
        if isinstance(event, BoundaryApplied):
            _check_snapshot(event)
            await self._persisted(
                lambda: self._core.run_event(event),
                "runtime boundary commit failed",
                event,
            )
        else:
            await self._persisted(
                lambda: self._core.run_event(event), "terminal event persist failed"
            )

    def ends_runs_in_one_commit(self) -> bool:
        """Whether ``on_run_end`` may be used: the store writes a boundary
        and a run's end in one transaction (PD-70)."""
        return ends_runs_atomically(self.store)

    @traced_run_end
    async def on_run_end(self, boundary: BoundaryApplied) -> None:
        """W-6 in one commit (PD-70): the boundary, then the run's completion
        consuming every input the receipt names, applied in memory and
        written in one transaction; a refusal undoes both (decision 14), so
        the run is as if its boundary had been refused. Only over a store
        that ``ends_runs_in_one_commit``."""
        if not self.ends_runs_in_one_commit():
            raise ValidationFailedError(
                f"{type(self.store).__name__} cannot write a run's boundary and end at once"
            )
        _check_snapshot(boundary)
        with self._undo_on_failure("runtime boundary commit failed") as checkpoint:
            self._core.run_event(boundary)
            consumed = list(boundary.receipt.contributing_input_ids)
            self._core.run_event(
                RunCompleted(run_id=boundary.run_id, consumed_input_ids=consumed)
            )
            await self._commit_lifecycle(
                checkpoint,
                lambda phase, states: self.store.atomic_apply_and_lifecycle_commit(
                    self.runtime_id, _delta(boundary), boundary.receipt, phase, states
                ),
            )

    async def _commit_boundary(
        self, checkpoint: Checkpoint, event: BoundaryApplied
    ) -> None:
        """D-6: the receipt and the inputs it applied, in one atomic commit. A
        receipt the session layer already committed is accepted as is (its
        states are still written); a different one conflicts (decision 16)."""
        states = self._durable(checkpoint)
        await self._write_states(
            states,
            lambda: self.store.atomic_apply(
                self.runtime_id, _delta(event), event.receipt, states
            ),
        )

    @run_withdrawn
    async def withdraw_run(self, run_id: RunId) -> None:
        """PD-38: written like a run's end. Usually it writes what the store
        already holds (staging is never written, D-2), which also proves the
        store answers again before the batch runs once more."""
        await self._persisted(
            lambda: self._core.withdraw_run(run_id), "run withdrawal persist failed"
        )

    # ================================================================ control

    async def retire(self) -> RetireReport:
        return await self._persisted(self._core.retire, "retire persist failed")

    async def reset(self) -> ResetReport:
        return await self._persisted(self._core.reset, "reset persist failed")

    async def destroy(self) -> DestroyReport:
        return await self._persisted(self._core.destroy, "destroy persist failed")

    async def on_runtime_control(self, command: RuntimeControlCommand) -> None:
        await self._persisted(
            lambda: self._core.runtime_control(command),
            "control op persist failed",
        )

    async def recycle_preserving_work(self) -> int:
        """Decision 7: back to idle and accepting with pending work preserved;
        the idle phase is persisted with the requeued inputs."""
        return await self._persisted(self._core.recycle, "recycle persist failed")

    async def abandon_pending_inputs(self, reason: InputAbandonReason) -> int:
        """C-15 with decision 8: abandoned inputs leave the lanes for good."""
        return await self._persisted(
            lambda: self._core.abandon_pending(reason),
            "pending input abandon persist failed",
        )

    async def _persisted(
        self,
        operation: Callable[[], T],
        what: str,
        boundary: BoundaryApplied | None = None,
    ) -> T:
        """Run an in-memory operation, then write what it touched; undo on failure."""
        with self._undo_on_failure(what) as checkpoint:
            result = operation()
            if boundary is not None:
                await self._commit_boundary(checkpoint, boundary)
            else:
                await self._commit_lifecycle(checkpoint)
        return result

    def _undo_on_failure(self, what: str | None) -> _UndoOnFailure:
        """Decision 14: if the store refuses (or anything else interrupts the
        operation), memory goes back to how it was; a store failure becomes
        ``Internal`` with the store's text, after ``what: `` when given. A
        write that committed although its caller was cancelled is kept (see
        ``_write``)."""
        return _UndoOnFailure(self, what)

    async def _commit_lifecycle(
        self,
        checkpoint: Checkpoint,
        commit: Callable[[RuntimeState, list[InputState]], Awaitable[None]]
        | None = None,
    ) -> None:
        """Upstream writes every ledger state here (D-7 .. D-9); what differs
        from the store is what this operation touched plus what pure
        delegations changed since the last such commit (``_unsaved``).
        ``commit`` (phase, states): the write, ``atomic_lifecycle_commit``
        unless given."""
        unsaved = self._core.take_unsaved()
        if commit is None:
            commit = partial(self.store.atomic_lifecycle_commit, self.runtime_id)
        try:
            states = self._durable(checkpoint, unsaved)
            await self._write_states(
                states, lambda: commit(self._core.stored_phase(), states)
            )
        except CommittedThenCancelled:
            raise  # written after all
        except BaseException:
            self._core.owe_unsaved(unsaved)  # not written: still owed
            raise

    def _durable(
        self, checkpoint: Checkpoint, unsaved: dict[InputId, None] | None = None
    ) -> list[InputState]:
        """The states that belong on disk (decision 13): those the operation
        touched, then the ``unsaved`` ones it did not."""
        ids = (
            dict.fromkeys([*checkpoint.touched, *unsaved])
            if unsaved
            else checkpoint.touched
        )
        states = map(self._core.peek_input_state, ids)
        return [
            s
            for s in states
            if s is not None and s.durability is not InputDurability.EPHEMERAL
        ]

    def _ledger_state(self, input_id: InputId) -> InputState:
        state = self._core.peek_input_state(input_id)
        assert state is not None
        return state

    # ================================================================ recovery

    @traced_recovery
    async def recover(self) -> RecoveryReport:
        """D-11 with decisions 4, 5, 18, 22, 24."""
        core = self._core
        if core.is_pristine():
            if self.ownership is not None and self.lease is None:
                return await self._recover_owned(self.ownership)
            return await self._recover_pristine()
        guard = self._undo_on_failure(None)  # a failed read: the store's text
        with guard as checkpoint:
            # A live driver (CP-7): first bring what is in memory back to a
            # state a runtime can continue from (D-12), then add what only
            # the store knows.
            in_memory = core.recover()
            stored, _, _ = await self._recover_from_store()
            guard.what = RECOVERY_PERSIST_FAILED
            await self._commit_lifecycle(checkpoint)
        return RecoveryReport(
            inputs_recovered=in_memory.inputs_recovered + stored.inputs_recovered,
            inputs_abandoned=in_memory.inputs_abandoned + stored.inputs_abandoned,
            inputs_requeued=in_memory.inputs_requeued + stored.inputs_requeued,
            details=stored.details,
        )

    async def _recover_owned(self, ownership: OwnerLeases) -> RecoveryReport:
        """Claim the runtime, then recover it through a store fenced by the
        lease; a failed recovery gives the lease back."""
        unfenced = self.store
        lease = await ownership.claim(self.runtime_id)
        self.lease, self.store = lease, unfenced.fenced(self.runtime_id, lease.epoch)
        try:
            return await self._recover_pristine()
        except BaseException:
            self.lease, self.store = None, unfenced
            await ownership.release(self.runtime_id)
            raise

    async def _recover_pristine(self) -> RecoveryReport:
        """A driver's first recovery (the restart case): nothing to undo but a
        fresh start, so it skips the journal, and the bulk decode runs with
        the cycle collector paused. It rewrites only the inputs it changed;
        for the rest the store counts the recovery (``commit_recovery``)."""
        core = self._core
        core.begin_first_recovery()
        prefix = ""  # a failed read: the store's own text
        try:
            # Loads and builds one ledger entry per stored input: one pause
            # for both, so the young objects are scanned once, not twice.
            with gc_paused():
                report, changed, recounted = await self._recover_from_store()
            # No input finishes here: a stopped or destroyed runtime with
            # unfinished inputs has already failed closed (decision 5).
            prefix = f"{RECOVERY_PERSIST_FAILED}: "
            await self._write(
                commit_recovery(
                    self.store,
                    self.runtime_id,
                    core.stored_phase(),
                    changed,
                    recounted,
                )
            )
        except RuntimeStoreError as exc:
            core.fresh_state()  # decision 22: as before the call
            raise InternalError(f"{prefix}{exc}") from exc
        except CommittedThenCancelled:
            raise asyncio.CancelledError() from None  # recovered, and written
        except BaseException:
            core.fresh_state()
            raise
        finally:
            core.end_first_recovery()
        return report

    async def _recover_from_store(
        self,
    ) -> tuple[RecoveryReport, list[InputState], list[InputState]]:
        """Read what the store holds (states, phase, the receipts that may
        name applied inputs), then let the core recover from it."""
        core = self._core
        states = await (
            load_skeletons(self.store, self.runtime_id)
            if self.lazy_payloads
            else self.store.load_input_states(self.runtime_id)
        )
        persisted = await self.store.load_runtime_state(self.runtime_id)
        fresh = core.to_recover(states, persisted)
        await self._load_for_recovery(fresh)
        # PD-49: records the spec cannot have produced fail closed here.
        receipts = await stored_receipts(self.store, self.runtime_id)
        check_loaded(str(self.runtime_id), persisted, states, receipts)
        if keeps_inbox(self.store):
            # PD-72: every inbox row checked once per recovery; the poll
            # reads pending rows only and would never see a hidden one.
            await self.store.load_whole_inbox(self.runtime_id)
        named = await self._named_by_receipts(core.receipts_to_check(fresh), receipts)
        result = core.recover_loaded(fresh, named)
        core.restore_phase(persisted)
        return result

    async def _load_for_recovery(self, fresh: list[InputState]) -> None:
        """The payloads recovery needs (``payload_needed``), in one read: it
        writes those inputs back, and a record is written whole. The rest
        stay in the store (PD-64)."""
        needed = [s for s in fresh if self._core.payload_needed(s)]
        if needed:
            found = await load_payloads(
                self.store, self.runtime_id, [s.input_id for s in needed]
            )
            for state in needed:
                state.load_payload(found[state.input_id])

    async def _named_by_receipts(
        self,
        groups: dict[tuple[RunId, int], list[InputId]],
        loaded: list[RunBoundaryReceipt] | None,
    ) -> set[InputId]:
        """The inputs of ``groups`` that their committed receipt names: from
        the receipts the recovery check already ``loaded`` when the store
        lists them, else one read per receipt, never one per input."""
        by_boundary = (
            None if loaded is None else {(r.run_id, r.sequence): r for r in loaded}
        )
        named: set[InputId] = set()
        for (run_id, sequence), ids in groups.items():
            receipt = (
                by_boundary.get((run_id, sequence))
                if by_boundary is not None
                else await self.store.load_boundary_receipt(
                    self.runtime_id, run_id, sequence
                )
            )
            if receipt is not None:
                contributing = set(receipt.contributing_input_ids)
                named.update(i for i in ids if i in contributing)
        return named


class _UndoOnFailure:
    """``with driver._undo_on_failure(what) as checkpoint:`` (see there). A
    plain context manager, not an async one: entering and leaving never
    wait, and a generator-based one cost about 2 µs of every accept."""

    __slots__ = ("checkpoint", "driver", "what")

    def __init__(self, driver: PersistentRuntimeDriver, what: str | None) -> None:
        self.driver, self.what = driver, what
        self.checkpoint = driver._core.checkpoint()

    def __enter__(self) -> Checkpoint:
        return self.checkpoint

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        core, checkpoint = self.driver._core, self.checkpoint
        if exc is None:
            core.release(checkpoint)
        elif isinstance(exc, RuntimeStoreError):
            core.restore(checkpoint)
            text = str(exc) if self.what is None else f"{self.what}: {exc}"
            raise InternalError(text) from exc
        elif isinstance(exc, CommittedThenCancelled):
            core.release(checkpoint)  # the store has it: memory must too
            raise asyncio.CancelledError() from None
        else:
            core.restore(checkpoint)


__all__ = ["PersistentRuntimeDriver", "reason_name"]


def _check_snapshot(event: BoundaryApplied) -> None:
    """Refused before anything changes: a run whose executor hands back
    text fails like any refused boundary (W-6)."""
    snapshot = event.session_snapshot
    if snapshot is not None and not isinstance(snapshot, bytes):
        raise ValidationFailedError(
            "BoundaryApplied.session_snapshot must be bytes, not "
            f"{type(snapshot).__name__}"
        )


def _delta(event: BoundaryApplied) -> SessionDelta | None:
    if event.session_snapshot is None:
        return None
    return SessionDelta(session_snapshot=event.session_snapshot)
