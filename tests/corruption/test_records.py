"""Issue 12 item 4: one damaged byte must never lose an acknowledged input
without an error. Each test here passed silently on the code before
records were framed, decoded strictly and counted by a second path."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from meerkat_runtime import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.cli import main
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.errors import InternalError
from meerkat_runtime.input_state import InputState
from meerkat_runtime.store import (
    InMemoryRuntimeStore,
    RuntimeStore,
    SqliteRuntimeStore,
    records,
)
from meerkat_runtime.store.base import CorruptError, ReadFailedError
from meerkat_runtime.store.verify import verify
from tests.corruption.damage import PER_RUNTIME, RUNTIMES, build, prompt, receipt

RID = LogicalRuntimeId("victim")
INDEX = "sqlite_autoindex_runtime_input_states_1"
ARRIVAL_INDEX = "runtime_input_arrival"


def flipped(data: bytes, offset: int, bit: int = 0) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 1 << bit
    return bytes(damaged)


def bare_json(stored: bytes) -> bytes:
    """A stored record as written before records were framed."""
    return stored.rstrip(b" \t\n\r")  # without the checksum suffix


@pytest.fixture(params=["memory", "sqlite"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], RuntimeStore]:
    if request.param == "memory":
        return InMemoryRuntimeStore
    return lambda: SqliteRuntimeStore(tmp_path / "victim.db")


@pytest.mark.parametrize("framed", [False, True], ids=["before-framing", "framed"])
def test_a_flipped_bit_in_the_payload_key_fails_recovery_and_changes_nothing(
    make_store: Callable[[], RuntimeStore], framed: bool
) -> None:
    """(a) "persisted_input" with one bit flipped was an unknown key the
    decoder skipped: recovery abandoned the input as payload-less and wrote
    that back. Now the read fails naming table, runtime and input, and the
    store keeps exactly what it held."""

    async def body() -> None:
        store = make_store()
        try:
            inp = prompt("keep me")
            driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
            assert (await driver.accept_input(inp)).is_accepted()
            raw = store.raw_rows(records.INPUTS, RID)[str(inp.id())]  # type: ignore[attr-defined]
            data = raw if framed else bare_json(raw)
            at = data.index(b'"persisted_input"') + len('"persisted_inpu')
            store.corrupt_row(records.INPUTS, RID, str(inp.id()), flipped(data, at))  # type: ignore[attr-defined]
            before = store.raw_rows(records.INPUTS, RID)  # type: ignore[attr-defined]
            restarted = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
            with pytest.raises(InternalError) as failure:
                await restarted.recover()
            message = str(failure.value)
            assert f"corrupt record in {records.INPUTS}" in message
            assert f"runtime {str(RID)!r}" in message
            assert str(inp.id()) in message
            assert store.raw_rows(records.INPUTS, RID) == before  # type: ignore[attr-defined]
            assert restarted.input_state(inp.id()) is None
        finally:
            await store.close()

    asyncio.run(body())


def test_every_single_bit_flip_in_a_stored_record_is_a_named_read_failure() -> None:
    """The checksum frame: whatever bit of an input record or a receipt is
    flipped (frame, checksum, key or value), reading it fails naming it."""
    state = InputState.new_accepted(InputId.new())
    state.persisted_input = prompt("a payload with some text")
    run_id = RunId.new()
    cases = [
        (records.INPUTS, str(state.input_id), records.input_row(state)[1]),
        (
            records.RECEIPTS,
            f"{run_id}/0",
            records.encode_receipt(receipt(run_id, [state.input_id])),
        ),
    ]
    for table, record_id, stored in cases:
        read = (
            records.decode_state if table == records.INPUTS else records.decode_receipt
        )
        read(str(RID), record_id, stored)  # undamaged: reads
        for offset in range(len(stored)):
            for bit in range(8):
                with pytest.raises(ReadFailedError) as failure:
                    read(str(RID), record_id, flipped(stored, offset, bit))
                assert f"corrupt record in {table}" in str(failure.value)
                assert record_id in str(failure.value)


def test_records_written_before_framing_still_read() -> None:
    state = InputState.new_accepted(InputId.new())
    state.persisted_input = prompt("old")
    run_id = RunId.new()
    old_receipt = receipt(run_id, [state.input_id])
    old_state = bare_json(records.input_row(state)[1])
    old_receipt_json = bare_json(records.encode_receipt(old_receipt))
    assert records.decode_state(str(RID), str(state.input_id), old_state) == state
    decoded = records.decode_receipt(str(RID), f"{run_id}/0", old_receipt_json)
    assert decoded == old_receipt
    assert records.decode_phase(str(RID), b'"idle"').value == "idle"


def damage_index_entry(
    path: Path, runtime_id: str, entry: int, index: str = INDEX
) -> None:
    """Flip one bit in the runtime id of the ``entry``-th entry of ``index``
    for ``runtime_id``: a scan of that index stops there, and quick_check
    sees nothing. (Entries sort by the bytes after the runtime id: the input
    id in the primary key, a one-byte arrival number below 128 in the other.)"""
    conn = sqlite3.connect(path)
    try:
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        pages = [
            page
            for (page,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' "
                "ORDER BY pageno",
                (index,),
            )
        ]
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    hits: list[int] = []
    for page in pages:
        start = (page - 1) * page_size
        at = start
        while (at := data.find(runtime_id.encode(), at, start + page_size)) != -1:
            hits.append(at)
            at += 1
    hits.sort(key=lambda at: data[at + len(runtime_id) : at + len(runtime_id) + 36])
    victim = hits[entry] + len(runtime_id) - 1  # its last character: "a" -> "c"
    data[victim] ^= 0b10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("index", [INDEX, ARRIVAL_INDEX])
def test_a_damaged_index_entry_is_caught_by_load_verify_and_inspect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], index: str
) -> None:
    """(b) One byte of the primary-key index: the load returned 17 of 30
    inputs, ``inspect`` exited 0 and quick_check said ok. The rows are now
    counted again by a table scan and through the primary key: load, verify
    and inspect all fail, whichever index (the primary key, or the arrival
    index the load walks, PD-42) is damaged."""
    path = tmp_path / "indexed.db"
    build(path)
    runtime_id = str(RUNTIMES[0])
    damage_index_entry(path, runtime_id, 17, index)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        hidden = conn.execute(
            f"SELECT count(*) FROM runtime_input_states INDEXED BY {index} "
            "WHERE runtime_id = ?",
            (runtime_id,),
        ).fetchone()
        assert hidden == (17,)  # what that index alone sees

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            for read in (
                store.load_input_states(RUNTIMES[0]),
                verify(store, RUNTIMES[0]),
            ):
                with pytest.raises(ReadFailedError) as failure:
                    await read
                message = str(failure.value)
                assert f"runtime {runtime_id!r}" in message
                assert records.INPUTS in message
                assert (
                    f"found 17 input rows but the table holds {PER_RUNTIME}" in message
                )
            assert len(await store.load_input_states(RUNTIMES[1])) == PER_RUNTIME

    asyncio.run(body())
    assert main(["inspect", str(path)]) != 0
    err = capsys.readouterr().err
    assert "the table holds 30" in err


@pytest.mark.parametrize(
    ("table", "column", "load"),
    [
        (records.INPUTS, "input_id", "load_input_states"),
        (records.RECEIPTS, "run_id", "load_boundary_receipts"),
        ("runtime_leases", "owner", "load_leases"),
    ],
)
def test_stored_text_that_is_not_utf8_is_corrupt_naming_its_column(
    tmp_path: Path, table: str, column: str, load: str
) -> None:
    """sqlite3 reports undecodable text as a plain OperationalError with no
    result code: it was a ReadFailed, as if reading could succeed later."""

    async def body() -> None:
        path = tmp_path / "text.db"
        store = SqliteRuntimeStore(path)
        inp = prompt("keep me")
        driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
        assert (await driver.accept_input(inp)).is_accepted()
        await store.atomic_apply(RID, None, receipt(RunId.new(), [inp.id()]), [])
        await store.claim(RID, "owner")
        await store.close()
        with sqlite3.connect(path) as conn:
            conn.execute(f"UPDATE {table} SET {column} = CAST(X'ff41' AS TEXT)")
        conn.close()
        reopened = SqliteRuntimeStore(path)
        try:
            call = getattr(reopened, load)
            with pytest.raises(CorruptError, match=f"column {column} holds text"):
                await (call() if load == "load_leases" else call(RID))
        finally:
            await reopened.close()

    asyncio.run(body())
