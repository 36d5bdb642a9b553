"""``RuntimeSessionAdapter``: sessions with executors, and the control plane.

Theory of operation (docs/behaviour.md §9.2, §10): each registered session owns a
driver (ephemeral or persistent), an asyncio lock that serialises every call
into it (the persistent driver's checkpoint spans an await), a waiter
registry, and, once an executor is attached, a runtime loop task. Every
public method is one critical section on the session; after it, waiters whose
inputs reached a terminal state are resolved. Control commands that end a
runtime resolve every waiter with ``RuntimeTerminated`` and K-4's text.

Ownership (PD-36): over a store that keeps leases, each persistent session's
runtime is claimed under the adapter's ``owner`` id before it recovers,
renewed in the background (``sessions.ownership``) and released by
``unregister_session`` and ``close``. A session whose lease is lost is
dropped at once: its waiters hear ``RuntimeTerminated`` saying so, its loop
and executor stop, and its driver never writes again.

Inputs that processes which do not own a session submit to its inbox
(``RuntimeSubmitter``, PD-58) are admitted when the session registers and
whenever the adapter's ``InboxWatcher`` finds some (PD-61).

``close`` ends the adapter: from its first line on, nothing new is accepted,
registered or waited on (``NotReady`` saying the adapter is closed, also for
an accept that was waiting for the session's lock while close released the
lease), and
every waiter, also one an accept racing the close registers after it, is
answered ``RuntimeTerminated(CLOSED_REASON)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from meerkat_runtime.blobs import BlobStore
from meerkat_runtime.driver.core import DEFAULT_MAX_PENDING_INPUTS
from meerkat_runtime.driver.ephemeral import (
    EphemeralRuntimeDriver,
    RuntimeControlCommand,
)
from meerkat_runtime.driver.face import RuntimeDriver
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import (
    FencedError,
    InternalError,
    MeerkatError,
    NotReadyError,
    RuntimeDriverError,
    ValidationFailedError,
)
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import InputId, LogicalRuntimeId, SessionId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input
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
from meerkat_runtime.sessions.completion import CompletionHandle, RuntimeTerminated
from meerkat_runtime.sessions.control_plane import RuntimeControlPlane
from meerkat_runtime.sessions.executor import (
    AnyRunControlCommand,
    CoreExecutor,
    StopRuntimeExecutor,
)
from meerkat_runtime.sessions.inbox import (
    DEFAULT_INBOX_POLL,
    InboxWatcher,
    checked_interval,
)
from meerkat_runtime.sessions.loop import RuntimeLoop, StoreBackoff
from meerkat_runtime.sessions.ownership import OwnerLeases, default_owner
from meerkat_runtime.sessions.session import Session
from meerkat_runtime.store.base import RuntimeStore, keeps_inbox, owns_leases
from meerkat_runtime.store.leases import checked_owner

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAY = 0.05
CLOSED_REASON = "session adapter closed"
CLOSED = RuntimeTerminated(reason=CLOSED_REASON)
UNREGISTERED = RuntimeTerminated(reason="runtime session unregistered")
OWNERSHIP_LOST = "runtime ownership lost"


class RuntimeSessionAdapter:
    """Many sessions in one process, each with its own runtime."""

    def __init__(
        self,
        store: RuntimeStore | None = None,
        blob_store: BlobStore | None = None,
        *,
        policy_table: PolicyTable | None = None,
        run_timeout: float | None = None,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        max_pending_inputs: int = DEFAULT_MAX_PENDING_INPUTS,
        owner: str | None = None,
        claim_wait: float = 0.0,
        store_backoff: StoreBackoff | None = None,
        inbox_poll: float = DEFAULT_INBOX_POLL,
    ) -> None:
        """``inbox_poll``: seconds between two looks for inputs that other
        processes submitted to this adapter's sessions (PD-61);
        ``retry_delay``: the pause after a failed run (PD-10);
        ``store_backoff``: how the loops wait for a store that could not be
        reached (PD-39; by default 50 ms doubling up to 5 s); ``owner`` names
        this adapter in the store's leases (unique per adapter by default);
        ``claim_wait`` is how long registering waits for a runtime another
        owner holds before ``RuntimeOwnedError``; ``max_pending_inputs``
        bounds each session's unfinished inputs (PD-43)."""
        if (store is None) != (blob_store is None):
            raise ValueError("a persistent adapter needs both a store and a blob store")
        if owner is not None:
            checked_owner(owner, "owner")
        self.ownership = (
            OwnerLeases(
                store,
                owner or default_owner(),
                self._ownership_lost,
                claim_wait=claim_wait,
            )
            if store is not None and owns_leases(store)
            else None
        )
        self._lost: dict[SessionId, str] = {}  # sessions dropped, and why
        self._dropping: set[asyncio.Task[None]] = set()
        self.store = store
        self.blob_store = blob_store
        self.policy_table = policy_table
        self.run_timeout = run_timeout
        self.retry_delay = retry_delay
        self.max_pending_inputs = max_pending_inputs  # per session (PD-43)
        self.store_backoff = store_backoff or StoreBackoff()
        self.sessions: dict[SessionId, Session] = {}
        self._registering: dict[SessionId, asyncio.Future[None]] = {}
        self._closed = False
        self.control_plane = RuntimeControlPlane(self)
        self.inbox_watcher = (
            InboxWatcher(
                store,
                self._admit_runtime_inbox,
                checked_interval(inbox_poll),
                self.store_backoff,
            )
            if store is not None and keeps_inbox(store)
            else None
        )

    @classmethod
    def ephemeral(
        cls,
        policy_table: PolicyTable | None = None,
        *,
        run_timeout: float | None = None,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        max_pending_inputs: int = DEFAULT_MAX_PENDING_INPUTS,
    ) -> RuntimeSessionAdapter:
        return cls(
            policy_table=policy_table,
            run_timeout=run_timeout,
            retry_delay=retry_delay,
            max_pending_inputs=max_pending_inputs,
        )

    @classmethod
    def persistent(
        cls,
        store: RuntimeStore,
        blob_store: BlobStore,
        policy_table: PolicyTable | None = None,
        *,
        run_timeout: float | None = None,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        max_pending_inputs: int = DEFAULT_MAX_PENDING_INPUTS,
        owner: str | None = None,
        claim_wait: float = 0.0,
        store_backoff: StoreBackoff | None = None,
        inbox_poll: float = DEFAULT_INBOX_POLL,
    ) -> RuntimeSessionAdapter:
        return cls(
            store,
            blob_store,
            policy_table=policy_table,
            run_timeout=run_timeout,
            retry_delay=retry_delay,
            max_pending_inputs=max_pending_inputs,
            owner=owner,
            claim_wait=claim_wait,
            store_backoff=store_backoff,
            inbox_poll=inbox_poll,
        )

    # ---------------------------------------------------------------- registration

    def _new_driver(self, runtime_id: LogicalRuntimeId) -> RuntimeDriver:
        if self.store is not None and self.blob_store is not None:
            return PersistentRuntimeDriver(
                runtime_id,
                self.store,
                self.blob_store,
                policy_table=self.policy_table,
                max_pending_inputs=self.max_pending_inputs,
                ownership=self.ownership,
                lazy_payloads=True,  # the loop loads them for its runs
            )
        return EphemeralRuntimeDriver(
            runtime_id,
            policy_table=self.policy_table,
            max_pending_inputs=self.max_pending_inputs,
        )

    async def register_session(self, session_id: SessionId) -> None:
        """X-3: create the session's runtime and recover it from the store.
        Concurrent calls for one id share a single registration."""
        self._refuse_if_closed(session_id)
        if session_id in self.sessions:
            return
        pending = self._registering.get(session_id)
        if pending is None:
            pending = asyncio.ensure_future(self._create_session(session_id))
            self._registering[session_id] = pending
            pending.add_done_callback(lambda _: self._registering.pop(session_id, None))
        await asyncio.shield(pending)
        self._refuse_if_closed(session_id)  # closed while it recovered

    async def _create_session(self, session_id: SessionId) -> None:
        runtime_id = LogicalRuntimeId(str(session_id))
        driver = self._new_driver(runtime_id)
        report = await driver.recover()  # a failure propagates: not registered
        self._lost.pop(session_id, None)
        session = Session(session_id, runtime_id, driver, recovery=report)
        self.sessions[session_id] = session
        if self.inbox_watcher is not None:
            self.inbox_watcher.start()
            try:  # what was submitted before this owner took the runtime
                await self._admit_inbox(session)
            except Exception:  # the watcher tries again; registered anyway
                log.exception("inbox admission of %s failed", runtime_id)

    async def register_session_with_executor(
        self, session_id: SessionId, executor: CoreExecutor
    ) -> None:
        """X-4: attach an executor and start the session's loop (once: a
        concurrent second call finds the loop under the lock and leaves)."""
        await self.register_session(session_id)
        session = self.sessions[session_id]
        async with session.lock:
            self._refuse_if_closed(session_id)  # no loop starts after close
            if session.has_live_loop():
                return
            driver = session.driver
            if driver.runtime_state() is RuntimeState.ATTACHED:
                driver.detach()  # a dead loop's attachment
            if driver.runtime_state() is not RuntimeState.IDLE:
                return  # retired, stopped, destroyed: nothing will run here
            driver.attach()
            loop = RuntimeLoop(
                session,
                executor,
                run_timeout=self.run_timeout,
                retry_delay=self.retry_delay,
                store_backoff=self.store_backoff,
            )
            session.loop = loop
            loop.start()
            if driver.active_input_ids():
                loop.wake()

    async def unregister_session(self, session_id: SessionId) -> None:
        """X-5: forget the session; its waiters learn why."""
        session = self._session(session_id)
        del self.sessions[session_id]
        session.waiters.resolve_all(UNREGISTERED)
        try:
            if session.loop is not None:
                await session.loop.cancel()
            async with session.lock:
                session.driver.detach()
        finally:
            session.waiters.resolve_all(UNREGISTERED)  # registered meanwhile
            if self.ownership is not None:
                await self.ownership.release(session.runtime_id)

    def _ownership_lost(self, runtime_id: LogicalRuntimeId, reason: str) -> None:
        """A lease is lost (PD-36): unregister its session and answer its
        waiters at once, so that nothing else (the loop ending because its
        write was fenced) answers them first with another reason; stop
        its loop in a task of its own (the write that found out may hold
        the session's lock)."""
        for session in self.sessions.values():
            if session.runtime_id == runtime_id:
                why = f"{OWNERSHIP_LOST}: {reason}"
                del self.sessions[session.session_id]
                self._lost[session.session_id] = why
                session.waiters.resolve_all(RuntimeTerminated(reason=why))
                task = asyncio.ensure_future(self._drop_lost(session, why))
                self._dropping.add(task)
                task.add_done_callback(self._dropping.discard)
                return

    async def _drop_lost(self, session: Session, reason: str) -> None:
        """Stop the lost session's loop (and the run in flight); a waiter
        registered meanwhile hears ``reason`` too."""
        outcome = RuntimeTerminated(reason=reason)
        try:
            if session.loop is not None:
                await session.loop.cancel()
        finally:
            session.waiters.resolve_all(outcome)

    def _answer_if_gone(self, session: Session) -> None:
        """An accept that held the lock while close or unregister (X-5) got
        past this session: the waiter it registered learns that, whenever
        they got to their last word."""
        if self._closed:
            session.waiters.resolve_all(CLOSED)
        elif self.sessions.get(session.session_id) is not session:
            session.waiters.resolve_all(UNREGISTERED)

    def _session(self, session_id: SessionId) -> Session:
        session = self.sessions.get(session_id)
        if session is None:  # the phase says destroyed, the text says why
            lost = self._lost.get(session_id)
            raise NotReadyError(
                RuntimeState.DESTROYED,
                lost or f"session {session_id} is not registered",
            )
        return session

    def _open_session(self, session_id: SessionId) -> Session:
        """The session, for an operation that adds work or a waiter."""
        self._refuse_if_closed(session_id)
        return self._session(session_id)

    def _refuse_if_closed(self, session_id: SessionId) -> None:
        if not self._closed:
            return
        session = self.sessions.get(session_id)
        state = (
            session.driver.runtime_state()
            if session is not None
            else RuntimeState.DESTROYED
        )
        raise NotReadyError(state, "the session adapter is closed")

    # ---------------------------------------------------------------- inputs

    async def accept_input(self, session_id: SessionId, input: Input) -> AcceptOutcome:
        """X-6."""
        session = self._open_session(session_id)
        async with session.lock:
            outcome = await self._admitted(session, input)
            self._after_admission(session)
        return outcome

    async def _admitted(self, session: Session, input: Input) -> AcceptOutcome:
        """The driver's accept. Cancelled after its write committed, the
        input is queued all the same (decision 14): the loop still hears."""
        try:
            return await session.driver.accept_input(input)
        except asyncio.CancelledError:
            self._after_admission(session)
            raise
        except MeerkatError as error:
            if self._closed and _fenced(error):
                # It waited for the lock while close gave the lease back:
                # refused for the close, not for another owner.
                raise NotReadyError(
                    session.driver.runtime_state(), "the session adapter is closed"
                ) from error
            raise

    async def accept_input_with_completion(
        self, session_id: SessionId, input: Input
    ) -> tuple[AcceptOutcome, CompletionHandle | None]:
        """X-7: the outcome and, unless the input is already finished, a
        handle that resolves exactly once when it is."""
        session = self._open_session(session_id)
        async with session.lock:
            outcome = await self._admitted(session, input)
            if isinstance(outcome, Rejected):
                raise ValidationFailedError(str(outcome.reason))
            target = outcome.input_id if isinstance(outcome, Accepted) else None
            if isinstance(outcome, Deduplicated):
                target = outcome.existing_id
            handle = self._register_waiter(session, target)
            self._after_admission(session)
            self._answer_if_gone(session)
        return outcome, handle

    async def admit_inbox(self, session_id: SessionId) -> int:
        """PD-58: admit what other processes submitted to the session's
        inbox now, without waiting for the watcher; the entries taken."""
        return await self._admit_inbox(self._open_session(session_id))

    async def _admit_runtime_inbox(self, runtime_id: LogicalRuntimeId) -> int:
        session = self.sessions.get(SessionId(str(runtime_id)))
        if self._closed or session is None or session.runtime_id != runtime_id:
            return 0  # another owner's runtime (or none's: placement's job)
        return await self._admit_inbox(session)

    async def _admit_inbox(self, session: Session) -> int:
        driver = session.driver
        if not isinstance(driver, PersistentRuntimeDriver):
            return 0
        taken = 0
        async with session.lock:
            try:
                taken = await driver.admit_from_inbox()
            finally:
                self._after_admission(session)
        return taken

    def _register_waiter(
        self, session: Session, input_id: InputId | None
    ) -> CompletionHandle | None:
        state = session.driver.input_state(input_id) if input_id is not None else None
        if input_id is None or state is None or state.is_terminal():
            return None
        handle = session.waiters.register(input_id)
        loop = session.loop
        if loop is not None and loop.failure is not None and not loop.alive():
            # W-3: an error ended the loop; no run will answer this waiter
            # until an executor is registered again, so it hears what the
            # others heard (the input stays queued in the store).
            session.waiters.resolve_all(loop.failure)
        return handle

    def _after_admission(self, session: Session) -> None:
        signal = session.driver.take_post_admission_signal()
        session.settle(None)  # superseded / coalesced inputs resolve at once
        if session.loop is not None and signal.should_wake():
            session.loop.wake()

    async def completion_for(
        self, session_id: SessionId, input_id: InputId
    ) -> CompletionHandle | None:
        """A waiter for an input accepted earlier (e.g. before a restart);
        None when it is unknown or already finished."""
        session = self._open_session(session_id)
        async with session.lock:
            handle = self._register_waiter(session, input_id)
            self._answer_if_gone(session)
            return handle

    def recovery_report(self, session_id: SessionId) -> RecoveryReport | None:
        """What registering the session recovered from the store."""
        return self._session(session_id).recovery

    async def input_state(
        self, session_id: SessionId, input_id: InputId
    ) -> InputState | None:
        """A copy of the input's state, its payload included (read from the
        store when the runtime left it there, PD-64)."""
        driver = self._session(session_id).driver
        if isinstance(driver, PersistentRuntimeDriver):
            return await driver.input_state_with_payload(input_id)
        return driver.input_state(input_id)

    async def list_active_inputs(self, session_id: SessionId) -> list[InputId]:
        return self._session(session_id).driver.active_input_ids()

    async def runtime_state(self, session_id: SessionId) -> RuntimeState:
        return self._session(session_id).driver.runtime_state()

    # ---------------------------------------------------------------- control

    async def retire_runtime(self, session_id: SessionId) -> RetireReport:
        """X-11: a live loop drains the retired runtime; otherwise its pending
        inputs are abandoned (reason retired) and their waiters told so."""
        session = self._session(session_id)
        async with session.lock:
            report = await session.driver.retire()
            if report.inputs_pending_drain == 0:
                return report
            if session.has_live_loop():
                assert session.loop is not None
                session.loop.wake()
                return report
            abandoned = await self._terminating(
                session,
                session.driver.abandon_pending_inputs(InputAbandonReason.Retired()),
                "retired without runtime loop",
            )
        return RetireReport(
            inputs_abandoned=report.inputs_abandoned + abandoned, inputs_pending_drain=0
        )

    async def reset_runtime(self, session_id: SessionId) -> ResetReport:
        """X-12 (decision 25: the runtime ends idle, the loop keeps serving)."""
        session = self._session(session_id)
        async with session.lock:
            state = session.driver.runtime_state()
            if state is RuntimeState.RUNNING:
                raise NotReadyError(state)
            return await self._terminating(
                session, session.driver.reset(), "runtime reset"
            )

    async def stop_runtime_executor(
        self, session_id: SessionId, command: AnyRunControlCommand
    ) -> None:
        """X-14: through the loop when there is one (it stops the runtime and
        tells the executor once); otherwise directly."""
        session = self._session(session_id)
        if session.has_live_loop():
            assert session.loop is not None
            session.loop.send_control(command)
            if isinstance(command, StopRuntimeExecutor):
                await session.loop.join()
            return
        if not isinstance(command, StopRuntimeExecutor):
            raise InternalError("failed to send stop: runtime loop is unavailable")
        async with session.lock:
            await self._terminating(
                session,
                session.driver.on_runtime_control(RuntimeControlCommand.STOP),
                "runtime stopped",
            )

    async def destroy_runtime(self, session_id: SessionId) -> DestroyReport:
        session = self._session(session_id)
        async with session.lock:
            return await self._terminating(
                session, session.driver.destroy(), "runtime destroyed"
            )

    async def recover_runtime(self, session_id: SessionId) -> RecoveryReport:
        session = self._session(session_id)
        async with session.lock:
            report = await session.driver.recover()
            session.settle(None, everything=True)
            if session.loop is not None:
                session.loop.wake()
        return report

    @staticmethod
    async def _terminating(session: Session, operation: Awaitable[T], reason: str) -> T:
        """A driver operation that ends every pending input; their waiters
        learn ``reason`` (K-4). Cancelled after its write committed, the
        operation stands (decision 14): the waiters of the inputs it
        finished are answered all the same."""
        try:
            result = await operation
        except asyncio.CancelledError:
            driver = session.driver
            session.waiters.resolve_where(
                lambda i: not _finished(driver, i), RuntimeTerminated(reason=reason)
            )
            raise
        session.waiters.resolve_all(RuntimeTerminated(reason=reason))
        return result

    async def close(self) -> None:
        """Refuse new work, answer every waiter ``CLOSED``, stop every loop (a
        run in flight is rolled back). The waiters are answered before the
        loops are stopped, so none hears "runtime loop exited" instead; an
        accept that was already past its check answers its own waiter
        (``_answer_if_gone``). Cancelled meanwhile, it still closes every
        session, then is cancelled."""
        self._closed = True
        sessions = list(self.sessions.values())
        for session in sessions:
            session.waiters.resolve_all(CLOSED)
        cancelled = False
        for session in sessions:
            if session.loop is not None:
                try:
                    await session.loop.cancel()
                except asyncio.CancelledError:
                    cancelled = True
            session.waiters.resolve_all(CLOSED)
        if self.inbox_watcher is not None:
            await self.inbox_watcher.close()
        if self.ownership is not None:
            await self.ownership.close()  # after the loops: none writes now
        if cancelled:
            raise asyncio.CancelledError()


def _fenced(error: MeerkatError) -> bool:
    """``Fenced``, as the store raised it or as the driver wrapped it."""
    if isinstance(error, InternalError):
        return isinstance(error.store_error, FencedError)
    return isinstance(error, FencedError)


def _finished(driver: RuntimeDriver, input_id: InputId) -> bool:
    state = driver.peek_input_state(input_id)
    return state is None or state.is_terminal()


__all__ = ["RuntimeDriverError", "RuntimeSessionAdapter", "StoreBackoff"]
