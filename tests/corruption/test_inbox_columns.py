"""PD-72: an inbox row's unchecksummed columns (``pending``, the
idempotency key) must agree with its checksummed record. One flipped bit
in ``pending`` once hid an acknowledged entry from its owner: the poll
skipped it, its completion never resolved, and nothing reported it. Now the
owner's recovery and ``audit`` read every row of the inbox and fail closed,
naming the entry."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from meerkat_runtime import LogicalRuntimeId
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.cli import main
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import MeerkatError
from meerkat_runtime.inputs import Input
from meerkat_runtime.store import RuntimeStore, SqliteRuntimeStore
from meerkat_runtime.store.base import CorruptError
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from tests.corruption.damage import prompt
from tests.store.postgres import drop_schema, dsn_url, new_schema, server_dsn

RID = LogicalRuntimeId("victim")
SETTLE_MIDDLE = "UPDATE {table} SET pending = {false} WHERE input_id = {iid}"
REKEY_MIDDLE = "UPDATE {table} SET idempotency_key = 'other' WHERE input_id = {iid}"
# The record itself: its checksum fails (what the store already refused).
DAMAGE_RECORD = "UPDATE {table} SET entry_json = {damaged} WHERE input_id = {iid}"
SQLITE_DAMAGED = "CAST(replace(CAST(entry_json AS TEXT), 'm1', 'm7') AS BLOB)"
POSTGRES_DAMAGED = "set_byte(entry_json, 20, get_byte(entry_json, 20) # 1)"
DAMAGES = [SETTLE_MIDDLE, REKEY_MIDDLE, DAMAGE_RECORD]
NAMES = ["pending-flipped", "key-changed", "record-damaged"]


async def submit_three(store: RuntimeStore) -> list[Input]:
    inputs: list[Input] = [prompt(f"m{i}") for i in range(3)]
    for inp in inputs:
        await store.submit_to_inbox(RID, inp)
    return inputs


def assert_names_the_entry(error: BaseException | str, inp: Input) -> None:
    message = str(error)
    assert "corrupt record in runtime_inbox" in message
    assert f"runtime {str(RID)!r}" in message
    assert f"inbox entry {str(inp.id())!r}" in message


def check_audit_names_it(
    target: list[str], inp: Input, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["audit", *target]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert_names_the_entry(err, inp)


async def check_damage_is_found(store: RuntimeStore, inp: Input) -> None:
    with pytest.raises(CorruptError) as failure:
        await store.load_whole_inbox(RID)
    assert_names_the_entry(failure.value, inp)
    driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
    with pytest.raises(MeerkatError) as recovered:
        await driver.recover()
    assert_names_the_entry(recovered.value, inp)


@pytest.mark.parametrize("damage", DAMAGES, ids=NAMES)
def test_a_damaged_inbox_row_fails_recovery_and_audit_sqlite(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "victim.db"

    async def submit() -> Input:
        async with SqliteRuntimeStore(db) as store:
            return (await submit_three(store))[1]

    middle = asyncio.run(submit())
    assert main(["audit", str(db)]) == 0
    with sqlite3.connect(db) as conn:
        conn.execute(
            damage.format(
                table="runtime_inbox", false=0, iid="?", damaged=SQLITE_DAMAGED
            ),
            (str(middle.id()),),
        )
    check_audit_names_it([str(db)], middle, capsys)

    async def recover() -> None:
        async with SqliteRuntimeStore(db) as store:
            await check_damage_is_found(store, middle)

    asyncio.run(recover())


@pytest.mark.parametrize("damage", DAMAGES, ids=NAMES)
def test_a_damaged_inbox_row_fails_recovery_and_audit_postgres(
    damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = new_schema()
    target = [dsn_url(server_dsn()), "--schema", schema]

    async def body(work: Callable[[PostgresRuntimeStore], Awaitable[None]]) -> None:
        store = await PostgresRuntimeStore.open(server_dsn(), schema=schema)
        try:
            await work(store)
        finally:
            await store.close()

    try:
        inputs: list[Input] = []

        async def submit(store: PostgresRuntimeStore) -> None:
            inputs.extend(await submit_three(store))

        asyncio.run(body(submit))
        middle = inputs[1]
        assert main(["audit", *target]) == 0
        with psycopg.connect(server_dsn(), autocommit=True) as conn:
            table = f'"{schema}".runtime_inbox'
            conn.execute(
                damage.format(
                    table=table, false="false", iid="%s", damaged=POSTGRES_DAMAGED
                ),
                (str(middle.id()),),
            )
        check_audit_names_it(target, middle, capsys)

        async def check(store: PostgresRuntimeStore) -> None:
            await check_damage_is_found(store, middle)

        asyncio.run(body(check))
    finally:
        drop_schema(schema)
