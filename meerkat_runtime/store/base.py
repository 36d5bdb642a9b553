"""The ``RuntimeStore`` contract (docs/behaviour.md section 8), with its errors.

Theory of operation: a store keeps, per runtime, one record per input state,
one per boundary receipt, the runtime's phase and its latest session
snapshot. Multi-row writes (a boundary, a lifecycle commit) are atomic. Stores
never judge lifecycle legality (S-3); they only persist what drivers hand
them and report "the world misbehaved" as ``RuntimeStoreError`` (defined in
``meerkat_runtime.errors`` under the one root, re-exported here, PD-28):
``Unavailable`` when trying again later may succeed, ``Corrupt`` for a
stored record that fails its checks, ``Conflict`` for a different receipt.

Receipts (decision 16): committing a receipt identical to the stored one
succeeds without a second receipt row (the snapshot and input states given
with it are still written, so a driver never needs to read first); a
different receipt for the same (run, sequence) is a conflict and nothing of
that call is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Self

from meerkat_runtime.codec import Value
from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.errors import (
    ConflictError,
    CorruptError,
    FencedError,
    NotFoundError,
    ReadFailedError,
    RuntimeStoreError,
    StoreInternalError,
    UnavailableError,
    WriteFailedError,
)
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import AnyInput
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store.leases import DEFAULT_LEASE_TTL, Lease

if TYPE_CHECKING:  # the inbox module builds on this one
    from meerkat_runtime.inputs import Input
    from meerkat_runtime.outcomes import AcceptOutcome
    from meerkat_runtime.store.inbox import InboxEntry

# The store error family lives in meerkat_runtime.errors, beside its root;
# it is re-exported here, where stores and their users always found it.
__all__ = [
    "CommittedThenCancelled",
    "ConflictError",
    "CorruptError",
    "FencedError",
    "NotFoundError",
    "ReadFailedError",
    "RuntimeStore",
    "RuntimeStoreError",
    "SessionDelta",
    "StoreInternalError",
    "UnavailableError",
    "WriteFailedError",
    "as_store_error",
    "cancel_safe",
    "commit_recovery",
    "keeps_inbox",
    "load_payloads",
    "load_skeletons",
    "loads_lazily",
    "mint_receipt",
    "owns_leases",
    "required_snapshot",
    "snapshot_of",
    "store_errors",
]


def as_store_error(exc: Exception) -> RuntimeStoreError:
    """Whatever a write raised, as the store error family (a store raises
    only its own errors): the same for every store, so a bad value fails
    alike in memory and on disk."""
    if isinstance(exc, RuntimeStoreError):
        return exc
    return WriteFailedError(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Whatever the block raises is raised as a store error (``as_store_error``)."""
    try:
        yield
    except Exception as exc:
        raise as_store_error(exc) from exc


class SessionDelta(Value, frozen=True, kw_only=True):
    """The session snapshot a boundary commits (opaque bytes to the runtime)."""

    session_snapshot: bytes

    def __post_init__(self) -> None:
        # A struct does not check its fields when built in code; a str here
        # would be stored as text by one store and kept as-is by another.
        if not isinstance(self.session_snapshot, bytes):
            raise TypeError(
                "SessionDelta.session_snapshot must be bytes, not "
                f"{type(self.session_snapshot).__name__}"
            )


def snapshot_of(delta: SessionDelta | None) -> bytes | None:
    """The snapshot bytes a boundary commit stores (``None``: no delta),
    read before the commit writes anything: a value that is not a
    ``SessionDelta`` is refused, naming it."""
    return None if delta is None else required_snapshot(delta)


def required_snapshot(delta: SessionDelta) -> bytes:
    """``snapshot_of`` where S-5 needs a delta."""
    if not isinstance(delta, SessionDelta):
        raise WriteFailedError(
            f"session_delta must be a SessionDelta, not {type(delta).__name__}"
        )
    return delta.session_snapshot


