"""Helpers the SQLite store's tests share: runtimes, a queued state, and files
at a given schema version.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from meerkat_runtime import (
    LogicalRuntimeId,
    PromptInput,
)
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import InputDurability
from meerkat_runtime.store import (
    SqliteRuntimeStore,
)

A = LogicalRuntimeId("sqlite-a")
SHARED = LogicalRuntimeId("sqlite-shared")


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def queued_state(text: str = "hello") -> InputState:
    inp = PromptInput.new(text)
    state = InputState.new_accepted(inp.id())
    state.persisted_input = inp
    state.durability = InputDurability.DURABLE
    return state


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def make_newer_file(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE future_things (x INTEGER)")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    finally:
        conn.close()


def group_sizes(store: SqliteRuntimeStore) -> list[int]:
    """The size of every group the store's writer commits from now on."""
    sizes: list[int] = []
    store.writer.hooks.group = sizes.append
    return sizes
