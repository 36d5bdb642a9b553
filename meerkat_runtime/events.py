"""Runtime events (docs/behaviour.md section 11).

Drivers buffer them in memory (``drain_events()``); they are never persisted.
Input lifecycle events carry stable codes (``input.accepted`` ...). Abandon
reasons are stable snake_case names (decision 15).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from meerkat_runtime.codec import Value
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId, uuid7_text


class InputLifecycleEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="code"):
    input_id: InputId

    Accepted: ClassVar[type[InputAccepted]]
    Deduplicated: ClassVar[type[InputDeduplicated]]
    Superseded: ClassVar[type[InputSuperseded]]
    Coalesced: ClassVar[type[InputCoalesced]]
    Queued: ClassVar[type[InputQueued]]
    Staged: ClassVar[type[InputStaged]]
    Applied: ClassVar[type[InputApplied]]
    Consumed: ClassVar[type[InputConsumed]]
    Abandoned: ClassVar[type[InputAbandoned]]


class InputAccepted(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.accepted"
):
    pass


class InputDeduplicated(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.deduplicated"
):
    existing_id: InputId


class InputSuperseded(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.superseded"
):
    superseded_by: InputId


class InputCoalesced(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.coalesced"
):
    aggregate_id: InputId


class InputQueued(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.queued"
):
    pass


class InputStaged(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.staged"
):
    run_id: RunId


class InputApplied(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.applied"
):
    run_id: RunId


class InputConsumed(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.consumed"
):
    run_id: RunId


class InputAbandoned(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="input.abandoned"
):
    reason: str


InputLifecycleEvent.Accepted = InputAccepted
InputLifecycleEvent.Deduplicated = InputDeduplicated
InputLifecycleEvent.Superseded = InputSuperseded
InputLifecycleEvent.Coalesced = InputCoalesced
InputLifecycleEvent.Queued = InputQueued
InputLifecycleEvent.Staged = InputStaged
InputLifecycleEvent.Applied = InputApplied
InputLifecycleEvent.Consumed = InputConsumed
InputLifecycleEvent.Abandoned = InputAbandoned
AnyInputLifecycleEvent = (
    InputAccepted
    | InputDeduplicated
    | InputSuperseded
    | InputCoalesced
    | InputQueued
    | InputStaged
    | InputApplied
    | InputConsumed
    | InputAbandoned
)


class RunLifecycleEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="code"):
    run_id: RunId

    Started: ClassVar[type[RunLifecycleStarted]]
    Completed: ClassVar[type[RunLifecycleCompleted]]
    Failed: ClassVar[type[RunLifecycleFailed]]
    Cancelled: ClassVar[type[RunLifecycleCancelled]]


class RunLifecycleStarted(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="run.started"
):
    pass


class RunLifecycleCompleted(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="run.completed"
):
    pass


class RunLifecycleFailed(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="run.failed"
):
    error: str
    recoverable: bool


class RunLifecycleCancelled(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="run.cancelled"
):
    pass


RunLifecycleEvent.Started = RunLifecycleStarted
RunLifecycleEvent.Completed = RunLifecycleCompleted
RunLifecycleEvent.Failed = RunLifecycleFailed
RunLifecycleEvent.Cancelled = RunLifecycleCancelled
AnyRunLifecycleEvent = (
    RunLifecycleStarted
    | RunLifecycleCompleted
    | RunLifecycleFailed
    | RunLifecycleCancelled
)


class RuntimeEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="category"):
    """E-2: the category tag; lifecycle events sit under ``data``."""

    InputLifecycle: ClassVar[type[InputLifecycle]]
    RunLifecycle: ClassVar[type[RunLifecycle]]
    RuntimeStateChange: ClassVar[type[RuntimeStateChange]]


class InputLifecycle(
    RuntimeEvent, frozen=True, gc=False, kw_only=True, tag="input_lifecycle"
):
    data: AnyInputLifecycleEvent


class RunLifecycle(
    RuntimeEvent, frozen=True, gc=False, kw_only=True, tag="run_lifecycle"
):
    data: AnyRunLifecycleEvent


class RuntimeStateChange(
    RuntimeEvent, frozen=True, gc=False, kw_only=True, tag="runtime_state_change"
):
    from_state: RuntimeState
    to_state: RuntimeState


RuntimeEvent.InputLifecycle = InputLifecycle
RuntimeEvent.RunLifecycle = RunLifecycle
RuntimeEvent.RuntimeStateChange = RuntimeStateChange
AnyRuntimeEvent = InputLifecycle | RunLifecycle | RuntimeStateChange


class RuntimeEventEnvelope(Value, frozen=True, gc=False, kw_only=True):
    id: str
    timestamp: datetime
    runtime_id: LogicalRuntimeId
    event: AnyRuntimeEvent

    @classmethod
    def wrap(
        cls,
        runtime_id: LogicalRuntimeId,
        event: AnyRuntimeEvent,
        now: datetime | None = None,
    ) -> RuntimeEventEnvelope:
        return cls(
            id=uuid7_text(),
            timestamp=now or datetime.now(UTC),
            runtime_id=runtime_id,
            event=event,
        )
