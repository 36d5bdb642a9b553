"""Quickstart: one session, a crash right after the acknowledgement, recovery.

Run it twice from the same directory (it keeps its files in
``quickstart-data/``, or the directory given as its argument):

1. The first run accepts a prompt, which is on disk once ``accept_input``
   returns, and then the process dies (``os._exit``: no close, no clean-up)
   before any model ran it.
2. The second run recovers the session: the prompt is still pending, the
   model runs it, and sending the same prompt again (same idempotency key)
   is recognised as a duplicate, also across the restart.

A third run finds nothing left to recover and the prompt already answered.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from meerkat_runtime import (
    CoreApplyOutput,
    FileBlobStore,
    IdempotencyKey,
    InputHeader,
    PromptInput,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RunResult,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
    receipt_for,
)
from meerkat_runtime.outcomes import Deduplicated

# Fixed, so that every run of this script talks to the same session.
SESSION = SessionId("quickstart-session")


class Model:
    """Your executor: called once per run with the inputs to apply."""

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        assert isinstance(primitive, RunPrimitive.StagedInput)  # what runs carry
        text = " / ".join(a.text or "" for a in primitive.appends)
        print(f"model: running {text!r}")
        return CoreApplyOutput(
            receipt=receipt_for(run_id, primitive),
            run_result=RunResult(text=f"echo: {text}"),
        )

    async def control(self, command: RunControlCommand) -> None:
        pass


def greeting() -> PromptInput:
    # The idempotency key makes a resend a duplicate instead of a second input.
    header = InputHeader.new(idempotency_key=IdempotencyKey("greeting"))
    return PromptInput(header=header, text="hello, agent")


async def main(data: Path) -> None:
    data.mkdir(exist_ok=True)
    store = SqliteRuntimeStore(data / "agents.db")
    # A fixed owner id: the next run is this worker restarted, and takes the
    # session back at once (another owner would wait for the lease to expire).
    adapter = RuntimeSessionAdapter.persistent(
        store, FileBlobStore(data / "blobs"), owner="quickstart-worker"
    )
    await adapter.register_session(SESSION)  # recovers from the store first
    report = adapter.recovery_report(SESSION)
    assert report is not None
    print(f"recovered: {report.inputs_recovered} unfinished input(s)")

    outcome = await adapter.accept_input(SESSION, greeting())
    if outcome.is_accepted():
        print("accepted: the prompt is on disk; now the process crashes")
        os._exit(1)  # a crash: no close, no clean-up, the model never ran
    assert isinstance(outcome, Deduplicated)
    print(f"deduplicated: the prompt is already input {outcome.existing_id}")

    handle = await adapter.completion_for(SESSION, outcome.existing_id)
    await adapter.register_session_with_executor(SESSION, Model())
    if handle is None:
        print("done: the prompt was answered by an earlier run")
    else:
        print(f"completed: {await handle.wait()}")
    await adapter.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-data")))
