"""Persistent sessions: the loop over SQLite + a file blob store.

Rules: D-2 (staging is not persisted), D-6 (boundary commit), D-11
(recovery: applied with receipt -> consumed, else run again), decision 13
(the executor always gets images inline; the store holds blob refs),
decision 14 (a store failure restores memory), decision 9 (a waiter stays
pending while its input is queued again), W-6 (boundary commit failure).
A "killed" process is a real child process SIGKILLed mid-run
(``child_runtime.py``); the parent then opens the same files and recovers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from meerkat_runtime import (
    ContentBlock,
    CoreApplyOutput,
    FileBlobStore,
    ImageData,
    InputId,
    InputLifecycleState,
    InputState,
    LogicalRuntimeId,
    RunId,
    RunPrimitive,
    RunResult,
    RuntimeSessionAdapter,
    RuntimeState,
    RuntimeStore,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.inputs import BlobImage, ImageBlock, InlineImage
from meerkat_runtime.sessions.adapter import CLOSED_REASON, StoreBackoff
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    Completed,
    RuntimeTerminated,
)
from meerkat_runtime.sessions.executor import StopRuntimeExecutor
from meerkat_runtime.sessions.loop import (
    COMPLETION_NOT_RECORDED,
    FAILURE_NOT_RECORDED,
)
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.testing.faults import Fault, FaultyStore

from .executors import Step, ToyExecutor
from .helpers import (
    CHILD_OWNER,
    TIMEOUT,
    drained,
    eventually,
    held,
    outcome_of,
    prompt,
)

ROOT = Path(__file__).resolve().parents[2]
RESULT = RunResult(text="ok")
PNG = "iVBORw0KGgo="
FAST = StoreBackoff(initial=0.001, maximum=0.01)


class Files:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "runtime.db"
        self.blobs = tmp_path / "blobs"

    def adapter(self, store: RuntimeStore) -> RuntimeSessionAdapter:
        # The child's owner id: a restart takes its runtimes back at once.
        return RuntimeSessionAdapter.persistent(
            store,
            FileBlobStore(self.blobs),
            retry_delay=0.001,
            store_backoff=FAST,
            owner=CHILD_OWNER,
        )


async def receipt_counts(
    store: RuntimeStore, rid: LogicalRuntimeId
) -> Counter[InputId]:
    """How many stored receipts name each input (applied at most once)."""
    receipts = await store.load_boundary_receipts(rid)
    return Counter(i for r in receipts for i in r.contributing_input_ids)


async def stored_phase(
    store: RuntimeStore, rid: LogicalRuntimeId, input_id: InputId
) -> InputLifecycleState:
    state = await store.load_input_state(rid, input_id)
    assert state is not None
    return state.current_state()


# ---------------------------------------------------------------- process kill


def run_child_until_report(mode: str, files: Files, sid: SessionId) -> dict[str, str]:
    """Start the child, read its one-line report, make sure it is dead."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sessions.child_runtime",
            mode,
            str(files.db),
            str(files.blobs),
            str(sid),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if mode == "hold":
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        stderr = child.stderr.read() if child.stderr else ""
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL, stderr
    assert line, f"child reported nothing: {stderr}"
    report: dict[str, str] = json.loads(line)
    return report


