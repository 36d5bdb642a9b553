"""A helper the cancellation tests share: cancel a call while its store
write is held at a gate, then let the write commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

ENTER_TIMEOUT = 1.0  # seconds for the write to reach the gate


async def cancelled_mid_write(
    call: Awaitable[object], entered: asyncio.Event, gate: asyncio.Event
) -> None:
    """Start ``call``; once its write has ``entered`` the store and waits at
    ``gate``, cancel the caller, then open the gate: the write commits, and
    the caller still ends cancelled (decision 14: memory must follow the
    store, which the test then checks)."""
    task = asyncio.ensure_future(call)
    await asyncio.wait_for(entered.wait(), ENTER_TIMEOUT)
    task.cancel()
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
