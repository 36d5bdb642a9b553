"""Runtime events (docs/behaviour.md section 11).

Theory of operation: drivers buffer events in memory (``drain_events()``);
they are never persisted, but their JSON is upstream's, so another tool can
read a stream (E-2): ``{"category": C, "data": ...}``, and inside the input,
run and topology categories the data is tagged by ``code`` with the event's
short name (``accepted``, ``started``, ``runtime_created``). The dotted names
(``input.accepted``) are the stable codes an API shows; every event has one as
``event_code`` (E-3), but they are not the wire tag. Abandon reasons are
stable snake_case names (decision 15).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, overload

import msgspec

from meerkat_runtime.codec import Value
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId, uuid7_text

# ------------------------------------------------------------------ inputs


class InputLifecycleEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="code"):
    input_id: InputId
    event_code: ClassVar[str]

    Accepted: ClassVar[type[InputAccepted]]
    Deduplicated: ClassVar[type[InputDeduplicated]]
    Superseded: ClassVar[type[InputSuperseded]]
    Coalesced: ClassVar[type[InputCoalesced]]
    Queued: ClassVar[type[InputQueued]]
    Staged: ClassVar[type[InputStaged]]
    Applied: ClassVar[type[InputApplied]]
    Consumed: ClassVar[type[InputConsumed]]
    Abandoned: ClassVar[type[InputAbandoned]]
    StateTransitioned: ClassVar[type[InputStateTransitioned]]


class InputAccepted(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="accepted"
):
    event_code: ClassVar[str] = "input.accepted"


class InputDeduplicated(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="deduplicated"
):
    event_code: ClassVar[str] = "input.deduplicated"
    existing_id: InputId


class InputSuperseded(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="superseded"
):
    event_code: ClassVar[str] = "input.superseded"
    superseded_by: InputId


class InputCoalesced(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="coalesced"
):
    event_code: ClassVar[str] = "input.coalesced"
    aggregate_id: InputId


class InputQueued(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="queued"
):
    event_code: ClassVar[str] = "input.queued"


class InputStaged(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="staged"
):
    event_code: ClassVar[str] = "input.staged"
    run_id: RunId


class InputApplied(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="applied"
):
    event_code: ClassVar[str] = "input.applied"
    run_id: RunId


class InputConsumed(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="consumed"
):
    event_code: ClassVar[str] = "input.consumed"
    run_id: RunId


class InputAbandoned(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="abandoned"
):
    event_code: ClassVar[str] = "input.abandoned"
    reason: str


class InputStateTransitioned(
    InputLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="state_transitioned"
):
    """Never emitted here (as upstream, E-4); decoded from other tools' streams."""

    event_code: ClassVar[str] = "input.state_transitioned"
    from_state: InputLifecycleState = msgspec.field(name="from")
    to_state: InputLifecycleState = msgspec.field(name="to")


InputLifecycleEvent.Accepted = InputAccepted
InputLifecycleEvent.Deduplicated = InputDeduplicated
InputLifecycleEvent.Superseded = InputSuperseded
InputLifecycleEvent.Coalesced = InputCoalesced
InputLifecycleEvent.Queued = InputQueued
InputLifecycleEvent.Staged = InputStaged
InputLifecycleEvent.Applied = InputApplied
InputLifecycleEvent.Consumed = InputConsumed
InputLifecycleEvent.Abandoned = InputAbandoned
InputLifecycleEvent.StateTransitioned = InputStateTransitioned
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
    | InputStateTransitioned
)

# -------------------------------------------------------------------- runs


class RunLifecycleEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="code"):
    run_id: RunId
    event_code: ClassVar[str]

    Started: ClassVar[type[RunLifecycleStarted]]
    Completed: ClassVar[type[RunLifecycleCompleted]]
    Failed: ClassVar[type[RunLifecycleFailed]]
    Cancelled: ClassVar[type[RunLifecycleCancelled]]


class RunLifecycleStarted(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="started"
):
    event_code: ClassVar[str] = "run.started"


class RunLifecycleCompleted(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="completed"
):
    event_code: ClassVar[str] = "run.completed"


class RunLifecycleFailed(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="failed"
):
    event_code: ClassVar[str] = "run.failed"
    error: str
    recoverable: bool


class RunLifecycleCancelled(
    RunLifecycleEvent, frozen=True, gc=False, kw_only=True, tag="cancelled"
):
    event_code: ClassVar[str] = "run.cancelled"


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

# ---------------------------------------------------------------- topology


class TopologyEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="code"):
    """Never emitted here (as upstream, E-4); decoded from other tools' streams."""

    runtime_id: LogicalRuntimeId
    event_code: ClassVar[str]

    RuntimeCreated: ClassVar[type[TopologyRuntimeCreated]]
    RuntimeRetired: ClassVar[type[TopologyRuntimeRetired]]
    RuntimeRecycled: ClassVar[type[TopologyRuntimeRecycled]]
    RuntimeDestroyed: ClassVar[type[TopologyRuntimeDestroyed]]


