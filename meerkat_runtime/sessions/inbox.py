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
(``StoreBackoff``); any other failure is logged and the watcher goes on,
so that one runtime's damaged entry does not stop the others' admissions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

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
    ) -> None:
        self.store = store
        self.admit = admit
        self.interval = interval
        self.backoff = backoff
        self.task: asyncio.Task[None] | None = None

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
        """One round: admit every runtime the store says has entries."""
        for runtime_id in await self.store.list_runtimes_with_inbox():
            try:
                await self.admit(runtime_id)
            except Exception:
                log.exception("inbox admission of %s failed", runtime_id)
