"""Spans of a scripted session (issue 19): accept outcomes and their
attributes, the trace context stored with an input, a crash after the
accept, recovery in another process, a failed run and its retry, each run
linked to the accept span of the input it applies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from meerkat_runtime import (
    FileBlobStore,
    InMemoryRuntimeStore,
    InputId,
    QueueMode,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
    telemetry,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.input_state import InputStateRecord
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.sessions.completion import Completed, CompletedWithoutResult
from meerkat_runtime.telemetry import names
from tests.sessions.executors import Step, ToyExecutor
from tests.sessions.helpers import (
    CHILD_OWNER,
    TIMEOUT,
    RoutingPolicyTable,
    derived_prompt,
    event,
    outcome_of,
    prompt,
)

from .recorder import Recorded, dump, python, recording, span_id

SID = SessionId("traced")


def test_accepts_are_spans_under_the_callers_span_with_their_outcome(
    tmp_path: Path,
) -> None:
    """One accept span per call, child of the caller's span, with the
    outcome and policy; the counters count each outcome once; the stored
    input carries the accept span's traceparent."""

    async def body(recorded: Recorded) -> None:
        db = tmp_path / "a.db"
        store = SqliteRuntimeStore(db)
        adapter = RuntimeSessionAdapter.persistent(
            store,
            FileBlobStore(tmp_path / "b"),
            RoutingPolicyTable(QueueMode.SUPERSEDE),
        )
        await adapter.register_session(SID)
        first = prompt("first", key="k")
        old, new = event("old", supersession="s"), event("new", supersession="s")
        client = recorded.tracer_provider.get_tracer("client")
        with client.start_as_current_span("client.request") as request:
            accepted = await adapter.accept_input(SID, first)
            await adapter.accept_input(SID, prompt("again", key="k"))
            await adapter.accept_input(SID, derived_prompt())
            await adapter.accept_input(SID, old)
            await adapter.accept_input(SID, new)
        assert isinstance(accepted, Accepted)
        runtime_id = adapter.sessions[SID].runtime_id
        await adapter.close()
        await store.close()
        async with SqliteRuntimeStore(db) as reopened:
            states = {
                s.input_id: s for s in await reopened.load_input_states(runtime_id)
            }
        spans = recorded.spans(names.ACCEPT_SPAN)
        assert [s.attributes[names.OUTCOME] for s in spans if s.attributes] == [
            "accepted",
            "deduplicated",
            "rejected",
            "accepted",
            "accepted",
        ]
        request_id = request.get_span_context().span_id
        assert all(
            s.parent is not None and s.parent.span_id == request_id for s in spans
        )
        attributes = spans[0].attributes or {}
        assert attributes[names.INPUT_ID] == str(first.id())
        assert attributes[names.INPUT_KIND] == "prompt"
        assert attributes[names.RUNTIME] == str(runtime_id)
        queue_mode = accepted.policy.queue_mode.value
        assert str(attributes[names.POLICY]).startswith(f"{queue_mode}/")
        trace_id, accept_id = span_id(spans[0])
        flags = int(spans[0].get_span_context().trace_flags)  # type: ignore[union-attr]
        stored = states[first.id()].trace_context
        assert stored == f"00-{trace_id:032x}-{accept_id:016x}-{flags:02x}"
        assert states[old.id()].trace_context is not None  # superseded, still linked
        assert recorded.total(names.ACCEPTED) == 3
        assert recorded.total(names.DEDUPLICATED) == 1
        assert recorded.total(names.REJECTED) == 1
        assert recorded.total(names.SUPERSEDED) == 1
        assert recorded.depths()[str(runtime_id)] == 2

    with recording() as recorded:
        asyncio.run(body(recorded))


def test_without_tracing_the_stored_record_is_unchanged() -> None:
    """PD-71: no span, no trace context: the record has no such key, and a
    record without one (every record written before) reads back as None."""

    async def body() -> bytes:
        store = InMemoryRuntimeStore()
        driver = PersistentRuntimeDriver(
            LogicalRuntimeId("r"), store, MemoryBlobStore()
        )
        outcome = await driver.accept_input(prompt("untraced"))
        assert isinstance(outcome, Accepted)
        (state,) = await store.load_input_states(LogicalRuntimeId("r"))
        assert state.trace_context is None
        return state.to_json()

    record = asyncio.run(body())
    assert b"trace_context" not in record
    assert InputStateRecord.from_json(record).trace_context is None


