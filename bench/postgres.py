"""Durable acknowledgements per second on PostgreSQL, beside raw psycopg
and, when installed, the peers.

All on one throwaway server (``meerkat_runtime.testing.postgres_server``:
a Unix socket, ``fsync`` on) in one run. For 1, 4, 16 and 64 concurrent
sessions:

* **meerkat**: each session is a ``PersistentRuntimeDriver`` of its own
  runtime on one shared ``PostgresRuntimeStore``, accepting prompts; a
  prompt counts once ``accept_input`` returned (it is committed).
* **raw**: as many psycopg connections, each inserting one row of the same
  size per autocommit statement: what an application gets without us.
* **peers** (the ``bench`` extra; "not installed" otherwise): LangGraph's
  ``PostgresSaver.put`` and DBOS's queue enqueue (``postgres_peers``).

raw and meerkat take turns, ``--rounds`` times each; the ratio is the
median of the rounds' ratios, so a burst of load from elsewhere on the
machine spoils one round, not the verdict. Before the table, the protocol
messages one acknowledgement costs (libpq's trace of the store's
connection): statements executed, and round trips (each time the client,
having sent, waits for the server's answer).

Goals: at least 0.85x raw with 1 and 4 sessions; above raw with 16 and 64
(concurrent acknowledgements share commits, PD-53, PD-57).

``python bench/postgres.py [--quick] [--seconds S] [--rounds R]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from goals import goal
from postgres_peers import PEERS, installed, peer_rate
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

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


async def meerkat(
    dsn: str, sessions: int, seconds: float, schema: str
) -> tuple[float, int]:
    store = await PostgresRuntimeStore.open(
        dsn, schema=schema, pool_size=min(sessions, 8)
    )
    drivers = [await _driver(store, n) for n in range(sessions)]

    def accept(driver: PersistentRuntimeDriver) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            await driver.accept_input(PromptInput(header=InputHeader.new(), text=TEXT))

        return once

    commits = store.commits
    rate = await timed([accept(d) for d in drivers], seconds)
    commits = store.commits - commits
    await store.close()
    return rate, commits


async def _driver(
    store: PostgresRuntimeStore, n: int, owner: str | None = None
) -> PersistentRuntimeDriver:
    runtime = LogicalRuntimeId(f"s{n}")
    if owner is not None:  # an owner's writes are fenced by its epoch
        epoch = await store.claim(runtime, owner)
        view = store.fenced(runtime, epoch)
    driver = PersistentRuntimeDriver(
        runtime, view if owner else store, MemoryBlobStore()
    )
    await driver.recover()
    return driver


async def protocol(dsn: str, owner: str | None, count: int = 50) -> Counter[str]:
    """Protocol messages the client sent per acknowledgement (one session,
    after a warm-up), read from libpq's trace of the store's connection."""
    traced: list[psycopg.AsyncConnection[Any]] = []

    async def keep(conn: psycopg.AsyncConnection[Any]) -> None:
        traced.append(conn)

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True},
        configure=keep,
        open=False,
    )
    await pool.open(wait=True)
    schema = f"bench_trace_{'fenced' if owner else 'plain'}"
    store = await PostgresRuntimeStore.open(pool, schema=schema)
    driver = await _driver(store, 0, owner)
    prompt = PromptInput
    for _ in range(10):  # statements get prepared, marks made
        await driver.accept_input(prompt(header=InputHeader.new(), text=TEXT))
    sent: Counter[str] = Counter()
    with tempfile.TemporaryFile("w+") as trace:
        [conn] = traced
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        for _ in range(count):
            await driver.accept_input(prompt(header=InputHeader.new(), text=TEXT))
        conn.pgconn.untrace()
        trace.seek(0)
        last = ""
        for line in trace:
            words = line.split()
            if len(words) < 3:
                continue
            if words[0] == "F":
                sent[words[2]] += 1
            elif last == "F":  # the client sent, then waited for answers
                sent["round trips"] += 1
            last = words[0]
    await store.close()
    await pool.close()
    return Counter({kind: round(n / count) for kind, n in sent.items()})


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
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns of raw and meerkat"
    )
    args = parser.parse_args(argv)
    seconds, rounds = (0.3, 1) if args.quick else (args.seconds, args.rounds)
    peers = [p for p in PEERS if installed(p)]
    with ThrowawayPostgres() as server:
        print(
            f"one throwaway PostgreSQL (fsync on, unix socket); {seconds:g}s each, "
            f"{rounds} round(s), median ratio"
        )
        for owner, kind in ((None, "no owner"), ("bench-owner", "owner, fenced")):
            sent = asyncio.run(protocol(server.dsn, owner))
            trips = sent.pop("round trips")
            print(
                f"one acknowledgement ({kind}): {sent['Execute']} statement(s), "
                f"{trips} round trip(s); sent {_messages(sent)}"
            )
        for peer in PEERS:
            if peer not in peers:
                print(f"{peer}: not installed (pip install 'meerkat-runtime[bench]')")
        header = f"{'sessions':>8} {'raw/s':>9} {'meerkat/s':>10} {'ratio':>6} {'commits':>8}"
        print(
            header + "".join(f" {p + '/s':>12} {'÷raw':>5} {'÷mk':>5}" for p in peers)
        )
        verdicts = []
        for sessions in CONCURRENCY:
            raws, ours, ratios, commits = [], [], [], 0
            for turn in range(rounds):
                raws.append(asyncio.run(raw(server.dsn, sessions, seconds)))
                schema = f"bench_{sessions}_{turn}"
                rate, made = asyncio.run(meerkat(server.dsn, sessions, seconds, schema))
                ours.append(rate)
                ratios.append(rate / raws[-1])
                commits += made
            raw_rate, rate = statistics.median(raws), statistics.median(ours)
            ratio = statistics.median(ratios)
            line = f"{sessions:>8} {raw_rate:>9,.0f} {rate:>10,.0f} {ratio:>5.2f}x {commits // rounds:>8,}"
            for peer in peers:
                theirs = peer_rate(peer, server.dsn, sessions, seconds)
                line += f" {theirs:>12,.0f} {theirs / raw_rate:>4.2f}x {theirs / rate:>4.2f}x"
            print(line)
            target = RATIO_GOALS[sessions]
            name = f"{sessions} sessions durable acks"
            verdicts.append(goal(name, ratio, target, unit="x", of="raw psycopg"))
    for line in verdicts:
        print(line)


def _messages(sent: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(sent.items()))


if __name__ == "__main__":
    main()