def test_killed_mid_run_input_runs_again_exactly_once(tmp_path: Path) -> None:
    """D-2 / D-11: a process SIGKILLed while the executor holds a run. After
    restart the in-flight input (staged, never committed) runs again exactly
    once, the queued one once, the finished warm-up not at all, and each
    input's receipt is written exactly once."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))
    report = run_child_until_report("hold", files, sid)
    warm, first, second = (InputId(report[k]) for k in ("warm", "first", "second"))
    crashed_run = RunId(report["run_id"])

    async def main() -> None:
        store = SqliteRuntimeStore(files.db)
        adapter = files.adapter(store)
        try:
            assert await stored_phase(store, rid, first) is InputLifecycleState.QUEUED
            assert await receipt_counts(store, rid) == Counter({warm: 1})
            executor = ToyExecutor()
            await adapter.register_session_with_executor(sid, executor)
            await drained(adapter, sid)
            assert executor.batches() == [[first], [second]]
            assert crashed_run not in {c.run_id for c in executor.calls}
            assert await receipt_counts(store, rid) == Counter(
                {warm: 1, first: 1, second: 1}
            )
            state = await adapter.input_state(sid, first)
            assert state is not None
            assert state.current_state() is InputLifecycleState.CONSUMED
            assert state.recovery_count == 1
            for input_id in (warm, first, second):
                phase = await stored_phase(store, rid, input_id)
                assert phase is InputLifecycleState.CONSUMED
            assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_killed_after_boundary_commit_is_not_run_again(tmp_path: Path) -> None:
    """D-6 / D-11 step 1: the process dies right after the boundary receipt
    was committed, before the run completed: recovery consumes the input by
    its receipt; it is never applied again; the queued input runs once."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))
    report = run_child_until_report("after-boundary", files, sid)
    warm, first, second = (InputId(report[k]) for k in ("warm", "first", "second"))

    async def main() -> None:
        store = SqliteRuntimeStore(files.db)
        adapter = files.adapter(store)
        try:
            phase = await stored_phase(store, rid, first)
            assert phase is InputLifecycleState.APPLIED_PENDING_CONSUMPTION
            executor = ToyExecutor()
            await adapter.register_session_with_executor(sid, executor)
            await drained(adapter, sid)
            assert executor.batches() == [[second]]
            assert await receipt_counts(store, rid) == Counter(
                {warm: 1, first: 1, second: 1}
            )
            assert await stored_phase(store, rid, first) is InputLifecycleState.CONSUMED
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_cancelled_loops_then_new_adapter_runs_input_once(tmp_path: Path) -> None:
    """In-process variant of the kill: every loop task is cancelled while the
    executor holds a run; a new adapter on the same file runs the input once
    (the cancelled run left no receipt) and writes one receipt."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))

    async def main() -> None:
        store = SqliteRuntimeStore(files.db)
        adapter = files.adapter(store)
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        await held(executor.held)
        await adapter.close()
        assert await outcome_of(handle) == RuntimeTerminated(reason=CLOSED_REASON)
        await store.close()

        store = SqliteRuntimeStore(files.db)
        again = files.adapter(store)
        try:
            assert await stored_phase(store, rid, p.id()) is InputLifecycleState.QUEUED
            second = ToyExecutor(result=RESULT)
            await again.register_session_with_executor(sid, second)
            await drained(again, sid)
            assert second.applied_ids() == [p.id()]
            assert await receipt_counts(store, rid) == Counter({p.id(): 1})
        finally:
            await again.close()
            await store.close()

    asyncio.run(main())


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "restart"])
def test_executor_receives_inline_images(tmp_path: Path, restart: bool) -> None:
    """Decision 13 / T-20: the store holds a blob reference, never base64;
    the executor receives the image inline, also after a restart."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))
    text = ContentBlock.Text(text="what is this?")
    image = ContentBlock.Image(media_type="image/png", data=ImageData.Inline(data=PNG))
    p = prompt("what is this?", blocks=[text, image])

    async def main() -> None:
        store = SqliteRuntimeStore(files.db)
        adapter = files.adapter(store)
        try:
            await adapter.register_session(sid)
            await adapter.accept_input(sid, p)
            stored = await store.load_input_state(rid, p.id())
            assert stored is not None
            payload = stored.persisted_input
            assert payload is not None
            blocks = getattr(payload, "blocks", None)
            assert blocks is not None
            assert isinstance(blocks[1], ImageBlock)
            assert isinstance(blocks[1].data, BlobImage)
            if restart:
                await adapter.close()
                await store.close()
                store = SqliteRuntimeStore(files.db)
                adapter = files.adapter(store)
            executor = ToyExecutor()
            await adapter.register_session_with_executor(sid, executor)
            await drained(adapter, sid)
            [call] = executor.calls
            [append] = call.primitive.appends
            assert append.blocks == [text, image]
            assert isinstance(image.data, InlineImage)
            assert await receipt_counts(store, rid) == Counter({p.id(): 1})
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


# ---------------------------------------------------------------- boundary commit failure


