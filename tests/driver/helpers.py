"""Builders and small drivers of the ephemeral driver for the driver tests.

Inputs are built with fresh headers; keyword arguments set the header keys
(``key=`` idempotency, ``scope=`` supersession). ``RoutingPolicyTable`` wraps
the default table and routes chosen kinds to another queue mode (decision
20). The ``*_run`` helpers drive a run through the sync API; ``arun_*`` do the
same through the async public API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from meerkat_runtime import codec
from meerkat_runtime.driver.ephemeral import DriverObservation, EphemeralRuntimeDriver
from meerkat_runtime.events import (
    AnyInputLifecycleEvent,
    InputLifecycle,
    RuntimeStateChange,
)
from meerkat_runtime.generated.policy_table import PolicyDecision, QueueMode
from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.ids import (
    IdempotencyKey,
    InputId,
    LogicalRuntimeId,
    RunId,
    SupersessionKey,
)
from meerkat_runtime.inputs import (
    AnyInputOrigin,
    AnyPeerConvention,
    ContinuationInput,
    ExternalEventInput,
    FlowStepInput,
    Input,
    InputDurability,
    InputHeader,
    OperationInput,
    PeerInput,
    PeerMessage,
    PeerOrigin,
    PeerRequest,
    PeerResponseProgress,
    PeerResponseTerminal,
    PromptInput,
    ResponseProgressPhase,
    ResponseTerminalStatus,
    RuntimeTurnMetadata,
    System,
)
from meerkat_runtime.policy import DefaultPolicyTable, PolicySubject
from meerkat_runtime.runs import (
    BoundaryApplied,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunCompleted,
    RunFailed,
)

# ---------------------------------------------------------------- inputs


def header(
    *,
    key: str | None = None,
    scope: str | None = None,
    source: AnyInputOrigin | None = None,
    durability: InputDurability = InputDurability.DURABLE,
    input_id: InputId | None = None,
) -> InputHeader:
    built = InputHeader.new(
        source=source,
        durability=durability,
        idempotency_key=IdempotencyKey(key) if key is not None else None,
        supersession_key=SupersessionKey(scope) if scope is not None else None,
    )
    return built if input_id is None else msgspec.structs.replace(built, id=input_id)


def prompt(
    text: str = "hello",
    *,
    key: str | None = None,
    scope: str | None = None,
    steer: bool = False,
    input_id: InputId | None = None,
) -> PromptInput:
    metadata = RuntimeTurnMetadata(handling_mode=HandlingMode.STEER) if steer else None
    return PromptInput(
        header=header(key=key, scope=scope, input_id=input_id),
        text=text,
        turn_metadata=metadata,
    )


def convention(name: str) -> AnyPeerConvention | None:
    """``message``, ``request``, ``progress``, ``terminal`` or ``none``."""
    conventions: dict[str, AnyPeerConvention | None] = {
        "message": PeerMessage(),
        "request": PeerRequest(request_id="req-1", intent="ask"),
        "progress": PeerResponseProgress(
            request_id="req-1", phase=ResponseProgressPhase.IN_PROGRESS
        ),
        "terminal": PeerResponseTerminal(
            request_id="req-1", status=ResponseTerminalStatus.COMPLETED
        ),
        "none": None,
    }
    return conventions[name]


def peer(
    conv: str = "message",
    *,
    mode: HandlingMode | None = None,
    key: str | None = None,
    scope: str | None = None,
    body: str = "from a peer",
) -> PeerInput:
    return PeerInput(
        header=header(key=key, scope=scope, source=PeerOrigin(peer_id="peer-1")),
        body=body,
        convention=convention(conv),
        handling_mode=mode,
    )


def flow_step(step: str = "step-1", *, key: str | None = None) -> FlowStepInput:
    return FlowStepInput(header=header(key=key), step_id=step, instructions="do it")


def continuation(
    mode: HandlingMode = HandlingMode.STEER, *, key: str | None = None
) -> ContinuationInput:
    return ContinuationInput(
        header=header(key=key, source=System()), reason="resume", handling_mode=mode
    )


def detached_continuation() -> ContinuationInput:
    return ContinuationInput.detached_background_op_completed()


def operation(*, key: str | None = None) -> OperationInput:
    return OperationInput(
        header=header(key=key, source=System()),
        operation_id="op-1",
        event={"kind": "started"},
    )


def external_event(
    mode: HandlingMode = HandlingMode.QUEUE, *, scope: str | None = None
) -> ExternalEventInput:
    return ExternalEventInput(
        header=header(scope=scope),
        event_type="webhook",
        payload={"n": 1},
        handling_mode=mode,
    )


# ---------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class RoutingPolicyTable:
    """The default table, with some kinds' ``queue_mode`` replaced (decision 20)."""

    routes: Mapping[str, QueueMode]

    def resolve(self, input: PolicySubject, runtime_idle: bool) -> PolicyDecision:
        decision = DefaultPolicyTable().resolve(input, runtime_idle)
        mode = self.routes.get(input.kind_id())
        if mode is None:
            return decision
        return msgspec.structs.replace(decision, queue_mode=mode)


