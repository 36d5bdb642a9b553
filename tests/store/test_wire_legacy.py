"""Files written before the wire alignment still open and recover (PD-23).

``tests/fixtures/legacy/schema2.sqlite`` was written once by the code of
schema 2 (``make_schema2.py`` beside it says how) and is never regenerated:
runtime ``...0001`` applied three inputs, runtime ``...0002`` holds three
queued ones. These tests open a copy with today's code.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from meerkat_runtime import (
    FileBlobStore,
    InputAbandonReason,
    InputId,
    InputLifecycleState,
    InputTerminalOutcome,
    LogicalRuntimeId,
    PromptInput,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.inputs import BlobImage, ImageBlock, TextBlock
from tests.fixtures.legacy.make_schema2 import PIXEL

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
DONE = SessionId("0190a000-0000-7000-8000-000000000001")
PENDING = SessionId("0190a000-0000-7000-8000-000000000002")


def copy_legacy(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy: opening the file may write to it (WAL, recovery)."""
    db = tmp_path / "schema2.sqlite"
    shutil.copyfile(LEGACY / "schema2.sqlite", db)
    blobs = tmp_path / "blobs"
    shutil.copytree(LEGACY / "schema2-blobs", blobs)
    return db, blobs


def test_a_schema2_file_opens_and_recovers(tmp_path: Path) -> None:
    """The queued inputs come back queued with their payloads; the applied
    ones stay consumed."""
    db, blobs = copy_legacy(tmp_path)

    async def run() -> None:
        store = SqliteRuntimeStore(str(db))
        blob_store = FileBlobStore(str(blobs))
        adapter = RuntimeSessionAdapter.persistent(store, blob_store)
        await adapter.register_session(DONE)
        await adapter.register_session(PENDING)
        pending = [InputId(i) for i in EXPECTED["queued"][str(PENDING)]]
        assert await adapter.list_active_inputs(PENDING) == pending
        for n, input_id in enumerate(pending):
            state = await adapter.input_state(PENDING, input_id)
            assert state is not None
            assert state.current_state() is InputLifecycleState.QUEUED
            payload = state.persisted_input
            assert isinstance(payload, PromptInput)
            assert payload.text == f"pending {n}"
            await _assert_the_image_comes_back(payload, blob_store)
        assert await adapter.list_active_inputs(DONE) == []
        for raw in EXPECTED["consumed"][str(DONE)]:
            state = await adapter.input_state(DONE, InputId(raw))
            assert state is not None
            assert state.current_state() is InputLifecycleState.CONSUMED
            assert state.terminal_outcome() == InputTerminalOutcome.Consumed()
        await adapter.close()
        await store.close()

    asyncio.run(run())


async def _assert_the_image_comes_back(
    payload: PromptInput, blob_store: FileBlobStore
) -> None:
    """Schema 2 stored the moved image nested (``data: {source, blob_id}``);
    it reads back as the same image block, and its blob is the pixel."""
    assert payload.blocks is not None
    text, image = payload.blocks
    assert text == TextBlock(text=payload.text)
    assert isinstance(image, ImageBlock)
    assert image.media_type == "image/png"
    assert isinstance(image.data, BlobImage)
    blob = await blob_store.get(image.data.blob_id)
    assert (blob.media_type, blob.data) == ("image/png", PIXEL)


def _stored_blocks(db: Path, input_id: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(db)) as conn:
        (raw,) = conn.execute(
            "SELECT state_json FROM runtime_input_states WHERE input_id = ?",
            (input_id,),
        ).fetchone()
    blocks: list[dict[str, Any]] = json.loads(raw)["persisted_input"]["blocks"]
    return blocks


def test_an_old_image_block_is_read_and_written_back_flat(tmp_path: Path) -> None:
    """PD-23 and T-19: the nested image of a schema-2 record is written
    back in upstream's flat form the next time the record is stored."""
    db, _ = copy_legacy(tmp_path)
    queued = EXPECTED["queued"][str(PENDING)][0]
    old_image = _stored_blocks(db, queued)[1]
    assert old_image["data"]["source"] == "blob"  # the fixture's nested form

    async def run() -> None:
        store = SqliteRuntimeStore(str(db))
        state = await store.load_input_state(
            LogicalRuntimeId(str(PENDING)), InputId(queued)
        )
        assert state is not None
        await store.persist_input_state(LogicalRuntimeId(str(PENDING)), state)
        await store.close()

    asyncio.run(run())
    assert _stored_blocks(db, queued) == [
        {"type": "text", "text": "pending 0"},
        {
            "type": "image",
            "media_type": "image/png",
            "source": "blob",
            "blob_id": old_image["data"]["blob_id"],
        },
    ]


def _abandon_in_the_old_form(db: Path, input_id: str) -> None:
    """Rewrite one queued record as schema 2 wrote an input abandoned for
    exhausted attempts: the reason tagged by ``reason_type``."""
    with closing(sqlite3.connect(db)) as conn, conn:
        (raw,) = conn.execute(
            "SELECT state_json FROM runtime_input_states WHERE input_id = ?",
            (input_id,),
        ).fetchone()
        record = json.loads(raw)
        record["current_state"] = "abandoned"
        record["terminal_outcome"] = {
            "outcome_type": "abandoned",
            "reason": {"reason_type": "max_attempts_exhausted", "attempts": 3},
        }
        conn.execute(
            "UPDATE runtime_input_states SET state_json = ? WHERE input_id = ?",
            (json.dumps(record).encode(), input_id),
        )


def _stored_reason(db: Path, input_id: str) -> object:
    with closing(sqlite3.connect(db)) as conn:
        (raw,) = conn.execute(
            "SELECT state_json FROM runtime_input_states WHERE input_id = ?",
            (input_id,),
        ).fetchone()
    return json.loads(raw)["terminal_outcome"]["reason"]


def test_an_old_abandon_reason_is_read_and_written_back_in_the_new_form(
    tmp_path: Path,
) -> None:
    """PD-23: ``{"reason_type": ...}`` decodes to the same reason; the next
    write of that record uses upstream's form (L-12)."""
    db, blobs = copy_legacy(tmp_path)
    old = EXPECTED["queued"][str(PENDING)][0]
    _abandon_in_the_old_form(db, old)

    async def run() -> None:
        store = SqliteRuntimeStore(str(db))
        adapter = RuntimeSessionAdapter.persistent(store, FileBlobStore(str(blobs)))
        await adapter.register_session(PENDING)
        state = await adapter.input_state(PENDING, InputId(old))
        assert state is not None
        assert state.terminal_outcome() == InputTerminalOutcome.Abandoned(
            reason=InputAbandonReason.MaxAttemptsExhausted(attempts=3)
        )
        await store.persist_input_state(LogicalRuntimeId(str(PENDING)), state)
        await adapter.close()
        await store.close()

    asyncio.run(run())
    assert _stored_reason(db, old) == {"max_attempts_exhausted": {"attempts": 3}}
