"""A small meerkat SQLite file to damage, a map of what each page holds, and
one trial: damage a copy, recover it, and say what that produced.

The file holds 60 acknowledged inputs across two runtimes (two of them big
enough to spill into overflow pages), a run whose boundary was committed
but never completed (so recovery reads its receipt), a completed run, and
free pages left by a dropped table.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from msgspec import structs

from meerkat_runtime import (
    InputDurability,
    InputHeader,
    InputId,
    InputOrigin,
    LogicalRuntimeId,
    PromptInput,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunId,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.codec import encode
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import RuntimeDriverError
from meerkat_runtime.input_state import InputStateRecord
from meerkat_runtime.runs import BoundaryApplied, RunCompleted
from meerkat_runtime.store import SqliteRuntimeStore
from meerkat_runtime.store.base import RuntimeStoreError

RUNTIMES = (LogicalRuntimeId("runtime-a"), LogicalRuntimeId("runtime-b"))
PER_RUNTIME = 30
BIG_TEXT = 6000  # characters: more than one 4 KiB page holds, so it overflows

# What recovery gave, per runtime: input id -> its record without what the
# recovery stamps (see _without_count), and the receipts as stored.
Recovered = dict[str, tuple[dict[str, bytes], bytes]]


def prompt(text: str) -> PromptInput:
    header = InputHeader(
        id=InputId.new(),
        timestamp=datetime.now(UTC),
        source=InputOrigin.Operator(),
        durability=InputDurability.DURABLE,
    )
    return PromptInput(header=header, text=text)


def receipt(run_id: RunId, ids: Sequence[InputId]) -> RunBoundaryReceipt:
    return RunBoundaryReceipt(
        run_id=run_id,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=list(ids),
        message_count=len(ids),
        sequence=0,
    )


async def _fill(store: SqliteRuntimeStore, runtime_id: LogicalRuntimeId) -> None:
    driver = PersistentRuntimeDriver(runtime_id, store, MemoryBlobStore())
    inputs = [
        prompt(f"{runtime_id} input {n} " + ("x" * BIG_TEXT if n == 7 else ""))
        for n in range(PER_RUNTIME)
    ]
    for inp in inputs:
        assert (await driver.accept_input(inp)).is_accepted()
    for ids, completes in (
        ([i.id() for i in inputs[:3]], True),
        ([inputs[3].id()], False),
    ):
        run_id = RunId.new()
        driver.start_run(run_id)
        driver.stage_batch(ids, run_id)
        await driver.on_run_event(
            BoundaryApplied(
                run_id=run_id,
                receipt=receipt(run_id, ids),
                session_snapshot=b'{"messages": [1]}',
            )
        )
        if completes:
            await driver.on_run_event(
                RunCompleted(run_id=run_id, consumed_input_ids=ids)
            )


def build(path: Path) -> None:
    """The file to damage, closed (no WAL beside it)."""

    async def fill() -> None:
        async with SqliteRuntimeStore(path) as store:
            for runtime_id in RUNTIMES:
                await _fill(store, runtime_id)

    asyncio.run(fill())
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE scratch (x BLOB)")
    conn.executemany("INSERT INTO scratch VALUES (randomblob(3000))", [()] * 6)
    conn.commit()
    conn.execute("DROP TABLE scratch")  # its pages join the free list
    conn.commit()
    conn.close()


@dataclass(frozen=True)
class PageMap:
    page_size: int
    kinds: dict[int, str]  # page number -> kind of damage it takes

    def kind_at(self, offset: int) -> str:
        if offset < 100:
            return "header"
        return self.kinds.get(offset // self.page_size + 1, "free")


def page_map(path: Path) -> PageMap:
    """Each page's kind: header (the file's first 100 bytes), schema, table
    or index b-tree, overflow, or free (on no b-tree at all)."""
    conn = sqlite3.connect(path)
    try:
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'index'"
            )
        }
        kinds: dict[int, str] = {}
        for name, page, page_type in conn.execute(
            "SELECT name, pageno, pagetype FROM dbstat"
        ):
            if page_type == "overflow":
                kinds[page] = "overflow"
            elif name == "sqlite_schema":
                kinds[page] = "schema"
            else:
                kinds[page] = "index" if name in indexes else "table"
    finally:
        conn.close()
    return PageMap(page_size, kinds)


async def recover(path: Path) -> Recovered:
    """Every runtime of ``path`` recovered by a new driver, as a restarted
    process would, and what it holds afterwards."""
    recovered: Recovered = {}
    async with SqliteRuntimeStore(path) as store:
        for runtime_id in RUNTIMES:
            driver = PersistentRuntimeDriver(runtime_id, store, MemoryBlobStore())
            await driver.recover()
            records: dict[str, bytes] = {}
            for state in driver.observe().inputs:
                full = driver.input_state(state.input_id)
                assert full is not None
                records[str(state.input_id)] = _without_count(full.to_record())
            receipts = await store.load_boundary_receipts(runtime_id)
            recovered[str(runtime_id)] = (records, encode(receipts))
    return recovered


def _without_count(record: InputStateRecord) -> bytes:
    """The record without what recovery itself stamps (the clock of the
    transitions it makes; the recovery count, kept beside the record)."""
    stamp = record.created_at
    history = [structs.replace(e, timestamp=stamp) for e in record.history]
    return encode(
        structs.replace(record, recovery_count=0, updated_at=stamp, history=history)
    )


# SQLite's own words for a damaged file, as the store passes them on.
_SQLITE_COMPLAINTS = (
    "database disk image is malformed",
    "file is not a database",
    "attempt to write a readonly database",
)


def outcome(path: Path, baseline: Recovered) -> str:
    """``clean`` (everything recovered as from the undamaged file), ``named``
    (an error naming the damaged table, runtime and record), or ``sqlite``
    (SQLite's own complaint, passed on by the store). Anything else fails."""
    try:
        got = asyncio.run(recover(path))
    except (RuntimeStoreError, RuntimeDriverError) as exc:
        text = str(exc)
        if "corrupt record in" in text and "runtime '" in text:
            return "named"
        if str(path) in text or any(c in text for c in _SQLITE_COMPLAINTS):
            return "sqlite"
        return f"UNNAMED error: {type(exc).__name__}: {text[:200]}"
    except Exception as exc:  # reported as a failure, with its type
        return f"CRASH: {type(exc).__name__}: {str(exc)[:200]}"
    if got == baseline:
        return "clean"
    return "SILENT damage: " + _difference(baseline, got)


def _difference(baseline: Recovered, got: Recovered) -> str:
    for runtime_id, (records, receipts) in baseline.items():
        other, other_receipts = got.get(runtime_id, ({}, b""))
        missing = set(records) - set(other)
        if missing:
            return f"{runtime_id}: {len(missing)} of {len(records)} inputs missing"
        changed = [i for i in records if records[i] != other.get(i)]
        if changed:
            return f"{runtime_id}: input {changed[0]} changed"
        if set(other) - set(records):
            return f"{runtime_id}: inputs that were never accepted"
        if receipts != other_receipts:
            return f"{runtime_id}: receipts changed"
    return "runtimes differ"
