"""``store.list_runtimes_with_work`` (PD-67): the runtimes holding an
unfinished, durable input, answered alike by the memory, SQLite and
PostgreSQL stores from the same rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import InputDurability
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.memory import InMemoryRuntimeStore
from meerkat_runtime.store.sqlite import SqliteRuntimeStore
from meerkat_runtime.store.work import TERMINAL_PHASES, is_work
from meerkat_runtime.testing.conformance_support import rich_state


def test_the_terminal_phases_are_the_lifecycles_own() -> None:
    assert set(TERMINAL_PHASES) == {"consumed", "superseded", "coalesced", "abandoned"}
    assert all(InputLifecycleState(p).is_terminal() for p in TERMINAL_PHASES)


def test_a_record_that_does_not_decode_counts_as_work() -> None:
    assert is_work(b"\x00 not json")
    assert not is_work(b'{"current_state": "consumed"}')
    assert not is_work(b'{"current_state": "queued", "durability": "ephemeral"}')
    assert is_work(b'{"current_state": "queued", "durability": "derived"}')


def _state(phase: str, durability: InputDurability | None = None) -> InputState:
    """A stored input in ``phase`` (the query reads only phase and
    durability, so the rest of the record need not match it)."""
    record = rich_state(phase_steps=1).to_record()
    return InputState.from_record(
        msgspec.structs.replace(
            record, current_state=InputLifecycleState(phase), durability=durability
        )
    )


async def _fill(store: RuntimeStore) -> None:
    rows = {
        "queued": [_state("queued")],
        "staged-and-done": [_state("consumed"), _state("staged")],
        "all-done": [_state("consumed"), _state("abandoned"), _state("superseded")],
        "ephemeral-only": [_state("queued", InputDurability.EPHEMERAL)],
        "derived": [_state("queued", InputDurability.DERIVED)],
    }
    for runtime, states in rows.items():
        for state in states:
            await store.persist_input_state(LogicalRuntimeId(runtime), state)


EXPECTED = ["derived", "queued", "staged-and-done"]


async def _answer(store: RuntimeStore) -> list[str]:
    await _fill(store)
    return [str(rid) for rid in await store.list_runtimes_with_work()]


def test_memory_store_lists_the_runtimes_with_work() -> None:
    assert asyncio.run(_answer(InMemoryRuntimeStore())) == EXPECTED


def test_sqlite_store_lists_the_runtimes_with_work(tmp_path: Path) -> None:
    async def main() -> list[str]:
        async with SqliteRuntimeStore(tmp_path / "w.db") as store:
            return await _answer(store)

    assert asyncio.run(main()) == EXPECTED


def test_sqlite_counts_a_record_that_is_not_json_as_work(tmp_path: Path) -> None:
    async def main() -> list[str]:
        async with SqliteRuntimeStore(tmp_path / "w.db") as store:
            await _fill(store)
            iid = next(
                iter(store.raw_rows(records.INPUTS, LogicalRuntimeId("all-done")))
            )
            store.corrupt_row(
                records.INPUTS, LogicalRuntimeId("all-done"), iid, b"{damaged"
            )
            return [str(rid) for rid in await store.list_runtimes_with_work()]

    assert asyncio.run(main()) == ["all-done", *EXPECTED]


def test_postgres_store_lists_the_runtimes_with_work(
    pg_dsn: str, pg_schema: str
) -> None:
    from meerkat_runtime.store.postgres import PostgresRuntimeStore

    async def main() -> list[str]:
        store = await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema)
        async with store:
            return await _answer(store)

    assert asyncio.run(main()) == EXPECTED


def test_a_store_that_cannot_list_says_so() -> None:
    from meerkat_runtime.testing.faults import FaultyStore

    class Bare(InMemoryRuntimeStore):
        list_runtimes_with_work = RuntimeStore.list_runtimes_with_work

    with pytest.raises(NotImplementedError, match="Bare cannot list its runtimes"):
        asyncio.run(Bare().list_runtimes_with_work())
    assert (
        asyncio.run(FaultyStore(InMemoryRuntimeStore()).list_runtimes_with_work()) == []
    )


async def _unowned(store: RuntimeStore) -> list[str]:
    await _fill(store)
    await store.claim(LogicalRuntimeId("queued"), "someone", 30.0)
    epoch = await store.claim(LogicalRuntimeId("derived"), "someone", 30.0)
    await store.release(LogicalRuntimeId("derived"), "someone", epoch)
    return [str(rid) for rid in await store.list_runtimes_with_work(unowned=True)]


UNOWNED = ["derived", "staged-and-done"]  # "queued" is leased live


def test_unowned_leaves_out_live_leases_in_every_store(
    tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    from meerkat_runtime.store.postgres import PostgresRuntimeStore

    async def main() -> list[list[str]]:
        answers = [await _unowned(InMemoryRuntimeStore())]
        async with SqliteRuntimeStore(tmp_path / "w.db") as lite:
            answers.append(await _unowned(lite))
        async with await PostgresRuntimeStore.open(pg_dsn, schema=pg_schema) as pg:
            answers.append(await _unowned(pg))
        return answers

    assert asyncio.run(main()) == [UNOWNED] * 3
