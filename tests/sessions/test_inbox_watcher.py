"""The inbox watcher parks a runtime whose admission keeps failing (a
damaged entry) instead of retrying it, with a traceback, every poll: the
pause grows with each failure in a row, each failure is logged once, the
other runtimes are admitted meanwhile, and nothing is dropped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from meerkat_runtime.errors import CorruptError
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.sessions.inbox import InboxWatcher
from meerkat_runtime.sessions.loop import StoreBackoff
from meerkat_runtime.store import InMemoryRuntimeStore
from tests.sessions.helpers import prompt

BROKEN, HEALTHY = LogicalRuntimeId("broken"), LogicalRuntimeId("healthy")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_runtime_is_parked_with_a_growing_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        store = InMemoryRuntimeStore()
        for runtime_id in (BROKEN, HEALTHY):
            await store.submit_to_inbox(runtime_id, prompt())
        tried: list[LogicalRuntimeId] = []

        async def admit(runtime_id: LogicalRuntimeId) -> int:
            tried.append(runtime_id)
            if runtime_id == BROKEN:
                raise CorruptError("corrupt record in runtime_inbox: 'broken'")
            return 0  # leaves the entry: the healthy runtime is found again

        clock = Clock()
        backoff = StoreBackoff(initial=1.0, maximum=4.0)
        watcher = InboxWatcher(store, admit, 0.05, backoff, clock=clock)
        with caplog.at_level(logging.INFO, logger="meerkat_runtime.sessions.inbox"):
            for _ in range(10):  # ten polls within the first pause
                await watcher.look()
            assert tried.count(BROKEN) == 1
            assert tried.count(HEALTHY) == 10
            failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(failures) == 1
            assert failures[0].exc_info is not None  # the first has its traceback
            for step, pause in enumerate([1.0, 2.0, 4.0, 4.0], start=2):
                clock.now += pause
                await watcher.look()
                await watcher.look()  # parked again: not tried
                assert tried.count(BROKEN) == step
            failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(failures) == 5
            assert all(r.exc_info is None for r in failures[1:])
            assert "5 in a row" in failures[-1].getMessage()
        assert [e.input_id for e in await store.load_inbox(BROKEN)] != []

    asyncio.run(body())


def test_a_success_unparks_the_runtime(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        store = InMemoryRuntimeStore()
        await store.submit_to_inbox(BROKEN, prompt())
        outcomes: list[Exception | None] = [CorruptError("damaged"), None, None]
        tried = 0

        async def admit(_: LogicalRuntimeId) -> int:
            nonlocal tried
            outcome = outcomes[tried]
            tried += 1
            if outcome is not None:
                raise outcome
            return 0

        clock = Clock()
        watcher = InboxWatcher(store, admit, 0.05, StoreBackoff(1.0, 4.0), clock=clock)
        with caplog.at_level(logging.INFO, logger="meerkat_runtime.sessions.inbox"):
            await watcher.look()
            clock.now += 1.0
            await watcher.look()
            assert watcher.parked == {}
            await watcher.look()  # no longer parked: tried at once
        assert tried == 3
        assert "succeeded again" in caplog.records[-1].getMessage()

    asyncio.run(body())
