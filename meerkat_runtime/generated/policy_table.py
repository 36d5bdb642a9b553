# generated from spec/policy.yaml — edit the spec, not this file.
# Regenerate with `make generate` (python -m codegen generate).
"""The default policy table (docs/behaviour.md section 2) as precomputed data.

``KIND_ROWS[kind]`` is ``(decision when idle, decision when running)``;
``OVERRIDE_ROWS[(mode, silent)]`` the same for inputs whose handling-mode hint
takes precedence over their kind (P-4). ``meerkat_runtime.policy`` resolves
inputs against these tables.
"""

from __future__ import annotations

import enum

from meerkat_runtime.codec import Value
from meerkat_runtime.generated.spec_types import HandlingMode

POLICY_VERSION = 1


class ApplyMode(enum.Enum):
    STAGE_RUN_START = "stage_run_start"
    STAGE_RUN_BOUNDARY = "stage_run_boundary"
    INJECT_NOW = "inject_now"
    IGNORE = "ignore"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class WakeMode(enum.Enum):
    WAKE_IF_IDLE = "wake_if_idle"
    NONE = "none"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class QueueMode(enum.Enum):
    NONE = "none"
    FIFO = "fifo"
    COALESCE = "coalesce"
    SUPERSEDE = "supersede"
    PRIORITY = "priority"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class ConsumePoint(enum.Enum):
    ON_ACCEPT = "on_accept"
    ON_APPLY = "on_apply"
    ON_RUN_START = "on_run_start"
    ON_RUN_COMPLETE = "on_run_complete"
    EXPLICIT_ACK = "explicit_ack"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class DrainPolicy(enum.Enum):
    QUEUE_NEXT_TURN = "queue_next_turn"
    STEER_BATCH = "steer_batch"
    IMMEDIATE = "immediate"
    IGNORE = "ignore"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class RoutingDisposition(enum.Enum):
    QUEUE = "queue"
    STEER = "steer"
    IMMEDIATE = "immediate"
    DROP = "drop"

    def __repr__(self) -> str:
        # Valid Python, so a shrunk test failure pastes into a regression test.
        return f"{type(self).__name__}.{self.name}"


class PolicyDecision(Value, frozen=True, gc=False, kw_only=True, omit_defaults=False):
    """How the runtime treats one accepted input (P-1).

    The defaults are the ones upstream applies when a stored decision lacks
    the field.
    """

    apply_mode: ApplyMode
    wake_mode: WakeMode
    queue_mode: QueueMode
    consume_point: ConsumePoint
    drain_policy: DrainPolicy = DrainPolicy.QUEUE_NEXT_TURN
    routing_disposition: RoutingDisposition = RoutingDisposition.QUEUE
    record_transcript: bool = True
    emit_operator_content: bool = True
    policy_version: int = POLICY_VERSION


KIND_ROWS: dict[str, tuple[PolicyDecision, PolicyDecision]] = {
    "prompt": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    "peer_message": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    "peer_request": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    "peer_response_progress": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.COALESCE,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.COALESCE,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    "peer_response_terminal": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    "flow_step": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    "external_event": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    "continuation": (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
    ),
    "operation": (
        PolicyDecision(
            apply_mode=ApplyMode.IGNORE,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.PRIORITY,
            consume_point=ConsumePoint.ON_ACCEPT,
            drain_policy=DrainPolicy.IGNORE,
            routing_disposition=RoutingDisposition.DROP,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.IGNORE,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.PRIORITY,
            consume_point=ConsumePoint.ON_ACCEPT,
            drain_policy=DrainPolicy.IGNORE,
            routing_disposition=RoutingDisposition.DROP,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
    ),
}

FALLBACK_ROW: tuple[PolicyDecision, PolicyDecision] = (
    PolicyDecision(
        apply_mode=ApplyMode.STAGE_RUN_START,
        wake_mode=WakeMode.NONE,
        queue_mode=QueueMode.FIFO,
        consume_point=ConsumePoint.ON_RUN_COMPLETE,
        drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
        routing_disposition=RoutingDisposition.QUEUE,
        record_transcript=True,
        emit_operator_content=True,
        policy_version=1,
    ),
    PolicyDecision(
        apply_mode=ApplyMode.STAGE_RUN_START,
        wake_mode=WakeMode.NONE,
        queue_mode=QueueMode.FIFO,
        consume_point=ConsumePoint.ON_RUN_COMPLETE,
        drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
        routing_disposition=RoutingDisposition.QUEUE,
        record_transcript=True,
        emit_operator_content=True,
        policy_version=1,
    ),
)

OVERRIDE_EXEMPT_KINDS: frozenset[str] = frozenset(
    {
        "peer_response_progress",
    }
)
"""Kinds whose handling-mode hint never overrides their row (P-4)."""

SILENT_KINDS: frozenset[str] = frozenset(
    {
        "continuation",
    }
)
"""Kinds for which an override decision does not record the transcript (P-4)."""

OVERRIDE_ROWS: dict[
    tuple[HandlingMode, bool], tuple[PolicyDecision, PolicyDecision]
] = {
    (HandlingMode.QUEUE, False): (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    (HandlingMode.QUEUE, True): (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_START,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.QUEUE_NEXT_TURN,
            routing_disposition=RoutingDisposition.QUEUE,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
    ),
    (HandlingMode.STEER, False): (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=True,
            emit_operator_content=True,
            policy_version=1,
        ),
    ),
    (HandlingMode.STEER, True): (
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.WAKE_IF_IDLE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
        PolicyDecision(
            apply_mode=ApplyMode.STAGE_RUN_BOUNDARY,
            wake_mode=WakeMode.NONE,
            queue_mode=QueueMode.FIFO,
            consume_point=ConsumePoint.ON_RUN_COMPLETE,
            drain_policy=DrainPolicy.STEER_BATCH,
            routing_disposition=RoutingDisposition.STEER,
            record_transcript=False,
            emit_operator_content=False,
            policy_version=1,
        ),
    ),
}
