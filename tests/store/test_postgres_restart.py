"""The PostgreSQL server restarts under load (``pg_ctl restart -m
immediate``: every backend killed, crash recovery from the WAL): nothing
acknowledged is lost, nothing is applied twice, and the store reconnects by
itself (no caller sees an error: PD-52).

The server is a throwaway one of this test's own (it must be restarted),
also when ``MEERKAT_TEST_PG_DSN`` names another.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from meerkat_runtime import (
    InputHeader,
    LogicalRuntimeId,
    PromptInput,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.testing.postgres_server import ThrowawayPostgres
from tests.stateful.kill_child import run_once

SESSIONS = 8
BEFORE = 150  # acknowledgements before the restart
AFTER = 150  # and after it


@dataclass
class Tally:
    acked: dict[str, set[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    restarted: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self) -> int:
        return sum(len(ids) for ids in self.acked.values())


async def session(
    store: PostgresRuntimeStore, rid: LogicalRuntimeId, tally: Tally
) -> None:
    """Accept inputs and apply them in runs, until told to stop."""
    driver = PersistentRuntimeDriver(rid, store, MemoryBlobStore())
    await driver.recover()
    acked = tally.acked.setdefault(str(rid), set())
    while not tally.stop.is_set():
        try:
            for _ in range(2):
                prompt = PromptInput(header=InputHeader.new(), text="hello")
                await driver.accept_input(prompt)
                acked.add(str(prompt.id()))
                tally.progress.set()
            await run_once(driver)  # (prints its DONE line: captured)
        except Exception as exc:  # counted: the store should hide the restart
            tally.errors.append(f"{rid}: {type(exc).__name__}: {exc}")
            return


async def until(tally: Tally, total: int) -> None:
    while tally.count() < total:
        tally.progress.clear()
        await tally.progress.wait()


async def problems_in(store: PostgresRuntimeStore, tally: Tally) -> list[str]:
    found: list[str] = []
    for rid, acked in tally.acked.items():
        runtime = LogicalRuntimeId(rid)
        states = {str(s.input_id): s for s in await store.load_input_states(runtime)}
        found += [f"acknowledged {i} lost" for i in sorted(acked - states.keys())]
        named = [
            str(i)
            for r in await store.load_boundary_receipts(runtime)
            for i in r.contributing_input_ids
        ]
        found += [
            f"{i} applied twice"
            for i in sorted({i for i in named if named.count(i) > 1})
        ]
        found += [
            f"{i} consumed without a receipt"
            for i, s in states.items()
            if s.current_state() is InputLifecycleState.CONSUMED and i not in named
        ]
    return found


def test_an_immediate_server_restart_under_load_loses_nothing_and_reconnects() -> None:
    with ThrowawayPostgres() as server:

        async def main() -> tuple[Tally, list[str], dict[str, int]]:
            tally = Tally()
            store = await PostgresRuntimeStore.open(server.dsn, schema="restart")
            sessions = [
                asyncio.create_task(session(store, LogicalRuntimeId(f"r{n}"), tally))
                for n in range(SESSIONS)
            ]
            await until(tally, BEFORE)
            await asyncio.to_thread(server.restart_immediate)  # sessions go on
            at_restart = tally.count()
            await until(tally, at_restart + AFTER)
            tally.stop.set()
            await asyncio.gather(*sessions)
            recoveries = dict(store.recoveries)
            await store.close()
            # A new store object reads what the server kept.
            reader = await PostgresRuntimeStore.open(server.dsn, schema="restart")
            try:
                return tally, await problems_in(reader, tally), recoveries
            finally:
                await reader.close()

        tally, problems, recoveries = asyncio.run(main())
    print(
        f"acknowledged={tally.count()} errors={len(tally.errors)} "
        f"problems={len(problems)} recoveries={recoveries}"
    )
    assert recoveries.get("writes tried again", 0) > 0, "the restart was never felt"
    assert tally.errors == []
    assert problems == []
    assert tally.count() >= BEFORE + AFTER
