"""Fault injection for ``RuntimeStore``s, shipped so users can fuzz their own.

Theory of operation: ``FaultyStore`` wraps any store and, when armed, fails or
"crashes" at a chosen point of the next matching write:

* ``FAIL``          the write is refused before it happens (nothing written)
                    as a store that cannot be reached refuses it
                    (``RuntimeStoreError.Unavailable``, retryable); the
                    process goes on and the driver must restore memory.
                    ``arm(..., times=n)`` refuses the next ``n`` matching
                    writes: an outage, after which the store heals.
* ``REFUSE``        the same, but for good as far as the caller can tell
                    (``RuntimeStoreError.WriteFailed``, not retryable).
* ``CRASH_BEFORE``  the process dies before the write reaches the store.
* ``CRASH_MID_COMMIT`` the process dies inside a multi-row commit: the inner
                    store writes the real rows, fails on an extra row that
                    cannot be encoded, and must leave nothing behind.
* ``CRASH_AFTER``   the write commits, then the process dies before the call
                    returns: the acknowledgement is lost. This is also "after
                    the commit but before the driver updates memory".

A crash raises ``SimulatedCrash``, a ``BaseException`` so that no ``except
Exception`` in the code under test can swallow it. The test then drops every
in-memory object and recovers a new driver from the store (for SQLite: a new
store object on the same file). A crash *inside* a multi-row commit is
made by ``CRASH_MID_COMMIT`` through the store's own transaction; real
process kills (tests/stateful/test_process_kill.py) add the SQLite file's
view of it.

Leases (PD-36) pass through to the inner store; ``renewal_fault`` makes
every renewal fail (``Unavailable``) or stall until ``stall_released`` is
set, so an owner can be made to lose its lease without touching a clock.

``BrokenStore`` is the opposite: a store with deliberate bugs (acknowledging
before committing, committing half a boundary) used to prove the fuzzers
catch them.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import AnyInput, Input
from meerkat_runtime.outcomes import AcceptOutcome
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt
from meerkat_runtime.store.base import (
    RuntimeStore,
    RuntimeStoreError,
    SessionDelta,
    commit_recovery,
    ends_runs_atomically,
    load_payloads,
)
from meerkat_runtime.store.inbox import InboxEntry
from meerkat_runtime.store.leases import Clock
from meerkat_runtime.store.wrapper import StoreWrapper

T = TypeVar("T")

WRITES = (
    "persist_input_state",
    "persist_runtime_state",
    "atomic_lifecycle_commit",
    "atomic_apply",
    "commit_session_boundary",
    "commit_recovery",
    "atomic_apply_and_lifecycle_commit",
    "submit_to_inbox",
    "admit_from_inbox",
)


class SimulatedCrash(BaseException):
    """The process "died" here; nothing after this point ran."""


class Fault(enum.Enum):
    FAIL = "fail"
    REFUSE = "refuse"
    CRASH_BEFORE = "crash_before"
    CRASH_MID_COMMIT = "crash_mid_commit"
    CRASH_AFTER = "crash_after"


@dataclass(slots=True)
class Armed:
    fault: Fault
    method: str | None  # None: the next write of any kind
    skip: int  # matching writes to let through first
    times: int = 1  # matching writes to refuse (FAIL, REFUSE), then disarm


class RenewalFault(enum.Enum):
    FAIL = "fail"  # every renewal raises Unavailable
    STALL = "stall"  # every renewal waits for ``stall_released``


class FaultyStore(StoreWrapper):
    """Delegates to ``inner``; injects the armed fault into one write."""

    def __init__(self, inner: RuntimeStore, *, one_commit_runs: bool = False) -> None:
        super().__init__(inner)
        # PD-70: off by default, so a driver writes a run's boundary and its
        # end as two writes, each its own point of failure; on (and the
        # inner store able to), as the one write
        # ``atomic_apply_and_lifecycle_commit``.
        self.ends_runs_atomically = one_commit_runs and ends_runs_atomically(inner)
        self.armed: Armed | None = None
        self.fired: list[tuple[Fault, str]] = []
        # Raised by the next ``load_payloads`` instead of reading (PD-64).
        self.payload_fault: Exception | None = None
        self.payload_loads = 0
        self.renewal_fault: RenewalFault | None = None
        self.renewals = 0  # renewals asked for, failed or not
        self.stall_released = asyncio.Event()

    @property
    def lease_clock(self) -> Clock:
        return self.inner.lease_clock  # type: ignore[attr-defined, no-any-return]

    @lease_clock.setter
    def lease_clock(self, clock: Clock) -> None:
        self.inner.lease_clock = clock  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- leases

    async def renew(
        self,
        owner: str,
        epochs: Mapping[LogicalRuntimeId, int],
        ttl: float | None = None,
    ) -> list[LogicalRuntimeId]:
        self.renewals += 1
        if self.renewal_fault is RenewalFault.FAIL:
            raise RuntimeStoreError.Unavailable("injected renewal failure")
        if self.renewal_fault is RenewalFault.STALL:
            await self.stall_released.wait()
        return await self.inner.renew(owner, epochs, ttl)

    def arm(
        self, fault: Fault, method: str | None = None, skip: int = 0, times: int = 1
    ) -> None:
        if method is not None and method not in WRITES:
            raise ValueError(
                f"not a store write: {method!r} (one of {', '.join(WRITES)})"
            )
        refusal = fault in (Fault.FAIL, Fault.REFUSE)
        if times < 1 or (times > 1 and not refusal):
            raise ValueError(
                f"times={times!r}: at least 1, and more only for FAIL or REFUSE"
            )
        self.armed = Armed(fault, method, skip, times)

    def disarm(self) -> None:
        self.armed = None

    async def _write(
        self,
        method: str,
        call: Callable[[], Awaitable[T]],
        poisoned_call: Callable[[], Awaitable[T]] | None = None,
    ) -> T:
        armed = self.armed
        if armed is None or (armed.method is not None and armed.method != method):
            return await call()
        if armed.skip > 0:
            armed.skip -= 1
            return await call()
        armed.times -= 1
        if armed.times == 0:
            self.armed = None
        self.fired.append((armed.fault, method))
        if armed.fault is Fault.FAIL:
            raise RuntimeStoreError.Unavailable(f"injected failure in {method}")
        if armed.fault is Fault.REFUSE:
            raise RuntimeStoreError.WriteFailed(f"injected refusal in {method}")
        if armed.fault is Fault.CRASH_BEFORE:
            raise SimulatedCrash(f"crash before {method}")
        if armed.fault is Fault.CRASH_MID_COMMIT:
            await self._write_half(method, poisoned_call)
            raise SimulatedCrash(f"crash in the middle of {method}")
        await call()
        raise SimulatedCrash(f"crash after {method} committed")

    @staticmethod
    async def _write_half(
        method: str, poisoned_call: Callable[[], Awaitable[object]] | None
    ) -> None:
        """The same write with one more row that cannot be encoded, last: the
        inner store writes every real row inside its transaction, then fails
        on the last one and must roll all of it back, as a process that died
        there would leave it. (A single-row write cannot stop half-way.)"""
        if poisoned_call is None:
            return
        try:
            await poisoned_call()
        except RuntimeStoreError:
            return
        raise AssertionError(f"{method} accepted a row it cannot have encoded")

    # ---------------------------------------------------------------- writes

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        await self._write(
            "persist_input_state",
            lambda: self.inner.persist_input_state(runtime_id, state),
        )

    async def persist_runtime_state(
        self, runtime_id: LogicalRuntimeId, state: RuntimeState
    ) -> None:
        await self._write(
            "persist_runtime_state",
            lambda: self.inner.persist_runtime_state(runtime_id, state),
        )

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        await self._write(
            "atomic_lifecycle_commit",
            lambda: self.inner.atomic_lifecycle_commit(
                runtime_id, runtime_state, input_states
            ),
            lambda: self.inner.atomic_lifecycle_commit(
                runtime_id, runtime_state, _poison(input_states)
            ),
        )

    async def commit_recovery(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        changed: Sequence[InputState],
        recounted: Sequence[InputState],
    ) -> None:
        await self._write(
            "commit_recovery",
            lambda: commit_recovery(
                self.inner, runtime_id, runtime_state, changed, recounted
            ),
            lambda: commit_recovery(
                self.inner, runtime_id, runtime_state, _poison(changed), recounted
            ),
        )

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        await self._write(
            "atomic_apply",
            lambda: self.inner.atomic_apply(
                runtime_id, session_delta, receipt, input_updates, session_store_key
            ),
            lambda: self.inner.atomic_apply(
                runtime_id,
                session_delta,
                receipt,
                _poison(input_updates),
                session_store_key,
            ),
        )

    async def atomic_apply_and_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        def write(states: Sequence[InputState]) -> Awaitable[None]:
            return self.inner.atomic_apply_and_lifecycle_commit(
                runtime_id,
                session_delta,
                receipt,
                runtime_state,
                states,
                session_store_key,
            )

        await self._write(
            "atomic_apply_and_lifecycle_commit",
            lambda: write(input_states),
            lambda: write(_poison(input_states)),
        )

    async def commit_session_boundary(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta,
        run_id: RunId,
        boundary: RunApplyBoundary,
        contributing_input_ids: Sequence[InputId],
        input_updates: Sequence[InputState],
    ) -> RunBoundaryReceipt:
        return await self._write(
            "commit_session_boundary",
            lambda: self.inner.commit_session_boundary(
                runtime_id,
                session_delta,
                run_id,
                boundary,
                contributing_input_ids,
                input_updates,
            ),
            lambda: self.inner.commit_session_boundary(
                runtime_id,
                session_delta,
                run_id,
                boundary,
                contributing_input_ids,
                _poison(input_updates),
            ),
        )

    # ---------------------------------------------------------------- inbox

    async def submit_to_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        input: Input,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> AcceptOutcome:
        return await self._write(
            "submit_to_inbox",
            lambda: self.inner.submit_to_inbox(
                runtime_id, input, max_input_bytes=max_input_bytes
            ),
        )

    async def admit_from_inbox(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        taken: Sequence[InboxEntry],
    ) -> None:
        await self._write(
            "admit_from_inbox",
            lambda: self.inner.admit_from_inbox(
                runtime_id, runtime_state, input_states, taken
            ),
            lambda: self.inner.admit_from_inbox(
                runtime_id, runtime_state, _poison(input_states), taken
            ),
        )

    async def load_payloads(
        self, runtime_id: LogicalRuntimeId, input_ids: Sequence[InputId]
    ) -> dict[InputId, AnyInput]:
        """The inner store's payloads; ``payload_fault``, when set, is
        raised instead (once), and every call is counted."""
        self.payload_loads += 1
        fault, self.payload_fault = self.payload_fault, None
        if fault is not None:
            raise fault
        return await load_payloads(self.inner, runtime_id, input_ids)

    async def close(self) -> None:
        await self.inner.close()


def _poison(states: Sequence[InputState]) -> list[InputState]:
    """``states`` plus, last, a copy of one of them that cannot be encoded."""
    bad = states[-1].clone() if states else InputState.new_accepted(InputId.new())
    bad.reconstruction_source = object()  # type: ignore[assignment]
    return [*states, bad]


class Defect(enum.Enum):
    """Deliberate store bugs the fuzzers must catch."""

    ACK_BEFORE_COMMIT = "ack_before_commit"  # input writes are acknowledged, then lost
    HALF_BOUNDARY = "half_boundary"  # a boundary commit writes only half its inputs


class BrokenStore(FaultyStore):
    """A ``FaultyStore`` whose inner writes are subtly wrong (see ``Defect``)."""

    def __init__(self, inner: RuntimeStore, defect: Defect) -> None:
        super().__init__(inner)
        # Its early acks are written later, outside any owner's write: a
        # fence could not follow them there.
        self.keeps_leases = False
        self.defect = defect
        self.pending: list[tuple[LogicalRuntimeId, InputState]] = []

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        if self.defect is Defect.ACK_BEFORE_COMMIT:
            # Acknowledge now, write "later": a crash in between loses it.
            self.pending.append((runtime_id, state.clone()))
            return
        await super().persist_input_state(runtime_id, state)

    async def flush(self) -> None:
        """Write what was acknowledged early (the broken store's background job)."""
        pending, self.pending = self.pending, []
        for runtime_id, state in pending:
            await self.inner.persist_input_state(runtime_id, state)

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        if self.defect is Defect.HALF_BOUNDARY and len(input_updates) > 1:
            half = list(input_updates)[: len(input_updates) // 2]
            await super().atomic_apply(
                runtime_id, session_delta, receipt, half, session_store_key
            )
            return
        await super().atomic_apply(
            runtime_id, session_delta, receipt, input_updates, session_store_key
        )
