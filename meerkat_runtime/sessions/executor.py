"""What an executor (the thing that calls the model) sees and answers (R-3, R-4).

The runtime loop hands an executor one ``RunPrimitive`` per run; the executor
applies it and answers ``CoreApplyOutput`` with the boundary receipt, or
raises (``CoreExecutorError.ApplyFailed`` or anything else) to fail the run.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import msgspec

from meerkat_runtime.codec import Value
from meerkat_runtime.errors import MeerkatError
from meerkat_runtime.ids import InputId, RunId
from meerkat_runtime.inputs import AnyContentBlock, RuntimeTurnMetadata
from meerkat_runtime.runs import RunApplyBoundary, RunBoundaryReceipt


class CoreExecutorError(MeerkatError):
    ApplyFailed: ClassVar[type[ApplyFailedError]]
    ControlFailed: ClassVar[type[ControlFailedError]]

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ApplyFailedError(CoreExecutorError):
    def __str__(self) -> str:
        return f"Apply failed: {self.reason}"


class ControlFailedError(CoreExecutorError):
    def __str__(self) -> str:
        return f"Control failed: {self.reason}"


CoreExecutorError.ApplyFailed = ApplyFailedError
CoreExecutorError.ControlFailed = ControlFailedError


class RunControlCommand(
    Value, frozen=True, gc=False, kw_only=True, tag_field="command"
):
    CancelCurrentRun: ClassVar[type[CancelCurrentRun]]
    StopRuntimeExecutor: ClassVar[type[StopRuntimeExecutor]]


class CancelCurrentRun(
    RunControlCommand, frozen=True, gc=False, kw_only=True, tag="cancel_current_run"
):
    reason: str = ""


class StopRuntimeExecutor(
    RunControlCommand, frozen=True, gc=False, kw_only=True, tag="stop_runtime_executor"
):
    reason: str = ""


RunControlCommand.CancelCurrentRun = CancelCurrentRun
RunControlCommand.StopRuntimeExecutor = StopRuntimeExecutor
AnyRunControlCommand = CancelCurrentRun | StopRuntimeExecutor


class Append(Value, frozen=True, gc=False, kw_only=True):
    """One message the run appends to the conversation (role ``user`` here)."""

    role: str
    text: str | None = None
    blocks: list[AnyContentBlock] | None = None


class RunPrimitive(
    Value, frozen=True, gc=False, kw_only=True, tag_field="primitive_type"
):
    StagedInput: ClassVar[type[StagedInput]]
    ImmediateAppend: ClassVar[type[ImmediateAppend]]
    ImmediateContextAppend: ClassVar[type[ImmediateContextAppend]]

    @property
    def contributing_input_ids(self) -> list[InputId]:
        return []


class StagedInput(
    RunPrimitive, frozen=True, gc=False, kw_only=True, tag="staged_input"
):
    boundary: RunApplyBoundary
    appends: list[Append] = msgspec.field(default_factory=list)
    context_appends: list[Append] = msgspec.field(default_factory=list)
    contributing_input_ids: list[InputId] = msgspec.field(default_factory=list)
    turn_metadata: RuntimeTurnMetadata | None = None


class ImmediateAppend(
    RunPrimitive, frozen=True, gc=False, kw_only=True, tag="immediate_append"
):
    append: Append


class ImmediateContextAppend(
    RunPrimitive, frozen=True, gc=False, kw_only=True, tag="immediate_context_append"
):
    append: Append


RunPrimitive.StagedInput = StagedInput
RunPrimitive.ImmediateAppend = ImmediateAppend
RunPrimitive.ImmediateContextAppend = ImmediateContextAppend


class RunResult(Value, frozen=True, gc=False, kw_only=True):
    """What a run produced, as the caller's waiter receives it."""

    text: str
    data: Any = None


class CallbackPending(Value, frozen=True, gc=False, kw_only=True):
    tool_name: str
    args: Any = None


class CoreApplyOutput(Value, frozen=True, gc=False, kw_only=True):
    receipt: RunBoundaryReceipt
    session_snapshot: bytes | None = None
    run_result: RunResult | None = None
    terminal: RunResult | CallbackPending | None = None


class CoreExecutor(Protocol):
    async def apply(
        self, run_id: RunId, primitive: RunPrimitive
    ) -> CoreApplyOutput: ...

    async def control(self, command: RunControlCommand) -> None: ...


def receipt_for(
    run_id: RunId, primitive: RunPrimitive, sequence: int = 0
) -> RunBoundaryReceipt:
    """The receipt an executor returns when it applied all of ``primitive``."""
    ids = list(primitive.contributing_input_ids)
    boundary = (
        primitive.boundary
        if isinstance(primitive, StagedInput)
        else RunApplyBoundary.IMMEDIATE
    )
    return RunBoundaryReceipt(
        run_id=run_id,
        boundary=boundary,
        contributing_input_ids=ids,
        message_count=len(ids),
        sequence=sequence,
    )
