"""How a write travels between a caller's event loop and the SQLite
store's writer thread, and the small rules both sides share.

A caller queues a ``Request``; the writer thread runs it in a group commit
and hands back an ``Answer``. Answers go out after the commit, batched per
event loop (one wake-up per loop, not per caller), and each request learns
in the writer thread whether it committed, so a caller cancelled meanwhile
can still tell (``outcome_after_cancel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Request:
    """One caller's write, and how to hand its result back to the caller's
    event loop (``call_soon_threadsafe`` directly: cheaper than wrapping a
    concurrent future, and this hop is on every durable acknowledgement)."""

    work: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    answered: Callable[[], None]  # the store's count of requests in flight
    # Set by the writer thread before it hands the result over, so a caller
    # cancelled meanwhile can still learn whether its write committed.
    committed: bool | None = None
    waiter: asyncio.Future[None] | None = None
    # A request that only upserts this one input row (runtime_id, input_id,
    # state_json): the writer may merge such rows into one statement.
    row: tuple[str, str, bytes] | None = None
    # (runtime_id, epoch) the request's ``work`` checks (PD-36): a merged
    # group checks each runtime once instead.
    fence: tuple[str, int] | None = None

    async def outcome_after_cancel(self) -> bool:
        """Whether the write committed, waiting for the writer (on the loop
        thread, so no hand-over can slip between the check and the wait)."""
        if self.committed is None:
            self.waiter = self.loop.create_future()
            while not self.waiter.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({self.waiter})
        return bool(self.committed)


Answer = tuple[Request, bool, Any]  # (request, committed, result or error)


def answer_all(answers: list[Answer]) -> None:
    """Hand each answer to its caller's event loop: one wake-up per loop, not
    per caller (a group of 64 acks was 64 self-pipe writes and 64 loop
    callbacks). ``committed`` is set here, in the writer thread, before the
    hand-over, so a caller cancelled meanwhile can still learn the outcome."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for answer in answers:
        answer[0].committed = answer[1]
        by_loop.setdefault(answer[0].loop, []).append(answer)
    for loop, batch in by_loop.items():
        # A closed loop means its callers are gone: nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle_all, batch)


def settle_all(answers: list[Answer]) -> None:
    for request, ok, value in answers:
        settle(request, ok, value)


def settle(request: Request, ok: bool, value: Any) -> None:
    future = request.future
    if not future.done():  # the caller may have been cancelled meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    if request.waiter is not None and not request.waiter.done():
        request.waiter.set_result(None)
    # Only now is the request out of the writer's hands (not when a cancelled
    # caller gave up on it): until then no lone caller may commit inline.
    request.answered()


class Busy:
    """Another connection holds the write lock (inline commit declined)."""


BUSY = Busy()


async def wait_out(future: asyncio.Future[None]) -> None:
    """Wait until ``future`` is done, also when cancelled meanwhile (again and
    again: timeouts and task groups cancel twice); the cancellation is
    raised once it is done. ``future`` reports its errors elsewhere."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
