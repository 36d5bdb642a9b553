"""Durable acknowledgements per second on PostgreSQL, beside raw psycopg.

All on one throwaway server (``meerkat_runtime.testing.postgres_server``:
a Unix socket, ``fsync`` on) in one run. For 1, 4, 16 and 64 concurrent
sessions:

* **meerkat**: each session is a ``PersistentRuntimeDriver`` of its own
  runtime on one shared ``PostgresRuntimeStore``, accepting prompts; a
  prompt counts once ``accept_input`` returned (it is committed).
* **raw**: as many psycopg connections, each inserting one row of the same
  size per autocommit statement: what an application gets without us.

Goals: at least 0.85x raw with 1 and 4 sessions; above raw with 16 and 64
(concurrent acknowledgements share commits, PD-53).

``python bench/postgres.py [--quick] [--seconds S]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from goals import goal

from meerkat_runtime import InputHeader, LogicalRuntimeId, PromptInput
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.testing.postgres_server import ThrowawayPostgres

CONCURRENCY = (1, 4, 16, 64)
RATIO_GOALS = {1: 0.85, 4: 0.85, 16: 1.0, 64: 1.0}
TEXT = "x" * 200  # the prompt's text; the raw row carries a record as large


async def timed(
    workers: Sequence[Callable[[], Awaitable[None]]], seconds: float
) -> float:
    """Operations per second: every worker repeats its operation until the
    time is up; each finished operation counts."""
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(operation: Callable[[], Awaitable[None]]) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await operation()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*[loop(op) for op in workers])
    return done / (time.perf_counter() - start)


async def meerkat(dsn: str, sessions: int, seconds: float) -> tuple[float, int]:
    store = await PostgresRuntimeStore.open(
        dsn, schema=f"bench_{sessions}", pool_size=min(sessions, 8)
    )
    drivers = []
    for n in range(sessions):
        driver = PersistentRuntimeDriver(
            LogicalRuntimeId(f"s{n}"), store, MemoryBlobStore()
        )
        await driver.recover()
        drivers.append(driver)

    def accept(driver: PersistentRuntimeDriver) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            await driver.accept_input(PromptInput(header=InputHeader.new(), text=TEXT))

        return once

    commits = store.commits
    rate = await timed([accept(d) for d in drivers], seconds)
    commits = store.commits - commits
    await store.close()
    return rate, commits


async def raw(dsn: str, sessions: int, seconds: float) -> float:
    conns: list[psycopg.AsyncConnection[Any]] = [
        await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        for _ in range(sessions)
    ]
    await conns[0].execute(
        f"CREATE TABLE IF NOT EXISTS raw_{sessions} (id bigserial PRIMARY KEY, v bytea)"
    )
    row = b"x" * 700  # about a prompt's stored record

    def insert(conn: psycopg.AsyncConnection[Any]) -> Callable[[], Awaitable[None]]:
        sql = f"INSERT INTO raw_{sessions} (v) VALUES (%s)"

        async def once() -> None:
            await conn.execute(sql, (row,))

        return once

    rate = await timed([insert(c) for c in conns], seconds)
    for conn in conns:
        await conn.close()
    return rate


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else args.seconds
    with ThrowawayPostgres() as server:
        print(f"one throwaway PostgreSQL (fsync on, unix socket); {seconds:g}s each")
        print(
            f"{'sessions':>8} {'raw/s':>9} {'meerkat/s':>10} {'ratio':>6} {'commits':>8}"
        )
        verdicts = []
        for sessions in CONCURRENCY:
            raw_rate = asyncio.run(raw(server.dsn, sessions, seconds))
            rate, commits = asyncio.run(meerkat(server.dsn, sessions, seconds))
            ratio = rate / raw_rate
            print(
                f"{sessions:>8} {raw_rate:>9,.0f} {rate:>10,.0f} {ratio:>5.2f}x {commits:>8,}"
            )
            target = RATIO_GOALS[sessions]
            name = f"{sessions} sessions durable acks"
            verdicts.append(goal(name, ratio, target, unit="x", of="raw psycopg"))
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
