"""``RuntimeControlPlane``: many runtimes addressed by ``LogicalRuntimeId`` (section 10).

A thin layer over the adapter's sessions: it finds the session of a runtime
id, runs the operation under the session lock, converts driver errors into
``RuntimeControlPlaneError`` (CP-1) and resolves waiters as K-4 says.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from meerkat_runtime.errors import (
    InternalError,
    MeerkatError,
    NotReadyError,
    RuntimeDriverError,
    rebuilt,
)
from meerkat_runtime.events import RuntimeEventEnvelope
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import LogicalRuntimeId, RunId
from meerkat_runtime.inputs import Input
from meerkat_runtime.outcomes import (
    AcceptOutcome,
    DestroyReport,
    RecoveryReport,
    RecycleReport,
    ResetReport,
    RetireReport,
)
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.sessions.completion import RuntimeTerminated
from meerkat_runtime.store.base import RuntimeStoreError

if TYPE_CHECKING:
    from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
    from meerkat_runtime.sessions.session import Session


class RuntimeControlPlaneError(MeerkatError):
    NotFound: ClassVar[type[RuntimeNotFoundError]]
    InvalidState: ClassVar[type[InvalidStateError]]
    StoreError: ClassVar[type[ControlPlaneStoreError]]
    Internal: ClassVar[type[ControlPlaneInternalError]]


class RuntimeNotFoundError(RuntimeControlPlaneError):
    def __init__(self, runtime_id: LogicalRuntimeId) -> None:
        self.runtime_id = runtime_id
        super().__init__(f"Runtime not found: {runtime_id}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.runtime_id)


class InvalidStateError(RuntimeControlPlaneError):
    def __init__(self, state: RuntimeState) -> None:
        self.state = state
        super().__init__(f"Invalid state for operation: {state.value}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.state)


class ControlPlaneStoreError(RuntimeControlPlaneError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"Store error: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.message)


class ControlPlaneInternalError(RuntimeControlPlaneError):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"Internal error: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.message)


RuntimeControlPlaneError.NotFound = RuntimeNotFoundError
RuntimeControlPlaneError.InvalidState = InvalidStateError
RuntimeControlPlaneError.StoreError = ControlPlaneStoreError
RuntimeControlPlaneError.Internal = ControlPlaneInternalError


def _internal(exc: RuntimeDriverError) -> ControlPlaneInternalError:
    """A driver error as the control plane's ``Internal``. A driver's own
    ``Internal`` gives its message, not its text: the kind is named once
    ("Internal error: Store unavailable: ...", not "Internal error:
    Internal error: ...")."""
    return ControlPlaneInternalError(
        exc.message if isinstance(exc, InternalError) else str(exc)
    )


class RuntimeControlPlane:
    def __init__(self, adapter: RuntimeSessionAdapter) -> None:
        self.adapter = adapter

    def _session(self, runtime_id: LogicalRuntimeId) -> Session:
        for session in self.adapter.sessions.values():
            if session.runtime_id == runtime_id:
                return session
        raise RuntimeNotFoundError(runtime_id)

    async def ingest(self, runtime_id: LogicalRuntimeId, input: Input) -> AcceptOutcome:
        """CP-2: accept without a completion handle; driver errors are Internal."""
        session = self._session(runtime_id)
        try:
            return await self.adapter.accept_input(session.session_id, input)
        except RuntimeDriverError as exc:
            raise _internal(exc) from exc

    async def publish_event(self, envelope: RuntimeEventEnvelope) -> None:
        """CP-3: routed by runtime id; drivers take no action on events."""
        self._session(envelope.runtime_id)

    async def retire(self, runtime_id: LogicalRuntimeId) -> RetireReport:
        session = self._session(runtime_id)
        try:
            return await self.adapter.retire_runtime(session.session_id)
        except RuntimeDriverError as exc:
            raise _internal(exc) from exc

    async def reset(self, runtime_id: LogicalRuntimeId) -> ResetReport:
        """CP-6: refused while running, before anything changes (also when a
        run starts between this call and the session lock)."""
        session = self._session(runtime_id)
        if session.driver.runtime_state() is RuntimeState.RUNNING:
            raise InvalidStateError(RuntimeState.RUNNING)
        try:
            return await self.adapter.reset_runtime(session.session_id)
        except NotReadyError as exc:
            if exc.state is RuntimeState.RUNNING:
                raise InvalidStateError(RuntimeState.RUNNING) from exc
            raise _internal(exc) from exc
        except RuntimeDriverError as exc:
            raise _internal(exc) from exc

    async def recycle(self, runtime_id: LogicalRuntimeId) -> RecycleReport:
        """CP-5 with decision 7: back to idle with pending work preserved; an
        attached executor is re-attached; waiters of inputs that are no longer
        pending are told so."""
        session = self._session(runtime_id)
        async with session.lock:
            driver = session.driver
            state = driver.runtime_state()
            if state is RuntimeState.RUNNING:
                raise InvalidStateError(state)
            try:
                transferred = await driver.recycle_preserving_work()
            except RuntimeDriverError as exc:
                raise _internal(exc) from exc
            except asyncio.CancelledError:
                # Cancelled after its write committed, the recycle stands
                # (decision 14): finish it; if it did not, this changes nothing.
                _after_recycle(session)
                raise
            _after_recycle(session)
        return RecycleReport(inputs_transferred=transferred)

    async def recover(self, runtime_id: LogicalRuntimeId) -> RecoveryReport:
        session = self._session(runtime_id)
        try:
            return await self.adapter.recover_runtime(session.session_id)
        except RuntimeDriverError as exc:
            raise _internal(exc) from exc

    async def runtime_state(self, runtime_id: LogicalRuntimeId) -> RuntimeState:
        return self._session(runtime_id).driver.runtime_state()

    async def destroy(self, runtime_id: LogicalRuntimeId) -> DestroyReport:
        session = self._session(runtime_id)
        try:
            return await self.adapter.destroy_runtime(session.session_id)
        except RuntimeDriverError as exc:
            raise _internal(exc) from exc

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        """CP-10: straight from the store (None for an ephemeral adapter)."""
        if self.adapter.store is None:
            return None
        try:
            return await self.adapter.store.load_boundary_receipt(
                runtime_id, run_id, sequence
            )
        except RuntimeStoreError as exc:
            raise ControlPlaneStoreError(str(exc)) from exc


def _after_recycle(session: Session) -> None:
    """A live loop's executor is attached again, waiters of inputs no longer
    pending are told so, and the loop looks at the preserved work."""
    driver = session.driver
    if session.has_live_loop() and driver.runtime_state() is RuntimeState.IDLE:
        driver.attach()
    active = set(driver.active_input_ids())
    session.waiters.resolve_where(
        active.__contains__,
        RuntimeTerminated(reason="recycled input no longer pending"),
    )
    if session.loop is not None:
        session.loop.wake()