def test_boundary_commit_failure_keeps_input_and_waiter(tmp_path: Path) -> None:
    """W-6a with decisions 9 and 14 and PD-38: the store refuses the boundary
    commit; no receipt is written, the input goes back to Queued (in memory
    and in the store) without an attempt counted, and its waiter stays
    pending; the loop runs it again once the store answers (no new accept
    needed) and the waiter completes with that run's result; exactly one
    receipt is stored."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))

    async def main() -> None:
        inner = SqliteRuntimeStore(files.db)
        store = FaultyStore(inner)
        adapter = files.adapter(store)
        try:
            executor = ToyExecutor([Step.OK, Step.HOLD], result=RESULT)
            await adapter.register_session(sid)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(sid, p)
            assert handle is not None
            store.arm(Fault.FAIL, "atomic_apply")
            await adapter.register_session_with_executor(sid, executor)
            await held(executor.held)  # the second attempt is in flight
            assert store.fired == [(Fault.FAIL, "atomic_apply")]
            assert not handle.done()
            assert await receipt_counts(store, rid) == Counter()
            assert await stored_phase(store, rid, p.id()) is InputLifecycleState.QUEUED
            state = await adapter.input_state(sid, p.id())
            assert state is not None
            assert state.attempt_count() == 1  # the run in flight, only
            executor.release.set()
            assert await outcome_of(handle) == Completed(run_result=RESULT)
            second_run = executor.calls[1].run_id
            receipts = await store.load_boundary_receipts(rid)
            assert [r.run_id for r in receipts] == [second_run]
            assert await receipt_counts(store, rid) == Counter({p.id(): 1})
            assert (
                await stored_phase(store, rid, p.id()) is InputLifecycleState.CONSUMED
            )
            assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_boundary_commit_store_fault_is_not_an_attempt(tmp_path: Path) -> None:
    """W-6a with decision 3 and PD-38 (this test pinned the opposite before:
    a refused boundary counted as one of the input's three attempts, so a
    store hiccup plus two executor failures abandoned the input). Only the
    executor's failures count: after a store fault and two executor
    failures, the fourth run commits; the waiter completes, one receipt is
    stored, the input's attempts are its three staged runs."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))

    async def main() -> None:
        store = FaultyStore(SqliteRuntimeStore(files.db))
        adapter = files.adapter(store)
        try:
            script = [Step.OK, Step.FAIL, Step.FAIL, Step.OK]
            executor = ToyExecutor(script, result=RESULT)
            await adapter.register_session(sid)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(sid, p)
            store.arm(Fault.FAIL, "atomic_apply")
            await adapter.register_session_with_executor(sid, executor)
            assert await outcome_of(handle) == Completed(run_result=RESULT)
            assert len(executor.calls) == 4
            assert await receipt_counts(store, rid) == Counter({p.id(): 1})
            stored = await store.load_input_state(rid, p.id())
            assert stored is not None
            assert stored.attempt_count() == 3
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


RETRY_DELAY = 0.15


def test_failed_run_is_retried_after_retry_delay(tmp_path: Path) -> None:
    """PD-10 with decision 9: a failed run's inputs are retried after
    ``retry_delay``, not in a hot loop."""
    files = Files(tmp_path)

    async def main() -> None:
        store = SqliteRuntimeStore(files.db)
        adapter = RuntimeSessionAdapter.persistent(
            store, FileBlobStore(files.blobs), retry_delay=RETRY_DELAY
        )
        sid = SessionId.new()
        try:
            executor = ToyExecutor([Step.FAIL])
            await adapter.register_session_with_executor(sid, executor)
            _, handle = await adapter.accept_input_with_completion(sid, prompt())
            await outcome_of(handle)
            first, second = executor.started
            assert second - first >= RETRY_DELAY
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_boundary_commit_failure_waits_the_store_backoff(
    tmp_path: Path,
) -> None:
    """W-6a with PD-38 and PD-39: a run whose boundary the store refused runs
    again only after the store backoff's first pause, so a store that keeps
    refusing boundaries is not met with a model call each time."""
    files = Files(tmp_path)

    async def main() -> None:
        store = FaultyStore(SqliteRuntimeStore(files.db))
        adapter = RuntimeSessionAdapter.persistent(
            store,
            FileBlobStore(files.blobs),
            store_backoff=StoreBackoff(initial=RETRY_DELAY, maximum=1.0),
        )
        sid = SessionId.new()
        try:
            executor = ToyExecutor()
            await adapter.register_session(sid)
            _, handle = await adapter.accept_input_with_completion(sid, prompt())
            store.arm(Fault.FAIL, "atomic_apply")
            await adapter.register_session_with_executor(sid, executor)
            await outcome_of(handle)
            first, second = executor.started
            assert second - first >= RETRY_DELAY
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_unregister_then_register_recovers_from_store(tmp_path: Path) -> None:
    """X-3 / X-5: unregistering mid-run and registering again on the same
    persistent adapter recovers the input from the store; it runs once."""
    files = Files(tmp_path)
    sid = SessionId.new()

    async def main() -> None:
        store = SqliteRuntimeStore(files.db)
        adapter = files.adapter(store)
        try:
            executor = ToyExecutor([Step.HOLD])
            await adapter.register_session_with_executor(sid, executor)
            p = prompt()
            await adapter.accept_input(sid, p)
            await held(executor.held)
            await adapter.unregister_session(sid)
            second = ToyExecutor()
            await adapter.register_session_with_executor(sid, second)

            async def consumed() -> bool:
                state = await adapter.input_state(sid, p.id())
                return (
                    state is not None
                    and state.current_state() is InputLifecycleState.CONSUMED
                )

            await eventually(consumed, TIMEOUT)
            assert second.applied_ids() == [p.id()]
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


# ---------------------------------------------------------------- terminal persist failure


