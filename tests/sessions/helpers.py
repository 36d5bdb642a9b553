"""Inputs, policy tables and waiting helpers shared by the session tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from meerkat_runtime import (
    CompletionHandle,
    ContinuationInput,
    DefaultPolicyTable,
    ExternalEventInput,
    FlowStepInput,
    HandlingMode,
    IdempotencyKey,
    InMemoryRuntimeStore,
    InputDurability,
    InputHeader,
    InputLifecycleState,
    InputOrigin,
    InputState,
    LogicalRuntimeId,
    OperationInput,
    PeerConvention,
    PeerInput,
    PolicyDecision,
    PromptInput,
    QueueMode,
    ResponseProgressPhase,
    RuntimeSessionAdapter,
    RuntimeStore,
    RuntimeTurnMetadata,
    SessionId,
    SupersessionKey,
)
from meerkat_runtime.inputs import AnyContentBlock
from meerkat_runtime.policy import PolicySubject
from meerkat_runtime.sessions.completion import AnyCompletionOutcome

# The owner id of the worker processes the crash tests kill, and of the
# process that then recovers their sessions (a restart of the same worker).
CHILD_OWNER = "test-worker"
TIMEOUT = 1.5  # every await on the loop is bounded: a hang fails, not blocks


def prompt(
    text: str = "hello",
    *,
    key: str | None = None,
    blocks: list[AnyContentBlock] | None = None,
    turn_metadata: RuntimeTurnMetadata | None = None,
) -> PromptInput:
    header = InputHeader.new(idempotency_key=IdempotencyKey(key) if key else None)
    return PromptInput(
        header=header, text=text, blocks=blocks, turn_metadata=turn_metadata
    )


def event(
    body: str = "ping",
    *,
    source: str = "hook",
    supersession: str | None = None,
    mode: HandlingMode = HandlingMode.QUEUE,
    render_metadata: Any = None,
) -> ExternalEventInput:
    header = InputHeader.new(
        source=InputOrigin.External(source_name=source),
        supersession_key=SupersessionKey(supersession) if supersession else None,
    )
    return ExternalEventInput(
        header=header,
        event_type="webhook",
        payload={"body": body},
        handling_mode=mode,
        render_metadata=render_metadata,
    )


def flow_step(
    instructions: str = "step", turn_metadata: RuntimeTurnMetadata | None = None
) -> FlowStepInput:
    header = InputHeader.new(source=InputOrigin.Flow(flow_id="f", step_index=0))
    return FlowStepInput(
        header=header,
        step_id="s1",
        instructions=instructions,
        turn_metadata=turn_metadata,
    )


def peer_message(
    body: str = "hi",
    *,
    peer_id: str = "peer-a",
    blocks: list[AnyContentBlock] | None = None,
    mode: HandlingMode | None = None,
) -> PeerInput:
    header = InputHeader.new(source=InputOrigin.Peer(peer_id=peer_id))
    return PeerInput(
        header=header,
        body=body,
        convention=PeerConvention.Message(),
        blocks=blocks,
        handling_mode=mode,
    )


def progress_peer(request_id: str = "r1") -> PeerInput:
    header = InputHeader.new(source=InputOrigin.Peer(peer_id="peer-b"))
    return PeerInput(
        header=header,
        body="working",
        convention=PeerConvention.ResponseProgress(
            request_id=request_id, phase=ResponseProgressPhase.IN_PROGRESS
        ),
    )


def continuation(
    reason: str = "resume", mode: HandlingMode = HandlingMode.QUEUE
) -> ContinuationInput:
    header = InputHeader.new(
        source=InputOrigin.System(), durability=InputDurability.DERIVED
    )
    return ContinuationInput(header=header, reason=reason, handling_mode=mode)


def operation() -> OperationInput:
    header = InputHeader.new(source=InputOrigin.System())
    return OperationInput(header=header, operation_id="op-1", event={"k": "started"})


def derived_prompt() -> PromptInput:
    """A derived prompt from System: rejected (durability violation, Z-6)."""
    header = InputHeader.new(
        source=InputOrigin.System(), durability=InputDurability.DERIVED
    )
    return PromptInput(header=header, text="not allowed")


class RoutingPolicyTable:
    """Decision 20: the default table, with external events sent to ``mode``."""

    def __init__(self, mode: QueueMode) -> None:
        self.mode = mode
        self.inner = DefaultPolicyTable()

    def resolve(self, input: PolicySubject, runtime_idle: bool) -> PolicyDecision:
        decision = self.inner.resolve(input, runtime_idle)
        if input.kind_id() == "external_event":
            return msgspec.structs.replace(decision, queue_mode=self.mode)
        return decision


async def outcome_of(
    handle: CompletionHandle | None, timeout: float = TIMEOUT
) -> AnyCompletionOutcome:
    assert handle is not None, "expected a completion handle"
    return await asyncio.wait_for(handle.wait(), timeout)


async def eventually(
    predicate: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT
) -> None:
    """Poll ``predicate`` until true (for states no waiter reports)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def state_of(
    adapter: RuntimeSessionAdapter, sid: SessionId, input: Any
) -> InputLifecycleState:
    state = await adapter.input_state(sid, input.id())
    assert state is not None
    return state.current_state()


async def drained(adapter: RuntimeSessionAdapter, sid: SessionId) -> None:
    """Wait until the session has no unfinished input left and its loop, if
    any, waits for work: memory runs ahead of the store (decision 14), so
    only then is the last run's end written too (PD-70 writes it with the
    boundary, after the inputs are consumed in memory)."""

    async def idle() -> bool:
        if await adapter.list_active_inputs(sid):
            return False
        loop = adapter.sessions[sid].loop
        return loop is None or not loop.alive() or loop.waiting.is_set()

    await eventually(idle)


async def held(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), TIMEOUT)


def turn_over(adapter: RuntimeSessionAdapter, sid: SessionId) -> asyncio.Event:
    """Set once the session's loop has finished its turn and waits for work
    (call it while the loop is busy: it is set while the loop is idle)."""
    loop = adapter.sessions[sid].loop
    assert loop is not None, "the session has no loop"
    return loop.waiting


class GatedPersist(RuntimeStore):
    """A store whose next ``persist_input_state`` waits for ``gate`` before
    any of the write runs (holding the session lock meanwhile, as a slow
    disk would). Mixed in before a concrete store class."""

    gate: asyncio.Event | None = None
    _entered: asyncio.Event | None = None

    @property
    def entered(self) -> asyncio.Event:
        if self._entered is None:
            self._entered = asyncio.Event()
        return self._entered

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            self.entered.set()
            await gate.wait()
        await super().persist_input_state(runtime_id, state)  # type: ignore[safe-super]


class GatedStore(GatedPersist, InMemoryRuntimeStore):
    """In memory, gated (``GatedPersist``)."""
