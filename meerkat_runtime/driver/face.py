"""``RuntimeDriver``: what both drivers show their callers, over a core.

Theory of operation: a driver holds one ``RuntimeCore`` (composition, not
inheritance) and answers queries and the operations that never write (D-2's
pure delegations: staging, the manual run helpers, attach and detach) by
handing them to it. The operations that change what a store would hold are
async and each driver implements them: the ephemeral one calls the core, the
persistent one calls it inside a checkpoint and writes before answering.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from meerkat_runtime.driver.core import (
    DriverObservation,
    RuntimeControlCommand,
    RuntimeCore,
)
from meerkat_runtime.events import RuntimeEventEnvelope
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input
from meerkat_runtime.ledger import Lane
from meerkat_runtime.outcomes import (
    AcceptOutcome,
    DestroyReport,
    PostAdmissionSignal,
    RecoveryReport,
    ResetReport,
    RetireReport,
)
from meerkat_runtime.runs import RunEvent


class RuntimeDriver(ABC):
    """The API both drivers share; ``_core`` holds the runtime."""

    runtime_id: LogicalRuntimeId
    _core: RuntimeCore

    # ---------------------------------------------------------------- writes

    @abstractmethod
    async def accept_input(self, input: Input) -> AcceptOutcome: ...

    @abstractmethod
    async def on_run_event(self, event: RunEvent) -> None: ...

    @abstractmethod
    async def withdraw_run(self, run_id: RunId) -> None:
        """W-6a with PD-38: the current run ends as if it had never staged
        its batch (its inputs back in their lanes, no attempt counted)."""

    @abstractmethod
    async def retire(self) -> RetireReport: ...

    @abstractmethod
    async def reset(self) -> ResetReport: ...

    @abstractmethod
    async def destroy(self) -> DestroyReport: ...

    @abstractmethod
    async def on_runtime_control(self, command: RuntimeControlCommand) -> None: ...

    @abstractmethod
    async def recover(self) -> RecoveryReport: ...

    @abstractmethod
    async def recycle_preserving_work(self) -> int: ...

    @abstractmethod
    async def abandon_pending_inputs(self, reason: InputAbandonReason) -> int: ...

    # ---------------------------------------------------------------- runs

    def start_run(self, run_id: RunId) -> None:
        self._core.start_run(run_id)

    def complete_run(self) -> RunId:
        return self._core.complete_run()

    def stage_input(self, input_id: InputId, run_id: RunId) -> None:
        self._core.stage_batch([input_id], run_id)

    def stage_batch(self, ids: Sequence[InputId], run_id: RunId) -> None:
        self._core.stage_batch(ids, run_id)

    def apply_input(self, input_id: InputId, run_id: RunId) -> None:
        self._core.apply_input(input_id, run_id)

    def rollback_staged(self, ids: Sequence[InputId]) -> None:
        self._core.rollback_staged(ids)

    def consume_inputs(self, ids: Sequence[InputId], run_id: RunId) -> None:
        self._core.consume_inputs(ids, run_id)

    def attach(self) -> None:
        self._core.attach()

    def detach(self) -> RuntimeState | None:
        return self._core.detach()

    # ---------------------------------------------------------------- queries

    def runtime_state(self) -> RuntimeState:
        return self._core.runtime_state()

    def peek_input_state(self, input_id: InputId) -> InputState | None:
        """The live entry, for read-only use inside the runtime's own layers
        (waiter settlement on hot paths); never mutate it."""
        return self._core.peek_input_state(input_id)

    def input_state(self, input_id: InputId) -> InputState | None:
        """A copy: changing it does not change the runtime."""
        return self._core.input_state(input_id)

    def active_input_ids(self) -> list[InputId]:
        return self._core.active_input_ids()

    def queued_input_ids(self, lane: Lane = Lane.QUEUE) -> list[InputId]:
        return self._core.queued_input_ids(lane)

    def is_idle(self) -> bool:
        return self._core.is_idle()

    def is_idle_or_attached(self) -> bool:
        return self._core.is_idle_or_attached()

    def dequeue_next(self) -> tuple[InputId, Input] | None:
        return self._core.dequeue_next()

    def dequeue_by_id(self, input_id: InputId) -> tuple[InputId, Input] | None:
        return self._core.dequeue_by_id(input_id)

    def payload(self, input_id: InputId) -> Input:
        return self._core.payload(input_id)

    def input_kind(self, input_id: InputId) -> str:
        """The kind of a known input's payload (T-3), in memory or not."""
        return self._core.input_kind(input_id)

    async def load_payloads(self, ids: Sequence[InputId]) -> None:  # noqa: B027 - a no-op but for the persistent driver
        """Bring the payloads of ``ids`` that were left in the store into
        memory (PD-64); only a persistent driver leaves any there."""

    def drain_events(self) -> list[RuntimeEventEnvelope]:
        return self._core.drain_events()

    def take_wake_requested(self) -> bool:
        return self._core.take_wake_requested()

    def take_process_requested(self) -> bool:
        return self._core.take_process_requested()

    def take_post_admission_signal(self) -> PostAdmissionSignal:
        return self._core.take_post_admission_signal()

    def observe(self) -> DriverObservation:
        return self._core.observe()