@pytest.mark.parametrize("step", [Step.OK, Step.FAIL], ids=["completed", "failed"])
def test_terminal_persist_failure_is_retried(tmp_path: Path, step: Step) -> None:
    """W-6b / W-7 with decisions 9 and 14: a transient store failure on the
    run's terminal commit (RunCompleted, or RunFailed after an executor
    failure) does not wedge the session in Running: the loop records the
    run's end again, the waiter resolves, later input runs, and the input's
    receipt is stored once."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))

    async def main() -> None:
        store = FaultyStore(SqliteRuntimeStore(files.db))
        adapter = files.adapter(store)
        try:
            executor = ToyExecutor([step], result=RESULT)
            await adapter.register_session(sid)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(sid, p)
            store.arm(Fault.FAIL, "atomic_lifecycle_commit")
            await adapter.register_session_with_executor(sid, executor)
            assert await outcome_of(handle) == Completed(run_result=RESULT)
            assert store.fired == [(Fault.FAIL, "atomic_lifecycle_commit")]
            assert executor.applied_ids() == [p.id()] * (2 if step is Step.FAIL else 1)
            # W-6b / W-7: the executor was told, once, why its run stopped.
            (stop,) = executor.controls
            assert isinstance(stop, StopRuntimeExecutor)
            rule = COMPLETION_NOT_RECORDED if step is Step.OK else FAILURE_NOT_RECORDED
            assert stop.reason.startswith(f"{rule}: Internal error: ")
            later = prompt("later")
            _, h_later = await adapter.accept_input_with_completion(sid, later)
            assert await outcome_of(h_later) == Completed(run_result=RESULT)
            assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
            assert await receipt_counts(store, rid) == Counter(
                {p.id(): 1, later.id(): 1}
            )
            assert (
                await stored_phase(store, rid, p.id()) is InputLifecycleState.CONSUMED
            )
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


class OutageStore(FaultyStore):
    """Refuses every terminal (lifecycle) commit while ``down``."""

    down = False

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        if self.down:
            self.fired.append((Fault.FAIL, "atomic_lifecycle_commit"))
            raise RuntimeStoreError.Unavailable("store unavailable")
        await super().atomic_lifecycle_commit(runtime_id, runtime_state, input_states)


@pytest.mark.parametrize("step", [Step.OK, Step.FAIL], ids=["completed", "failed"])
def test_runtime_recovers_after_a_long_store_outage(tmp_path: Path, step: Step) -> None:
    """W-6b / W-7: while the store refuses the run's end, the loop keeps
    retrying (with growing pauses); once the store is back the end is
    recorded by itself: the waiter resolves and the runtime serves later
    input."""
    files = Files(tmp_path)
    sid = SessionId.new()

    async def main() -> None:
        store = OutageStore(SqliteRuntimeStore(files.db))
        adapter = files.adapter(store)
        try:
            executor = ToyExecutor([step])
            await adapter.register_session(sid)
            _, handle = await adapter.accept_input_with_completion(sid, prompt())
            store.down = True
            await adapter.register_session_with_executor(sid, executor)

            async def retried() -> bool:  # the store refused several attempts
                return len(store.fired) >= 3

            await eventually(retried)
            assert handle is not None
            assert not handle.done()  # decision 9: still pending meanwhile
            store.down = False
            await outcome_of(handle, 2.0)
            _, later = await adapter.accept_input_with_completion(sid, prompt("x"))
            await outcome_of(later, 0.3)
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


class TextSnapshotExecutor(ToyExecutor):
    """Answers every run with a session snapshot that is text, not bytes."""

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        output = await super().apply(run_id, primitive)
        return CoreApplyOutput(
            receipt=output.receipt,
            run_result=output.run_result,
            session_snapshot='{"messages": []}',  # type: ignore[arg-type]
        )


def test_an_executor_answering_a_text_snapshot_fails_its_runs_not_the_loop(
    tmp_path: Path,
) -> None:
    """W-6a with decision 3: a boundary whose snapshot is not bytes is refused
    (ValidationFailed) before anything changes; each run fails like a refused
    boundary, so after three attempts the input is abandoned and its waiter
    told, no receipt is stored, and the loop keeps serving the session."""
    files = Files(tmp_path)
    sid = SessionId.new()
    rid = LogicalRuntimeId(str(sid))

    async def main() -> None:
        store = SqliteRuntimeStore(files.db)
        adapter = files.adapter(store)
        try:
            executor = TextSnapshotExecutor(result=RESULT)
            await adapter.register_session_with_executor(sid, executor)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(sid, p)
            assert handle is not None
            outcome = await outcome_of(handle)
            assert isinstance(outcome, AbandonedOutcome)
            assert outcome.reason == "max_attempts_exhausted"
            assert outcome.error is not None
            assert "session_snapshot must be bytes, not str" in outcome.error
            assert len(executor.calls) == 3
            assert await receipt_counts(store, rid) == Counter()
            assert (
                await stored_phase(store, rid, p.id()) is InputLifecycleState.ABANDONED
            )

            async def serving() -> bool:
                return await adapter.runtime_state(sid) is RuntimeState.ATTACHED

            await eventually(serving)
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())
