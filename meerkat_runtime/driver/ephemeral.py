"""``EphemeralRuntimeDriver``: a runtime core and nothing else, no IO.

Its state lives only in memory; every operation runs on the core at once,
synchronously (the ``*_now`` methods) or through the async API both drivers
share.
"""

from __future__ import annotations

from meerkat_runtime.driver.core import (
    DEFAULT_MAX_PENDING_INPUTS,
    DriverObservation,
    RuntimeControlCommand,
    RuntimeCore,
)
from meerkat_runtime.driver.face import RuntimeDriver
from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import LogicalRuntimeId, RunId
from meerkat_runtime.inputs import Input
from meerkat_runtime.outcomes import (
    AcceptOutcome,
    DestroyReport,
    RecoveryReport,
    ResetReport,
    RetireReport,
)
from meerkat_runtime.policy import PolicyTable
from meerkat_runtime.runs import RunEvent
from meerkat_runtime.telemetry import traced_accept, traced_run_event


class EphemeralRuntimeDriver(RuntimeDriver):
    """A runtime whose state lives only in memory (starts IDLE)."""

    def __init__(
        self,
        runtime_id: LogicalRuntimeId,
        *,
        policy_table: PolicyTable | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        max_pending_inputs: int = DEFAULT_MAX_PENDING_INPUTS,
    ) -> None:
        self.runtime_id = runtime_id
        self._core = RuntimeCore(
            runtime_id,
            policy_table=policy_table,
            max_input_bytes=max_input_bytes,
            max_pending_inputs=max_pending_inputs,
        )

    def accept_now(self, inp: Input) -> AcceptOutcome:
        """The accept pipeline (A-1 .. A-18), synchronously."""
        return self._core.accept(inp)

    @traced_accept
    async def accept_input(self, input: Input) -> AcceptOutcome:
        return self._core.accept(input)

    def run_event_now(self, event: RunEvent) -> None:
        """R-9 .. R-13; decision 21: an event for a run that is not current raises."""
        self._core.run_event(event)

    @traced_run_event
    async def on_run_event(self, event: RunEvent) -> None:
        self._core.run_event(event)

    async def withdraw_run(self, run_id: RunId) -> None:
        self._core.withdraw_run(run_id)

    def retire_now(self) -> RetireReport:
        return self._core.retire()

    async def retire(self) -> RetireReport:
        return self._core.retire()

    def reset_now(self) -> ResetReport:
        return self._core.reset()

    async def reset(self) -> ResetReport:
        return self._core.reset()

    def destroy_now(self) -> DestroyReport:
        return self._core.destroy()

    async def destroy(self) -> DestroyReport:
        return self._core.destroy()

    def runtime_control_now(self, command: RuntimeControlCommand) -> None:
        self._core.runtime_control(command)

    async def on_runtime_control(self, command: RuntimeControlCommand) -> None:
        self._core.runtime_control(command)

    def recover_now(self) -> RecoveryReport:
        return self._core.recover()

    async def recover(self) -> RecoveryReport:
        return self._core.recover()

    def recycle_now(self) -> int:
        return self._core.recycle()

    async def recycle_preserving_work(self) -> int:
        return self._core.recycle()

    async def abandon_pending_inputs(self, reason: InputAbandonReason) -> int:
        """C-15 with decision 8: abandon every unfinished input; they leave the
        lanes for good. Used when a retired runtime has nothing to drain it."""
        return self._core.abandon_pending(reason)


__all__ = [
    "DriverObservation",
    "EphemeralRuntimeDriver",
    "RuntimeControlCommand",
]
