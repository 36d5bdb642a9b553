"""Child process for test_sqlite_errors_and_closing: one thread commits big writes inline
on its own event loop while the main thread closes the store. It prints how
the writes ended; a crash (the defect) kills the process instead."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

from meerkat_runtime import LogicalRuntimeId, PromptInput, RuntimeState
from meerkat_runtime.input_state import InputState
from meerkat_runtime.store import SqliteRuntimeStore
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.store.sqlite_writer import SOLO_STREAK

RID = LogicalRuntimeId("close-race")


def big_state(i: int) -> InputState:
    prompt = PromptInput.new(f"{i} " + "x" * (2 << 20))
    state = InputState.new_accepted(prompt.id())
    state.persisted_input = prompt
    return state


def main(path: str) -> None:
    store = SqliteRuntimeStore(Path(path))
    states = [big_state(i) for i in range(40)]
    outcomes: list[str] = []
    started = threading.Event()

    async def writer() -> None:
        for _ in range(SOLO_STREAK + 2):  # alone long enough to commit inline
            await store.persist_runtime_state(RID, RuntimeState.IDLE)
        started.set()
        for _ in range(5):
            try:
                await store.atomic_lifecycle_commit(RID, RuntimeState.IDLE, states)
                outcomes.append("committed")
            except RuntimeStoreError as exc:
                outcomes.append(f"refused: {exc}")

    thread = threading.Thread(target=lambda: asyncio.run(writer()))
    thread.start()
    started.wait()
    time.sleep(0.02)
    asyncio.run(store.close())
    thread.join()
    print(" | ".join(outcomes))


if __name__ == "__main__":
    main(sys.argv[1])
