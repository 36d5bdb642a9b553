"""Without opentelemetry-api the library runs uninstrumented; fenced writes
are counted; log records carry the ids as structured fields."""

from __future__ import annotations

import asyncio
import logging
import textwrap

import pytest

from meerkat_runtime import InMemoryRuntimeStore, SessionId
from meerkat_runtime.errors import InternalError
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.telemetry import names
from meerkat_runtime.testing.conformance_ownership import FakeClock
from meerkat_runtime.testing.faults import FaultyStore, RenewalFault
from meerkat_runtime.testing.without_otel import HIDE_OPENTELEMETRY
from tests.ownership.test_adapter_ownership import adapter
from tests.sessions.executors import Step, ToyExecutor
from tests.sessions.helpers import TIMEOUT, outcome_of, prompt

from .recorder import python, recording

SESSION_WITHOUT_OTEL = textwrap.dedent(
    """
    import asyncio
    from meerkat_runtime import InMemoryRuntimeStore, RuntimeSessionAdapter, SessionId
    from meerkat_runtime import telemetry
    from meerkat_runtime.blobs import MemoryBlobStore
    from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
    from tests.sessions.executors import ToyExecutor
    from tests.sessions.helpers import outcome_of, prompt

    assert not telemetry.AVAILABLE
    # Undecorated: the plain methods, nothing wraps them.
    assert not hasattr(PersistentRuntimeDriver.accept_input, "__wrapped__")
    assert not hasattr(PersistentRuntimeDriver.recover, "__wrapped__")

    async def main():
        adapter = RuntimeSessionAdapter.persistent(
            InMemoryRuntimeStore(), MemoryBlobStore()
        )
        sid = SessionId("plain")
        await adapter.register_session_with_executor(sid, ToyExecutor())
        _, handle = await adapter.accept_input_with_completion(sid, prompt("hi"))
        print(type(await outcome_of(handle)).__name__)
        await adapter.close()

    asyncio.run(main())
    try:
        telemetry.configure()
    except RuntimeError as exc:
        print(exc)
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
    """
)


def test_the_library_runs_without_opentelemetry_installed() -> None:
    """A session accepts and runs an input with every opentelemetry module
    hidden; no hook wraps anything; ``configure`` says what is missing."""
    done = python("-c", HIDE_OPENTELEMETRY + SESSION_WITHOUT_OTEL)
    assert done.returncode == 0, done.stderr
    completed, refusal, loaded = done.stdout.splitlines()
    assert completed == "CompletedWithoutResult"  # it ran (no result given)
    assert "pip install 'meerkat-runtime[otel]'" in refusal
    assert loaded == "[]"


def test_a_fenced_write_is_counted_for_its_runtime() -> None:
    """The first owner stalls, the second takes over; the first's next
    write is fenced and counted once, for the runtime."""
    sid = SessionId("owned")

    async def body() -> None:
        store = InMemoryRuntimeStore(lease_ttl=60)
        clock = FakeClock()
        store.lease_clock = clock
        stalled = FaultyStore(store)
        stalled.renewal_fault = RenewalFault.STALL
        first, second = adapter(stalled, "first"), adapter(store, "second")
        await first.register_session(sid)
        clock.now += 61
        await second.register_session(sid)
        with pytest.raises(InternalError):
            await first.accept_input(sid, prompt("two"))
        await first.close()
        await second.close()

    with recording() as recorded:
        asyncio.run(body())
        (fenced,) = recorded.points(names.FENCED_WRITES)
    assert (dict(fenced.attributes), fenced.value) == ({names.RUNTIME: "owned"}, 1)


def test_log_records_carry_the_runtime_and_run_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed run's warning and an input's abandonment carry the ids as
    record attributes (``names.LOG_FIELDS``), not only in the message."""
    from meerkat_runtime import RuntimeSessionAdapter
    from meerkat_runtime.blobs import MemoryBlobStore

    async def body() -> str:
        adapter = RuntimeSessionAdapter.persistent(
            InMemoryRuntimeStore(), MemoryBlobStore(), retry_delay=0.001
        )
        sid = SessionId("logged")
        executor = ToyExecutor(default=Step.FAIL)
        await adapter.register_session_with_executor(sid, executor)
        inp = prompt("doomed")
        _, handle = await adapter.accept_input_with_completion(sid, inp)
        await outcome_of(handle, TIMEOUT * 4)  # abandoned: attempts used up
        await adapter.close()
        return str(inp.id())

    with caplog.at_level(logging.WARNING, logger="meerkat_runtime"):
        input_id = asyncio.run(body())
    ours = [r for r in caplog.records if r.name.startswith("meerkat_runtime.")]
    assert ours
    for record in ours:
        assert all(hasattr(record, field) for field in names.LOG_FIELDS), record
        assert record.__dict__["runtime_id"] == str(LogicalRuntimeId("logged"))
    failed = [r for r in ours if "failed" in r.getMessage() and r.levelno == 30]
    assert failed
    assert all(r.__dict__["run_id"] is not None for r in failed)
    (abandoned,) = [r for r in ours if "abandoned" in r.getMessage()]
    assert abandoned.__dict__["input_id"] == input_id


def test_hooks_stand_aside_until_something_would_record() -> None:
    """With the API installed but no SDK behind its global providers, the
    hooks skip their work (nothing would be recorded); providers given to
    ``configure`` always record."""
    from meerkat_runtime.telemetry import otel

    assert otel._idle()
    with recording():
        assert not otel._idle()
    assert otel._idle()
