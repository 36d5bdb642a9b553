"""A process that runs one persistent session and is then SIGKILLed.

Run as ``python -m tests.sessions.child_runtime MODE DB BLOBS SESSION``.
It accepts three prompts (a warm-up, then "first" and "second"), attaches
an executor that completes the warm-up, and reports the ids (one JSON line
on stdout) at the moment chosen by MODE:

* ``hold``: the executor is holding the first prompt's run (in flight);
  the parent kills the process there.
* ``after-boundary``: the process kills itself right after the store
  committed the first prompt's boundary receipt, before the run completed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence

from meerkat_runtime import (
    FileBlobStore,
    InputState,
    LogicalRuntimeId,
    RunBoundaryReceipt,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.store.base import SessionDelta
from meerkat_runtime.testing.faults import FaultyStore

from .executors import Step, ToyExecutor
from .helpers import CHILD_OWNER, prompt


class DieAfterBoundary(FaultyStore):
    """Commits a boundary, then the process dies before anything else."""

    def __init__(self, inner: SqliteRuntimeStore, report: dict[str, str]) -> None:
        super().__init__(inner)
        self.report = report
        self.boundaries_before_death: int | None = None

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        await super().atomic_apply(
            runtime_id, session_delta, receipt, input_updates, session_store_key
        )
        if self.boundaries_before_death is None:
            return
        self.boundaries_before_death -= 1
        if self.boundaries_before_death == 0:
            self.report["run_id"] = str(receipt.run_id)
            print(json.dumps(self.report), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


async def main(mode: str, db: str, blobs: str, session: str) -> None:
    warm, first, second = prompt("warm-up"), prompt("in flight"), prompt("queued")
    report = {"warm": str(warm.id()), "first": str(first.id())}
    report["second"] = str(second.id())
    store = DieAfterBoundary(SqliteRuntimeStore(db), report)
    if mode == "after-boundary":
        store.boundaries_before_death = 2  # the warm-up's, then the first's
    adapter = RuntimeSessionAdapter.persistent(
        store, FileBlobStore(blobs), owner=CHILD_OWNER
    )
    sid = SessionId(session)
    await adapter.register_session(sid)
    for inp in (warm, first, second):
        await adapter.accept_input(sid, inp)
    executor = ToyExecutor([Step.OK, Step.HOLD] if mode == "hold" else [])
    await adapter.register_session_with_executor(sid, executor)
    if mode == "hold":
        await executor.held.wait()
        assert executor.batches() == [[warm.id()], [first.id()]]
        report["run_id"] = str(executor.calls[-1].run_id)
        print(json.dumps(report), flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
