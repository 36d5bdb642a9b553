"""``inspect`` shows per runtime how many inputs wait in its inbox (PD-58):
submitted by a process that does not own the runtime, not yet admitted by
its owner. A runtime nobody has registered yet, with only inbox entries, is
listed too; admitted or settled entries are not counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.cli import main
from meerkat_runtime.ids import SessionId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
from meerkat_runtime.sessions.submitter import RuntimeSubmitter
from meerkat_runtime.store.base import RuntimeStore
from tests.store.postgres import dsn_url

WAITING = SessionId("waiting")  # never registered: inbox entries only
OWNED = SessionId("owned")  # registered; its inbox admitted at registration


async def _fill(store: RuntimeStore) -> None:
    submitter = RuntimeSubmitter(store)
    adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore(), owner="o")
    try:
        for n in range(3):
            await submitter.submit(WAITING, PromptInput.new(f"w{n}"))
        await submitter.submit(OWNED, PromptInput.new("admitted"))
        await adapter.register_session(OWNED)  # admits its one entry
        await adapter.accept_input(OWNED, PromptInput.new("direct"))
    finally:
        await adapter.close()
        await submitter.close()
        await store.close()


def _inspected(target: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["inspect", "--json", *target]) == 0
    data = json.loads(capsys.readouterr().out)
    return {r["runtime_id"]: r for r in data["runtimes"]}


def _check(runtimes: dict[str, Any]) -> None:
    assert set(runtimes) == {"waiting", "owned"}
    assert runtimes["waiting"]["inbox_pending"] == 3
    assert runtimes["waiting"]["input_count"] == 0
    assert runtimes["owned"]["inbox_pending"] == 0
    assert runtimes["owned"]["input_count"] == 2


def _run(opener: Callable[[], Awaitable[RuntimeStore]]) -> None:
    async def go() -> None:
        await _fill(await opener())

    asyncio.run(go())


def test_inspect_counts_pending_inbox_entries_in_a_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meerkat_runtime.store.sqlite import SqliteRuntimeStore

    path = tmp_path / "inbox.db"
    _run(lambda: SqliteRuntimeStore.open(path))
    _check(_inspected([str(path)], capsys))
    assert main(["inspect", str(path)]) == 0
    table = capsys.readouterr().out
    assert "inbox" in table


def test_inspect_counts_pending_inbox_entries_in_postgresql(
    pg_dsn: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from meerkat_runtime.store.postgres import PostgresRuntimeStore

    _run(lambda: PostgresRuntimeStore.open(pg_dsn, schema=pg_schema))
    _check(_inspected([dsn_url(pg_dsn), "--schema", pg_schema], capsys))
