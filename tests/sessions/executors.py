"""Toy executors for the session-layer tests (API.md "Sessions, executors").

``ToyExecutor`` follows a script, one ``Step`` per ``apply`` call (then its
default step), and records every call and control command in order, so a
test can assert what the runtime loop handed it and when. ``Step.HOLD``
keeps a run in flight until the test sets ``release``: the deterministic
way to observe the runtime while ``apply`` is running, without sleeps.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from meerkat_runtime import (
    CallbackPending,
    CoreApplyOutput,
    CoreExecutorError,
    InputId,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RunResult,
    receipt_for,
)
from meerkat_runtime.sessions.executor import StagedInput


class Step(enum.Enum):
    OK = "ok"  # apply everything, answer the receipt
    FAIL = "fail"  # raise CoreExecutorError.ApplyFailed
    CRASH = "crash"  # raise a plain RuntimeError (not an executor error)
    CANCELLED = "cancelled"  # raise CancelledError although nobody cancelled
    HANG = "hang"  # never return (until cancelled)
    HOLD = "hold"  # signal ``held``, wait for ``release``, then OK


@dataclass(frozen=True)
class Call:
    run_id: RunId
    primitive: StagedInput

    @property
    def ids(self) -> list[InputId]:
        return list(self.primitive.contributing_input_ids)


class ToyExecutor:
    """A scripted executor; see the module docstring."""

    def __init__(
        self,
        script: Sequence[Step] = (),
        *,
        default: Step = Step.OK,
        result: RunResult | None = None,
        terminal: RunResult | CallbackPending | None = None,
        block_controls: bool = False,
    ) -> None:
        self.script = list(script)
        self.default = default
        self.result = result
        self.terminal = terminal
        self.calls: list[Call] = []
        self.controls: list[RunControlCommand] = []
        self.log: list[str] = []  # "apply:<first id>" / "control:<tag>", in order
        self.cancelled = 0  # apply calls cancelled (timeout, loop exit)
        self.started: list[float] = []  # event-loop time of each apply call
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.block_controls = block_controls
        self.control_entered = asyncio.Event()
        self.control_release = asyncio.Event()

    def _next_step(self) -> Step:
        return self.script.pop(0) if self.script else self.default

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        assert isinstance(primitive, StagedInput), primitive
        call = Call(run_id, primitive)
        self.calls.append(call)
        self.started.append(asyncio.get_running_loop().time())
        self.log.append(f"apply:{call.ids[0]}")
        step = self._next_step()
        try:
            await self._perform(step)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return CoreApplyOutput(
            receipt=receipt_for(run_id, primitive),
            run_result=self.result,
            terminal=self.terminal,
        )

    async def _perform(self, step: Step) -> None:
        if step is Step.FAIL:
            raise CoreExecutorError.ApplyFailed("toy failure")
        if step is Step.CRASH:
            raise RuntimeError("toy crash")
        if step is Step.CANCELLED:
            raise asyncio.CancelledError()
        if step is Step.HANG:
            await asyncio.Event().wait()
        if step is Step.HOLD:
            self.held.set()
            await self.release.wait()
            self.release.clear()
            self.held.clear()

    async def control(self, command: RunControlCommand) -> None:
        self.controls.append(command)
        self.log.append(f"control:{type(command).__struct_config__.tag}")
        if self.block_controls:
            self.block_controls = False  # only the first command blocks
            self.control_entered.set()
            await self.control_release.wait()

    def applied_ids(self) -> list[InputId]:
        """Every input id handed to ``apply``, in call order."""
        return [i for call in self.calls for i in call.ids]

    def batches(self) -> list[list[InputId]]:
        return [call.ids for call in self.calls]
