"""Failures are visible: a failed run's error (exception type and message,
bounded) is in the run event, in the history of every input the run put back
or abandoned (stored, so it survives a restart), in the waiter's final
``Abandoned`` outcome, and in the ``meerkat_runtime`` log. Before, the
caller saw only ``Abandoned("max_attempts_exhausted")``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    ContentBlock,
    FileBlobStore,
    ImageData,
    InMemoryRuntimeStore,
    InputLifecycleState,
    LogicalRuntimeId,
    MemoryBlobStore,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RuntimeDriverError,
    RuntimeSessionAdapter,
    RuntimeState,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.input_state import MAX_ERROR_CHARS, InputStateHistoryEntry
from meerkat_runtime.sessions.completion import AbandonedOutcome

from .helpers import outcome_of, prompt


class FailingExecutor:
    """Fails every run the way it is told: by raising, or by answering
    something that is not a ``CoreApplyOutput``."""

    def __init__(self, error: Exception | None = None, answer: Any = None) -> None:
        self.error = error
        self.answer = answer
        self.runs: list[RunId] = []

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> Any:
        assert primitive.contributing_input_ids
        self.runs.append(run_id)
        if self.error is not None:
            raise self.error
        return self.answer

    async def control(self, command: RunControlCommand) -> None:
        pass


async def abandoned_with(
    tmp_path: Path, executor: FailingExecutor
) -> tuple[AbandonedOutcome, list[InputStateHistoryEntry]]:
    """Run one prompt into ``executor`` until it is abandoned; its outcome
    and its history as a new store object reads it back from disk."""
    sid = SessionId.new()
    store = SqliteRuntimeStore(tmp_path / "runtime.db")
    adapter = RuntimeSessionAdapter.persistent(
        store, FileBlobStore(tmp_path / "blobs"), retry_delay=0.001
    )
    p = prompt("hello")
    try:
        await adapter.register_session_with_executor(sid, executor)
        _, handle = await adapter.accept_input_with_completion(sid, p)
        outcome = await outcome_of(handle)
    finally:
        await adapter.close()
        await store.close()
    assert isinstance(outcome, AbandonedOutcome)
    reopened = SqliteRuntimeStore(tmp_path / "runtime.db")
    try:
        state = await reopened.load_input_state(LogicalRuntimeId(str(sid)), p.id())
    finally:
        await reopened.close()
    assert state is not None
    assert state.current_state() is InputLifecycleState.ABANDONED
    return outcome, state.history()


def failed_attempts(history: list[InputStateHistoryEntry]) -> list[str | None]:
    """The error of every transition out of Staged (one per failed run)."""
    return [e.error for e in history if e.from_state is InputLifecycleState.STAGED]


def test_an_executor_error_is_in_the_outcome_the_history_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meerkat_runtime")
    executor = FailingExecutor(RuntimeError("model down"))
    outcome, history = asyncio.run(abandoned_with(tmp_path, executor))
    assert len(executor.runs) == 3
    assert outcome == AbandonedOutcome(
        reason="max_attempts_exhausted", error="RuntimeError: model down"
    )
    assert failed_attempts(history) == ["RuntimeError: model down"] * 3
    assert [e.to_state for e in history if e.error is not None] == [
        InputLifecycleState.QUEUED,
        InputLifecycleState.QUEUED,
        InputLifecycleState.ABANDONED,
    ]
    failed_runs = [
        r
        for r in caplog.records
        if r.name == "meerkat_runtime.sessions.loop" and r.levelno == logging.WARNING
    ]
    assert len(failed_runs) == 3
    assert all("RuntimeError: model down" in r.getMessage() for r in failed_runs)
    [lost] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert lost.name == "meerkat_runtime.sessions.session"
    assert "abandoned after 3 failed attempts" in lost.getMessage()
    assert "RuntimeError: model down" in lost.getMessage()


def test_an_answer_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    executor = FailingExecutor(answer={"text": "not an output"})
    outcome, history = asyncio.run(abandoned_with(tmp_path, executor))
    expected = "TypeError: the executor returned dict, not CoreApplyOutput"
    assert outcome.error == expected
    assert failed_attempts(history) == [expected] * 3


def test_a_long_error_is_bounded(tmp_path: Path) -> None:
    executor = FailingExecutor(ValueError("x" * 10_000))
    outcome, history = asyncio.run(abandoned_with(tmp_path, executor))
    assert outcome.error is not None
    assert len(outcome.error) == MAX_ERROR_CHARS
    assert outcome.error.startswith("ValueError: xxx")
    assert all(len(e or "") == MAX_ERROR_CHARS for e in failed_attempts(history))


def test_an_unreadable_blob_is_named_in_the_outcome(tmp_path: Path) -> None:
    """An image whose blob file was damaged after the accept: the runs fail
    hydrating it, and the outcome says which blob and why."""
    image = base64.b64encode(b"\x89PNG" + bytes(64)).decode("ascii")
    block = ContentBlock.Image(
        media_type="image/png", data=ImageData.Inline(data=image)
    )

    async def main() -> AbandonedOutcome:
        sid = SessionId.new()
        store = SqliteRuntimeStore(tmp_path / "runtime.db")
        adapter = RuntimeSessionAdapter.persistent(
            store, FileBlobStore(tmp_path / "blobs"), retry_delay=0.001
        )
        try:
            await adapter.register_session(sid)
            _, handle = await adapter.accept_input_with_completion(
                sid, prompt("look", blocks=[block])
            )
            [blob] = list((tmp_path / "blobs").rglob("*.json"))
            blob.write_bytes(b"garbage")
            await adapter.register_session_with_executor(sid, FailingExecutor())
            outcome = await outcome_of(handle)
        finally:
            await adapter.close()
            await store.close()
        assert isinstance(outcome, AbandonedOutcome)
        return outcome

    outcome = asyncio.run(main())
    assert outcome.reason == "max_attempts_exhausted"
    assert outcome.error is not None
    assert outcome.error.startswith("BlobInternalError: corrupt blob sha256:")


def test_history_entries_without_an_error_decode_as_before() -> None:
    """A record written before the field existed (in schema 2's keys,
    PD-40) reads back with no error, and an entry without one is written
    without the key (in upstream's keys, L-7)."""
    old = (
        b'{"timestamp":"2025-01-01T00:00:00Z","from_state":"staged",'
        b'"to_state":"queued","reason":"rollback_staged"}'
    )
    entry = InputStateHistoryEntry.from_json(old)
    assert entry.error is None
    assert entry.to_json() == (
        b'{"timestamp":"2025-01-01T00:00:00Z","from":"staged",'
        b'"to":"queued","reason":"rollback_staged"}'
    )


def test_a_terminal_runtime_with_active_inputs_names_the_runtime() -> None:
    """Decision 5's corruption error says which runtime (it said only
    "terminal runtime 'destroyed' has 1 active inputs")."""

    async def main() -> None:
        store = InMemoryRuntimeStore()
        sid = SessionId.new()
        rid = LogicalRuntimeId(str(sid))
        first = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        await first.register_session(sid)
        await first.accept_input(sid, prompt())
        await first.close()
        await store.persist_runtime_state(rid, RuntimeState.DESTROYED)
        again = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        with pytest.raises(RuntimeDriverError.Internal) as caught:
            await again.register_session(sid)
        assert str(caught.value) == (
            f"Internal error: store corruption: runtime {rid} is stored "
            "destroyed but has 1 active inputs"
        )
        assert sid not in again.sessions

    asyncio.run(main())
