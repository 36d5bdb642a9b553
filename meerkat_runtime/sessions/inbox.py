"""The owner's side of the inbox (PD-58, PD-61): when its sessions admit.

Theory of operation: inputs that other processes submit wait in each
runtime's inbox in the store until the runtime's owner admits them
(``PersistentRuntimeDriver.admit_from_inbox``). An adapter admits a
session's inbox when it registers the session (right after recovery), and
then whenever its ``InboxWatcher`` finds entries: one background task per
adapter that asks the store every ``interval`` seconds which runtimes have
pending entries (``list_runtimes_with_inbox``: one indexed query, whatever
the number of sessions), and admits those of its own sessions among them.
An idle fleet therefore costs one small query per interval per process,
not one per session; the price is that a submitted input waits up to one
interval before its owner sees it.

Direct accepts (``accept_input`` in the owning process) do not look at the
inbox first: an input accepted directly may be admitted before one that was
submitted to the inbox earlier. Within the inbox, arrival order is kept.

A store that cannot be reached is asked again after a growing pause
(``StoreBackoff``). A runtime whose admission fails otherwise (a damaged
entry: ``Corrupt``) is parked: skipped for a pause that grows with each
failure in a row (the same ``StoreBackoff``), logged once per failure (the
traceback only the first time), so that one runtime's damaged entry costs
neither the others' admissions nor a log line every poll. Its entries stay
in the inbox; a success un-parks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meerkat_runtime.errors import is_retryable
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.sessions.loop import StoreBackoff
from meerkat_runtime.store.base import RuntimeStore

log = logging.getLogger(__name__)

# Seconds between two looks at the store for submitted inputs (README).
DEFAULT_INBOX_POLL = 0.05

Admit = Callable[[LogicalRuntimeId], Awaitable[int]]


def checked_interval(interval: object) -> float:
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not 0 < interval < float("inf")
    ):
        raise ValueError(
            f"inbox_poll must be a finite number of seconds > 0, not {interval!r}"
        )
    return float(interval)


@dataclass
class _Parked:
    """A runtime whose admission failed ``failures`` times in a row; it is
    not tried again before ``until`` (on the watcher's clock)."""

    failures: int
    until: float


class InboxWatcher:
    """Looks for submitted inputs every ``interval`` seconds and hands each
    runtime that has some to ``admit`` (the adapter's admission; it ignores
    runtimes that are not its own)."""

    def __init__(
        self,
        store: RuntimeStore,
        admit: Admit,
        interval: float,
        backoff: StoreBackoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.admit = admit
        self.interval = interval
        self.backoff = backoff
        self.clock = clock
        self.task: asyncio.Task[None] | None = None
        self.parked: dict[LogicalRuntimeId, _Parked] = {}

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self._main(), name="meerkat-inbox-watcher"
            )

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _main(self) -> None:
        refusals = 0
        while True:
            try:
                await self.look()
                refusals = 0
                pause = self.interval
            except Exception as exc:
                log.warning("inbox watcher: the store refused (%s)", exc)
                pause = (
                    max(self.interval, self.backoff.pause(refusals))
                    if is_retryable(exc)
                    else self.interval
                )
                refusals += 1
            await asyncio.sleep(pause)

    async def look(self) -> None:
        """One round: admit every runtime the store says has entries, but
        those parked after failing."""
        for runtime_id in await self.store.list_runtimes_with_inbox():
            parked = self.parked.get(runtime_id)
            if parked is not None and self.clock() < parked.until:
                continue
            try:
                await self.admit(runtime_id)
            except Exception as exc:
                self._park(runtime_id, parked, exc)
            else:
                if self.parked.pop(runtime_id, None) is not None:
                    log.info("inbox admission of %s succeeded again", runtime_id)

    def _park(
        self, runtime_id: LogicalRuntimeId, parked: _Parked | None, exc: Exception
    ) -> None:
        failures = 1 if parked is None else parked.failures + 1
        pause = max(self.interval, self.backoff.pause(failures - 1))
        self.parked[runtime_id] = _Parked(failures, self.clock() + pause)
        log.error(
            "inbox admission of %s failed (%d in a row; next try in %.3g s): %s",
            runtime_id,
            failures,
            pause,
            exc,
            exc_info=exc if failures == 1 else None,
        )