def mint_receipt(
    run_id: RunId,
    boundary: RunApplyBoundary,
    contributing_input_ids: Sequence[InputId],
    sequence: int,
    delta: SessionDelta | None,
) -> RunBoundaryReceipt:
    """S-4 with a port-defined canonical digest: SHA-256 (lower-case hex) of
    the snapshot bytes; message_count = the length of a top-level
    ``messages`` list when the snapshot is such JSON, else 0."""
    digest = None
    count = 0
    if delta is not None:
        digest = hashlib.sha256(delta.session_snapshot).hexdigest()
        count = _message_count(delta.session_snapshot)
    return RunBoundaryReceipt(
        run_id=run_id,
        boundary=boundary,
        contributing_input_ids=list(contributing_input_ids),
        conversation_digest=digest,
        message_count=count,
        sequence=sequence,
    )


def _message_count(snapshot: bytes) -> int:
    try:
        parsed = json.loads(snapshot)
    except (ValueError, UnicodeDecodeError):
        return 0
    messages = parsed.get("messages") if isinstance(parsed, dict) else None
    return len(messages) if isinstance(messages, list) else 0


class CommittedThenCancelled(asyncio.CancelledError):
    """A write's caller was cancelled while the write was in flight, and the
    write then committed: the caller must treat it as done (memory keeps
    what the store now holds), then go on being cancelled."""


