"""``inspect`` shows each runtime's owner, epoch and expiry (PD-36)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from meerkat_runtime import RuntimeSessionAdapter, SessionId, SqliteRuntimeStore
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.inspection import load_database, runtimes_table, to_json
from tests.sessions.helpers import prompt


def test_inspect_shows_the_owner_epoch_and_expiry(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    held, released = SessionId("held"), SessionId("released")

    async def body() -> None:
        async with SqliteRuntimeStore(path) as store:
            adapter = RuntimeSessionAdapter.persistent(
                store, MemoryBlobStore(), owner="worker-7"
            )
            for sid in (held, released):
                await adapter.register_session(sid)
                await adapter.accept_input(sid, prompt())
            await adapter.unregister_session(released)

    asyncio.run(body())
    views = {v.runtime_id: v for v in load_database(path)}
    lease = views["held"].lease
    assert lease is not None
    assert (lease.owner, lease.epoch, lease.released) == ("worker-7", 1, False)
    gone = views["released"].lease
    assert gone is not None
    assert gone.released
    runtimes = {
        r["runtime_id"]: r for r in to_json(path, list(views.values()))["runtimes"]
    }
    assert runtimes["held"]["lease"]["owner"] == "worker-7"
    assert runtimes["held"]["lease"]["expires_at"] == lease.expires_at
    console = Console(width=200, record=True)
    console.print(runtimes_table(list(views.values())))
    text = console.export_text()
    assert "worker-7 (epoch 1" in text
    assert "released by worker-7" in text