def test_a_run_after_a_crash_links_to_the_accept_in_the_dead_process(
    tmp_path: Path,
) -> None:
    """A worker accepts a prompt under tracing and dies before running it.
    Here the session is recovered (the recovery span counts the input),
    the first run fails and the second completes: two root run spans, both
    linked to the dead worker's accept span through the stored
    traceparent, attempts 1 and 2, outcomes failed then completed; the
    boundary commit is a child of the completing run."""
    db, blobs = tmp_path / "crash.db", tmp_path / "blobs"
    child = python("-m", "tests.telemetry.traced_child", str(db), str(blobs), str(SID))
    assert child.returncode == 1, child.stderr
    accepted = json.loads(child.stdout.splitlines()[-1])
    accept_context = (int(accepted["trace"], 16), int(accepted["span"], 16))

    async def body() -> None:
        store = SqliteRuntimeStore(db)
        adapter = RuntimeSessionAdapter.persistent(
            store, FileBlobStore(blobs), owner=CHILD_OWNER, retry_delay=0.001
        )
        await adapter.register_session(SID)
        handle = await adapter.completion_for(SID, InputId(accepted["input"]))
        await adapter.register_session_with_executor(SID, ToyExecutor([Step.FAIL]))
        await outcome_of(handle, TIMEOUT * 4)
        await adapter.close()
        await store.close()

    with recording() as recorded:
        asyncio.run(body())
    text = dump(recorded.spans())
    (recovery,) = recorded.spans(names.RECOVERY_SPAN)
    assert (recovery.attributes or {})[names.RECOVERED] == 1, text
    runs = recorded.spans(names.RUN_SPAN)
    assert [(r.attributes or {})[names.ATTEMPT] for r in runs] == [1, 2], text
    outcomes = [(r.attributes or {})[names.OUTCOME] for r in runs]
    assert outcomes == ["failed", "completed"], text
    assert "toy failure" in str((runs[0].attributes or {})[names.ERROR])
    for run in runs:
        assert run.parent is None, text  # a trace of its own
        linked = [(link.context.trace_id, link.context.span_id) for link in run.links]
        assert linked == [accept_context], text
        assert (run.attributes or {})[names.BATCH_SIZE] == 1
    (boundary,) = recorded.spans(names.BOUNDARY_SPAN)
    assert boundary.parent is not None
    assert boundary.parent.span_id == span_id(runs[1])[1], text
    # Group commits (the writer thread's) are spans; inline ones only timed.
    commits = recorded.spans(names.STORE_COMMIT_SPAN)
    sizes = [(c.attributes or {})[names.GROUP_SIZE] for c in commits]
    assert all(isinstance(size, int) and size >= 1 for size in sizes)
    durations = {
        p.attributes[names.OUTCOME]: p.count
        for p in recorded.points(names.RUN_DURATION)
    }
    assert durations == {"failed": 1, "completed": 1}
    (recovered,) = recorded.points(names.RECOVERY_DURATION)
    assert recovered.count == 1
    timed = sum(p.count for p in recorded.points(names.COMMIT_LATENCY))
    assert timed >= max(1, len(commits))
    sized = sum(p.count for p in recorded.points(names.COMMIT_GROUP))
    assert sized == timed
    assert recorded.depths()[str(SID)] == 0  # the input ran


class _RaisingProcessor(SpanProcessor):
    """A span processor that fails at every span's start and end."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:  # noqa: ARG002
        raise RuntimeError(f"on_start failed: {span.name}")

    def on_end(self, span: Any) -> None:
        raise RuntimeError(f"on_end failed: {span.name}")


def test_a_span_processor_that_raises_breaks_nothing(tmp_path: Path) -> None:
    """Tracing is an observer: a processor that raises at a span's start or
    end (an exporter's bug) neither hangs the store's writer thread nor fails
    an accept, a recovery, a boundary or a run."""

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "a.db")
        adapter = RuntimeSessionAdapter.persistent(store, FileBlobStore(tmp_path / "b"))
        await adapter.register_session_with_executor(SID, ToyExecutor())
        pairs = await asyncio.wait_for(
            asyncio.gather(
                *(
                    adapter.accept_input_with_completion(SID, prompt(f"p{i}"))
                    for i in range(8)
                )
            ),
            TIMEOUT,
        )
        for _outcome, handle in pairs:
            assert handle is not None
            done = await asyncio.wait_for(handle.wait(), TIMEOUT)
            assert isinstance(done, Completed | CompletedWithoutResult), done
        await adapter.close()
        await store.close()

    provider = TracerProvider()
    provider.add_span_processor(_RaisingProcessor())
    telemetry.configure(provider, None)
    try:
        asyncio.run(body())
    finally:
        telemetry.configure()