# ---------------------------------------------------------------- drivers


def new_driver(**routes: QueueMode) -> EphemeralRuntimeDriver:
    """A fresh driver; ``prompt=QueueMode.SUPERSEDE`` etc. route kinds."""
    table = RoutingPolicyTable(routes) if routes else None
    return EphemeralRuntimeDriver(LogicalRuntimeId("rt-test"), policy_table=table)


def accept_all(driver: EphemeralRuntimeDriver, *inputs: Input) -> list[InputId]:
    """Accept each input (sync path), asserting it was accepted."""
    for inp in inputs:
        assert driver.accept_now(inp).is_accepted(), inp
    return [inp.id() for inp in inputs]


def receipt(
    run_id: RunId, ids: Sequence[InputId], sequence: int = 0
) -> RunBoundaryReceipt:
    return RunBoundaryReceipt(
        run_id=run_id,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=list(ids),
        message_count=len(ids),
        sequence=sequence,
    )


def boundary(
    run_id: RunId, ids: Sequence[InputId], sequence: int = 0
) -> BoundaryApplied:
    return BoundaryApplied(run_id=run_id, receipt=receipt(run_id, ids, sequence))


def completed(run_id: RunId, ids: Sequence[InputId]) -> RunCompleted:
    return RunCompleted(run_id=run_id, consumed_input_ids=list(ids))


def failed(run_id: RunId) -> RunFailed:
    return RunFailed(run_id=run_id, error="boom", recoverable=True)


def stage_run(driver: EphemeralRuntimeDriver, ids: Sequence[InputId]) -> RunId:
    """Start a run and stage ``ids`` for it."""
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_batch(ids, run_id)
    return run_id


def run_to_completion(driver: EphemeralRuntimeDriver, ids: Sequence[InputId]) -> RunId:
    """start, stage, boundary applied, completed (sync path)."""
    run_id = stage_run(driver, ids)
    driver.run_event_now(boundary(run_id, ids))
    driver.run_event_now(completed(run_id, ids))
    return run_id


def fail_run(driver: EphemeralRuntimeDriver, ids: Sequence[InputId]) -> RunId:
    """start, stage, run failed (sync path)."""
    run_id = stage_run(driver, ids)
    driver.run_event_now(failed(run_id))
    return run_id


async def arun_to_completion(
    driver: EphemeralRuntimeDriver, ids: Sequence[InputId], sequence: int = 0
) -> RunId:
    """The same through the async ``on_run_event``."""
    run_id = stage_run(driver, ids)
    await driver.on_run_event(boundary(run_id, ids, sequence))
    await driver.on_run_event(completed(run_id, ids))
    return run_id


# ---------------------------------------------------------------- observing

Event = AnyInputLifecycleEvent | RuntimeStateChange


def drained(driver: EphemeralRuntimeDriver) -> list[Event]:
    """The buffered events, unwrapped (input lifecycle events by their data)."""
    out: list[Event] = []
    for envelope in driver.drain_events():
        assert envelope.runtime_id == driver.runtime_id
        event = envelope.event
        if isinstance(event, InputLifecycle):
            out.append(event.data)
        else:
            assert isinstance(event, RuntimeStateChange), event
            out.append(event)
    return out


def state_changes(events: Sequence[Event]) -> list[tuple[str, str]]:
    return [
        (e.from_state.value, e.to_state.value)
        for e in events
        if isinstance(e, RuntimeStateChange)
    ]


def everything(driver: EphemeralRuntimeDriver) -> tuple[DriverObservation, bytes]:
    """``observe()`` and a JSON dump of every input state, for equality checks."""
    observation = driver.observe()
    states = [driver.input_state(record.input_id) for record in observation.inputs]
    return observation, codec.encode([s.to_record() for s in states if s is not None])
