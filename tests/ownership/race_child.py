"""A worker process for the ownership race: ``python -m
tests.ownership.race_child TARGET OWNER`` (TARGET as for
``tests.stateful.kill_child``: a SQLite path or ``postgres:<schema>:<dsn>``). It registers the session "raced" and
prints ``won`` or ``owned <holder>``; a winner then holds the runtime until
its stdin closes."""

from __future__ import annotations

import asyncio
import sys

from meerkat_runtime import RuntimeOwnedError, RuntimeSessionAdapter, SessionId
from meerkat_runtime.blobs import MemoryBlobStore
from tests.stateful.kill_child import open_target


async def main(target: str, owner: str) -> None:
    store = open_target(target)
    adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore(), owner=owner)
    try:
        await adapter.register_session(SessionId("raced"))
    except RuntimeOwnedError as refused:
        print(f"owned {refused.owner}", flush=True)
    else:
        print("won", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # hold until the parent says
    await adapter.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
