"""The default policy table (docs/behaviour.md section 2, P-1 to P-5)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import pytest

from meerkat_runtime import (
    AcceptOutcome,
    ApplyMode,
    ConsumePoint,
    DefaultPolicyTable,
    DrainPolicy,
    EphemeralRuntimeDriver,
    HandlingMode,
    InMemoryRuntimeStore,
    LogicalRuntimeId,
    MemoryBlobStore,
    PersistentRuntimeDriver,
    PolicyDecision,
    PromptInput,
    QueueMode,
    RoutingDisposition,
    RuntimeSessionAdapter,
    SessionId,
    WakeMode,
)

Driver = EphemeralRuntimeDriver | PersistentRuntimeDriver

A, W, Q, C, D, R = (
    ApplyMode,
    WakeMode,
    QueueMode,
    ConsumePoint,
    DrainPolicy,
    RoutingDisposition,
)


@dataclass(frozen=True)
class Subject:
    """Stands in for an input: only its kind id and hint matter here."""

    kind: str
    hint: HandlingMode | None = None

    def kind_id(self) -> str:
        return self.kind

    def handling_mode_hint(self) -> HandlingMode | None:
        return self.hint


# P-5, written out independently of spec/policy.yaml:
# kind: (apply, wake when idle, queue, consume, drain, routing, transcript)
ROWS = {
    "prompt": (A.STAGE_RUN_START, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, True),
    "peer_message": (A.STAGE_RUN_START, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, True),
    "peer_request": (A.STAGE_RUN_START, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, True),
    "peer_response_progress": (A.STAGE_RUN_BOUNDARY, W.NONE, Q.COALESCE, C.ON_RUN_COMPLETE, D.STEER_BATCH, R.STEER, True),
    "peer_response_terminal": (A.STAGE_RUN_START, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, True),
    "flow_step": (A.STAGE_RUN_START, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, True),
    "external_event": (A.STAGE_RUN_START, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, True),
    "continuation": (A.STAGE_RUN_BOUNDARY, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.STEER_BATCH, R.STEER, False),
    "operation": (A.IGNORE, W.NONE, Q.PRIORITY, C.ON_ACCEPT, D.IGNORE, R.DROP, False),
    "anything_else": (A.STAGE_RUN_START, W.NONE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, True),
}  # fmt: skip


def expected(row: tuple[object, ...], idle: bool) -> PolicyDecision:
    apply, wake, queue, consume, drain, routing, transcript = row
    return PolicyDecision(
        apply_mode=apply,  # type: ignore[arg-type]
        wake_mode=wake if idle else W.NONE,  # type: ignore[arg-type]
        queue_mode=queue,  # type: ignore[arg-type]
        consume_point=consume,  # type: ignore[arg-type]
        drain_policy=drain,  # type: ignore[arg-type]
        routing_disposition=routing,  # type: ignore[arg-type]
        record_transcript=transcript,  # type: ignore[arg-type]
        emit_operator_content=transcript,  # type: ignore[arg-type]
        policy_version=1,
    )


@pytest.mark.parametrize("idle", [True, False])
@pytest.mark.parametrize("kind", sorted(ROWS))
def test_every_kind_row(kind: str, idle: bool) -> None:
    """P-5 (and P-2: emit_operator_content = record_transcript, version 1)."""
    decision = DefaultPolicyTable().resolve(Subject(kind), runtime_idle=idle)
    assert decision == expected(ROWS[kind], idle)
    assert DefaultPolicyTable.resolve_by_kind(kind, idle) == decision


@pytest.mark.parametrize("idle", [True, False])
@pytest.mark.parametrize("kind", sorted(set(ROWS) - {"peer_response_progress"}))
def test_hint_overrides_the_kind_row(kind: str, idle: bool) -> None:
    """P-4: a hint replaces the row; transcript is off only for continuation."""
    silent = kind == "continuation"
    queue = DefaultPolicyTable().resolve(Subject(kind, HandlingMode.QUEUE), idle)
    steer = DefaultPolicyTable().resolve(Subject(kind, HandlingMode.STEER), idle)
    assert queue == expected(
        (A.STAGE_RUN_START, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.QUEUE_NEXT_TURN, R.QUEUE, not silent),
        idle,
    )  # fmt: skip
    assert steer == expected(
        (A.STAGE_RUN_BOUNDARY, W.WAKE_IF_IDLE, Q.FIFO, C.ON_RUN_COMPLETE, D.STEER_BATCH, R.STEER, not silent),
        idle,
    )  # fmt: skip


def test_progress_peer_never_takes_the_override() -> None:
    """P-4: peer_response_progress keeps its coalescing steer row."""
    decision = DefaultPolicyTable().resolve(
        Subject("peer_response_progress", HandlingMode.QUEUE), runtime_idle=True
    )
    assert decision.queue_mode is Q.COALESCE
    assert decision.routing_disposition is R.STEER


def test_decision_json_uses_snake_case_and_upstream_defaults() -> None:
    """P-1: JSON enums are snake_case; missing fields take upstream defaults."""
    decision = DefaultPolicyTable.resolve_by_kind("prompt", True)
    encoded = msgspec.json.decode(msgspec.json.encode(decision))
    assert encoded["apply_mode"] == "stage_run_start"
    assert encoded["wake_mode"] == "wake_if_idle"
    sparse = b'{"apply_mode":"ignore","wake_mode":"none","queue_mode":"fifo","consume_point":"on_accept"}'
    decoded = msgspec.json.decode(sparse, type=PolicyDecision)
    assert decoded.drain_policy is D.QUEUE_NEXT_TURN
    assert decoded.routing_disposition is R.QUEUE
    assert decoded.record_transcript
    assert decoded.emit_operator_content
    assert decoded.policy_version == 1


# ======================================= the class itself is a table (API.md)


def test_resolve_is_callable_on_the_class() -> None:
    """API.md: ``DefaultPolicyTable.resolve(input, runtime_idle)`` works on the
    class, and gives what an instance gives."""
    subject = Subject("prompt", HandlingMode.STEER)
    for idle in (True, False):
        assert DefaultPolicyTable.resolve(subject, idle) == (
            DefaultPolicyTable().resolve(subject, idle)
        )
    assert DefaultPolicyTable.resolve(Subject("operation"), True).apply_mode is (
        A.IGNORE
    )


def _accept_with_the_class(make: Callable[[], Driver]) -> PolicyDecision:
    async def run() -> PolicyDecision:
        driver = make()
        await driver.recover()
        outcome = await driver.accept_input(PromptInput.new("hi"))
        assert isinstance(outcome, AcceptOutcome.Accepted)
        return outcome.policy

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["ephemeral", "persistent"])
def test_drivers_take_the_class_as_their_table(kind: str) -> None:
    """API.md: ``policy_table=DefaultPolicyTable`` (the class, not an instance)."""
    rid = LogicalRuntimeId("rt")

    def make() -> Driver:
        if kind == "ephemeral":
            return EphemeralRuntimeDriver(rid, policy_table=DefaultPolicyTable)
        return PersistentRuntimeDriver(
            rid,
            InMemoryRuntimeStore(),
            MemoryBlobStore(),
            policy_table=DefaultPolicyTable,
        )

    policy = _accept_with_the_class(make)
    assert policy == DefaultPolicyTable.resolve(Subject("prompt"), True)


@pytest.mark.parametrize("persistent", [False, True])
def test_adapter_takes_the_class_as_its_table(persistent: bool) -> None:
    async def run() -> None:
        adapter = (
            RuntimeSessionAdapter.persistent(
                InMemoryRuntimeStore(),
                MemoryBlobStore(),
                policy_table=DefaultPolicyTable,
            )
            if persistent
            else RuntimeSessionAdapter.ephemeral(policy_table=DefaultPolicyTable)
        )
        session = SessionId.new()
        await adapter.register_session(session)
        outcome = await adapter.accept_input(session, PromptInput.new("hi"))
        assert isinstance(outcome, AcceptOutcome.Accepted)
        assert outcome.policy == DefaultPolicyTable.resolve(Subject("prompt"), True)
        await adapter.close()

    asyncio.run(run())