class RuntimeStore(ABC):
    """Durable state of many runtimes. Every method is async and isolated per
    ``runtime_id`` (S-3). Subclass to implement or to wrap another store."""

    # True when a cancelled write call either wrote nothing (it raises
    # ``CancelledError``) or committed (it raises ``CommittedThenCancelled``).
    # Drivers then await writes directly; otherwise they run each write in
    # its own task and wait it out when cancelled (one more event-loop turn
    # per write). A subclass that adds an ``await`` to a write must say False.
    cancel_safe_writes: ClassVar[bool] = False

    @abstractmethod
    async def commit_session_boundary(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta,
        run_id: RunId,
        boundary: RunApplyBoundary,
        contributing_input_ids: Sequence[InputId],
        input_updates: Sequence[InputState],
    ) -> RunBoundaryReceipt:
        """S-5: mint the next receipt of ``run_id`` and commit it atomically
        with the snapshot and the (stamped) input states."""

    @abstractmethod
    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        """S-6: snapshot (if any), receipt and input states, all or nothing."""

    @abstractmethod
    async def load_input_states(
        self, runtime_id: LogicalRuntimeId
    ) -> list[InputState]: ...

    @abstractmethod
    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None: ...

    @abstractmethod
    async def load_session_snapshot(
        self, runtime_id: LogicalRuntimeId
    ) -> bytes | None: ...

    @abstractmethod
    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None: ...

    @abstractmethod
    async def load_input_state(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InputState | None: ...

    @abstractmethod
    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None: ...

    @abstractmethod
    async def load_runtime_state(
        self, runtime_id: LogicalRuntimeId
    ) -> RuntimeState | None: ...

    @abstractmethod
    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        """S-8: the runtime's phase and every given input state, atomically."""

    # PD-70: a store that can write a run's boundary and its end in one
    # transaction sets ``ends_runs_atomically`` and implements
    # ``atomic_apply_and_lifecycle_commit``; over any other store the
    # drivers write them in two commits, as before.
    ends_runs_atomically: bool = False

    async def atomic_apply_and_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        """``atomic_apply`` then ``atomic_lifecycle_commit`` in one
        transaction (PD-70): the snapshot (if any) and the receipt (an
        identical receipt already stored is kept, a different one is a
        ``Conflict``, as in ``atomic_apply``), the runtime's phase and every
        given input state, all or nothing. ``input_states`` are the states
        after both, so a state the boundary applied and the end consumed is
        written once, consumed."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot write a run's boundary and end at once"
        )

    async def commit_recovery(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        changed: Sequence[InputState],
        recounted: Sequence[InputState],
    ) -> None:
        """The end of a driver's first recovery of ``runtime_id``, atomically:
        the phase, the inputs recovery ``changed``, and one more recovery
        (decision 18) for each input in ``recounted``, whose only change is
        ``recovery_count`` (already incremented in memory).

        Precondition: ``changed`` and ``recounted`` together hold every
        unfinished input the store holds for the runtime except ephemeral
        ones, which recovery drops unread (decision 13) and whose counts
        never change (a first recovery loads them all). That lets a store count recoveries once per runtime
        instead of rewriting every pending row (``SqliteRuntimeStore`` does:
        one row instead of one per pending input). This default writes them
        all."""
        await self.atomic_lifecycle_commit(
            runtime_id, runtime_state, [*changed, *recounted]
        )

    async def load_boundary_receipts(
        self, runtime_id: LogicalRuntimeId
    ) -> list[RunBoundaryReceipt]:
        """Every receipt of a runtime, in commit order (what ``verify`` and
        audits read). Both built-in stores list their receipt rows; this
        default, for a store that cannot, finds the receipts its stored
        inputs name (each input keeps the last boundary that applied it),
        each read once, in the order those inputs were stored. It misses a
        receipt that names only ephemeral or later re-applied inputs: a
        store that can list its receipts should override it."""
        found: dict[tuple[RunId, int], RunBoundaryReceipt] = {}
        for state in await self.load_input_states(runtime_id):
            run_id, sequence = state.last_run_id(), state.last_boundary_sequence()
            if run_id is None or sequence is None or (run_id, sequence) in found:
                continue
            receipt = await self.load_boundary_receipt(runtime_id, run_id, sequence)
            if receipt is not None:
                found[run_id, sequence] = receipt
        return list(found.values())

    async def list_runtimes_with_work(
        self, *, unowned: bool = False
    ) -> list[LogicalRuntimeId]:
        """The runtimes holding at least one unfinished, non-ephemeral input
        (``store/work.py``), in id order; with ``unowned``, only those
        without a live lease (on the store's lease clock): what a fleet
        worker looks for to claim (PD-67). The built-in stores answer it;
        a store that cannot list its runtimes raises
        ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its runtimes")

    # ------------------------------------------------------------ payloads
    # PD-64. A store that sets ``lazy_payloads`` reads records without their
    # payloads and fetches payloads by id, one read per call; a driver over
    # it leaves payloads in the store until a run needs them. These defaults
    # (for a store that does not) load everything, as before. A store that
    # sets it counts ``commit_recovery``'s ``recounted`` inputs without
    # rewriting their records (their payloads are not in memory).

    lazy_payloads: bool = False

    async def load_input_skeletons(
        self, runtime_id: LogicalRuntimeId
    ) -> list[InputState]:
        """``load_input_states``, each payload left in the store when the
        store ``lazy_payloads`` (its ``stored_payload`` says what it is)."""
        return await self.load_input_states(runtime_id)

    async def load_payloads(
        self, runtime_id: LogicalRuntimeId, input_ids: Sequence[InputId]
    ) -> dict[InputId, AnyInput]:
        """The stored payloads of ``input_ids``, in one read. A record that
        fails its checks, is missing or holds no payload is ``Corrupt``,
        naming the input. This default reads each record on its own."""
        found: dict[InputId, AnyInput] = {}
        for input_id in input_ids:
            state = await self.load_input_state(runtime_id, input_id)
            if state is None or state.persisted_input is None:
                raise CorruptError(
                    f"runtime {str(runtime_id)!r}, input {str(input_id)!r}: "
                    "the store holds no payload for it"
                )
            found[input_id] = state.persisted_input
        return found

    # ------------------------------------------------------------ ownership
    # PD-36 (store/leases.py). A store that keeps leases sets
    # ``keeps_leases`` and implements all six; drivers over any other store
    # run without ownership, as before.

    keeps_leases: bool = False
    lease_ttl: float = DEFAULT_LEASE_TTL

    async def claim(
        self,
        runtime_id: LogicalRuntimeId,
        owner: str,
        ttl: float | None = None,
        *,
        wait: float = 0.0,
    ) -> int:
        """Take the runtime's lease for ``owner`` for ``ttl`` seconds (the
        store's ``lease_ttl`` when None); its new epoch. Held unexpired by
        another owner: ``RuntimeOwnedError``, after waiting up to ``wait``
        seconds for it to end."""
        raise NotImplementedError(f"{type(self).__name__} keeps no leases")

    async def renew(
        self,
        owner: str,
        epochs: Mapping[LogicalRuntimeId, int],
        ttl: float | None = None,
    ) -> list[LogicalRuntimeId]:
        """Extend every lease ``owner`` holds at the given epoch, in one
        write; the runtimes it no longer holds (taken over), not renewed."""
        raise NotImplementedError(f"{type(self).__name__} keeps no leases")

    async def release(
        self, runtime_id: LogicalRuntimeId, owner: str, epoch: int
    ) -> None:
        """End the lease now if ``owner`` still holds it at ``epoch`` (its
        epoch stays, so the next claim gets a higher one)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no leases")

    async def load_leases(self) -> list[Lease]:
        """Every lease row, released ones included (``inspect``)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no leases")

    def fenced(self, runtime_id: LogicalRuntimeId, epoch: int) -> RuntimeStore:
        """This store, as the owner of ``runtime_id`` at ``epoch`` writes to
        it: each write to that runtime checks, in its own transaction, that
        the lease still has ``epoch`` and is refused whole
        (``RuntimeStoreError.Fenced``) once a later claim moved it on. A
        store implements the check by reading ``leases.fence_for`` at the
        start of each write; the view (``store.fenced``) sets it."""
        if not owns_leases(self):
            raise NotImplementedError(f"{type(self).__name__} keeps no leases")
        from meerkat_runtime.store.fenced import FencedStore  # it builds on this

        return FencedStore(self, runtime_id, epoch)

    # ---------------------------------------------------------------- inbox
    # PD-58 (store/inbox.py). A store that keeps inboxes sets ``keeps_inbox``
    # and implements all six; any other refuses submissions from processes
    # that do not own the runtime.

    keeps_inbox: bool = False

    async def submit_to_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        input: Input,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> AcceptOutcome:
        """Write ``input`` to the runtime's inbox, acknowledged after the
        commit: ``Submitted``. In the same transaction, an input with its id
        or idempotency key already in the inbox or the ledger answers
        ``Deduplicated`` and writes nothing. Checked as admission checks an
        input (``inbox.checked_submission``): a bad value raises
        ``ValidationFailed`` and a refused one answers ``Rejected``, with
        nothing written either way."""
        raise NotImplementedError(f"{type(self).__name__} keeps no inbox")

    async def load_inbox(
        self, runtime_id: LogicalRuntimeId, limit: int | None = None
    ) -> list[InboxEntry]:
        """The runtime's pending entries in arrival order (the first
        ``limit`` of them)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no inbox")

    async def load_whole_inbox(self, runtime_id: LogicalRuntimeId) -> list[InboxEntry]:
        """Every entry of the runtime's inbox, pending and settled, in arrival
        order, each row checked against its record: what an owner reads once
        when it recovers the runtime (PD-72), so that a damaged row fails
        closed instead of hiding an entry."""
        raise NotImplementedError(f"{type(self).__name__} keeps no inbox")

    async def load_inbox_entry(
        self, runtime_id: LogicalRuntimeId, input_id: InputId
    ) -> InboxEntry | None:
        """One entry, pending or settled; None when the inbox has none (it
        was admitted, or never submitted)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no inbox")

    async def admit_from_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        taken: Sequence[InboxEntry],
    ) -> None:
        """The owner's admission, atomically: the phase, ``input_states``
        (what admitting touched), and each entry of ``taken`` removed (when
        admitted: ``settlement`` None) or settled. An entry of ``taken`` no
        longer pending is a ``Conflict``, and nothing is written. Fenced like
        every write of an owner (``fenced``)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no inbox")

    async def list_runtimes_with_inbox(self) -> list[LogicalRuntimeId]:
        """Every runtime with at least one pending entry, sorted."""
        raise NotImplementedError(f"{type(self).__name__} keeps no inbox")

    async def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release resources; the store must not be used afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AppliesRunEnds(RuntimeStore):
    """A store whose boundary write and run-end write (PD-70) are one
    private ``_apply``: with ``runtime_state`` None a boundary
    (``atomic_apply``), else the boundary and the run's end at once."""

    ends_runs_atomically = True

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,  # noqa: ARG002 - unused, as upstream (S-6)
    ) -> None:
        await self._apply(runtime_id, session_delta, receipt, None, input_updates)

    async def atomic_apply_and_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        session_store_key: str | None = None,  # noqa: ARG002 - as atomic_apply
    ) -> None:
        await self._apply(
            runtime_id, session_delta, receipt, runtime_state, input_states
        )

    @abstractmethod
    async def _apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState | None,
        input_updates: Sequence[InputState],
    ) -> None:
        """The snapshot, the receipt (decision 16), the phase when given, and
        the input states: one transaction."""


