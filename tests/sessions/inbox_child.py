"""The processes of the cross-process inbox test: ``python -m
tests.sessions.inbox_child owner TARGET`` (TARGET as for
``tests.stateful.kill_child``: a SQLite path or ``postgres:<schema>:<dsn>``) owns the session "fleet" with an
executor (prints ``ready``, holds until its stdin closes); ``python -m
tests.sessions.inbox_child submit TARGET N`` submits N prompts with keys
``k0``, ``k1`` and so on and prints one line per input: the outcome's type and
what its completion handle answered (``-`` when there was none)."""

from __future__ import annotations

import asyncio
import sys

from meerkat_runtime import (
    CoreApplyOutput,
    IdempotencyKey,
    InputHeader,
    PromptInput,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RuntimeSessionAdapter,
    RuntimeSubmitter,
    SessionId,
    receipt_for,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.sessions.loop import StoreBackoff
from tests.stateful.kill_child import open_target

SESSION = SessionId("fleet")


class Echo:
    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        return CoreApplyOutput(receipt=receipt_for(run_id, primitive))

    async def control(self, command: RunControlCommand) -> None:
        pass


async def own(db: str) -> None:
    store = open_target(db)
    adapter = RuntimeSessionAdapter.persistent(
        store, MemoryBlobStore(), owner="owner-process", inbox_poll=0.01
    )
    await adapter.register_session_with_executor(SESSION, Echo())
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # hold until the parent says
    await adapter.close()
    await store.close()


async def submit(db: str, count: int) -> None:
    store = open_target(db)
    submitter = RuntimeSubmitter(store, poll=StoreBackoff(initial=0.005, maximum=0.05))
    pending = []
    for i in range(count):
        header = InputHeader.new(idempotency_key=IdempotencyKey(f"k{i}"))
        pending.append(
            await submitter.submit_with_completion(
                SESSION, PromptInput(header=header, text=f"m{i}")
            )
        )
    for outcome, handle in pending:
        answer = "-" if handle is None else type(await handle.wait()).__name__
        print(f"{type(outcome).__name__} {answer}", flush=True)
    await submitter.close()
    await store.close()


if __name__ == "__main__":
    if sys.argv[1] == "owner":
        asyncio.run(own(sys.argv[2]))
    else:
        asyncio.run(submit(sys.argv[2], int(sys.argv[3])))