class TopologyRuntimeCreated(
    TopologyEvent, frozen=True, gc=False, kw_only=True, tag="runtime_created"
):
    event_code: ClassVar[str] = "topology.runtime_created"


class TopologyRuntimeRetired(
    TopologyEvent, frozen=True, gc=False, kw_only=True, tag="runtime_retired"
):
    event_code: ClassVar[str] = "topology.runtime_retired"


class TopologyRuntimeRecycled(
    TopologyEvent, frozen=True, gc=False, kw_only=True, tag="runtime_recycled"
):
    event_code: ClassVar[str] = "topology.runtime_recycled"


class TopologyRuntimeDestroyed(
    TopologyEvent, frozen=True, gc=False, kw_only=True, tag="runtime_destroyed"
):
    event_code: ClassVar[str] = "topology.runtime_destroyed"


TopologyEvent.RuntimeCreated = TopologyRuntimeCreated
TopologyEvent.RuntimeRetired = TopologyRuntimeRetired
TopologyEvent.RuntimeRecycled = TopologyRuntimeRecycled
TopologyEvent.RuntimeDestroyed = TopologyRuntimeDestroyed
AnyTopologyEvent = (
    TopologyRuntimeCreated
    | TopologyRuntimeRetired
    | TopologyRuntimeRecycled
    | TopologyRuntimeDestroyed
)

# ------------------------------------------------ state changes, projections


class RuntimeStateChangeEvent(Value, frozen=True, gc=False, kw_only=True):
    """The data of a runtime state change: ``{"from": ..., "to": ...}``."""

    event_code: ClassVar[str] = "runtime.state_changed"
    from_state: RuntimeState = msgspec.field(name="from")
    to_state: RuntimeState = msgspec.field(name="to")


class ProjectionEmitted(Value, frozen=True, gc=False, kw_only=True):
    """Never emitted here (as upstream, E-4); decoded from other tools' streams."""

    event_code: ClassVar[str] = "runtime.projection_emitted"
    rule_id: str
    projected_input_id: InputId
    source_event_id: str


# ------------------------------------------------------------ the category


class RuntimeEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="category"):
    """E-2: the category tag; the event itself sits under ``data``."""

    data: Any  # each category narrows it to its own event types

    @property
    def event_code(self) -> str:
        """E-3: the stable dotted code an API shows (``input.accepted``)."""
        code: str = self.data.event_code
        return code

    InputLifecycle: ClassVar[type[InputLifecycle]]
    RunLifecycle: ClassVar[type[RunLifecycle]]
    RuntimeStateChange: ClassVar[type[RuntimeStateChange]]
    Topology: ClassVar[type[Topology]]
    Projection: ClassVar[type[Projection]]


class InputLifecycle(
    RuntimeEvent, frozen=True, gc=False, kw_only=True, tag="input_lifecycle"
):
    data: AnyInputLifecycleEvent


class RunLifecycle(
    RuntimeEvent, frozen=True, gc=False, kw_only=True, tag="run_lifecycle"
):
    data: AnyRunLifecycleEvent


class _StateChangeConstructor(msgspec.StructMeta):
    """API.md builds a state change as ``RuntimeStateChange(from_state=...,
    to_state=...)`` while the wire nests the states under ``data`` (E-2). A
    struct cannot define ``__init__``, so its metaclass turns the two keywords
    into the ``data`` value; decoding, copying and ``data=`` are unchanged."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "from_state" in kwargs or "to_state" in kwargs:
            data = RuntimeStateChangeEvent(
                from_state=kwargs.pop("from_state"), to_state=kwargs.pop("to_state")
            )
            kwargs["data"] = data
        return super().__call__(*args, **kwargs)


class RuntimeStateChange(
    RuntimeEvent,
    frozen=True,
    gc=False,
    kw_only=True,
    tag="runtime_state_change",
    metaclass=_StateChangeConstructor,
):
    data: RuntimeStateChangeEvent

    if TYPE_CHECKING:  # the constructors the metaclass provides

        @overload
        def __init__(
            self, *, from_state: RuntimeState, to_state: RuntimeState
        ) -> None: ...
        @overload
        def __init__(self, *, data: RuntimeStateChangeEvent) -> None: ...
        def __init__(self, **fields: Any) -> None: ...

    @property
    def from_state(self) -> RuntimeState:
        return self.data.from_state

    @property
    def to_state(self) -> RuntimeState:
        return self.data.to_state


class Topology(RuntimeEvent, frozen=True, gc=False, kw_only=True, tag="topology"):
    data: AnyTopologyEvent


class Projection(RuntimeEvent, frozen=True, gc=False, kw_only=True, tag="projection"):
    data: ProjectionEmitted


RuntimeEvent.InputLifecycle = InputLifecycle
RuntimeEvent.RunLifecycle = RunLifecycle
RuntimeEvent.RuntimeStateChange = RuntimeStateChange
RuntimeEvent.Topology = Topology
RuntimeEvent.Projection = Projection
AnyRuntimeEvent = (
    InputLifecycle | RunLifecycle | RuntimeStateChange | Topology | Projection
)


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