# The public API calls RuntimeStore a protocol: a store that only has its ten
# methods, without subclassing, works too. These two read the extras the
# persistent driver relies on from any store, with the base class's answers
# for one that lacks them.


def owns_leases(store: object) -> bool:
    """``keeps_leases``; a store that does not say keeps none."""
    return bool(getattr(store, "keeps_leases", False))


def ends_runs_atomically(store: object) -> bool:
    """``ends_runs_atomically``; a store that does not say cannot."""
    return bool(getattr(store, "ends_runs_atomically", False))


def keeps_inbox(store: object) -> bool:
    """``keeps_inbox``; a store that does not say keeps none."""
    return bool(getattr(store, "keeps_inbox", False))


def loads_lazily(store: object) -> bool:
    """``lazy_payloads``; a store that does not say loads everything."""
    return bool(getattr(store, "lazy_payloads", False))


async def load_skeletons(
    store: RuntimeStore, runtime_id: LogicalRuntimeId
) -> list[InputState]:
    """``store.load_input_skeletons``, or every state in full."""
    if loads_lazily(store):
        return await store.load_input_skeletons(runtime_id)
    return await store.load_input_states(runtime_id)


async def load_payloads(
    store: RuntimeStore, runtime_id: LogicalRuntimeId, input_ids: Sequence[InputId]
) -> dict[InputId, AnyInput]:
    """``store.load_payloads``, or the default (one read per input)."""
    own = getattr(store, "load_payloads", None)
    if own is None:
        return await RuntimeStore.load_payloads(store, runtime_id, input_ids)
    found: dict[InputId, AnyInput] = await own(runtime_id, input_ids)
    return found


def cancel_safe(store: object) -> bool:
    """``cancel_safe_writes``; a store that does not say is not."""
    return bool(getattr(store, "cancel_safe_writes", False))


async def commit_recovery(
    store: RuntimeStore,
    runtime_id: LogicalRuntimeId,
    runtime_state: RuntimeState,
    changed: Sequence[InputState],
    recounted: Sequence[InputState],
) -> None:
    """``store.commit_recovery``, or the default (every state written) for a
    store without one."""
    own = getattr(store, "commit_recovery", None)
    if own is None:
        await RuntimeStore.commit_recovery(
            store, runtime_id, runtime_state, changed, recounted
        )
    else:
        await own(runtime_id, runtime_state, changed, recounted)
