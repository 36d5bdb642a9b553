"""Benchmark: the SQLite store's group commit against a minimal one, and
accept latency under load.

Theory of operation: every figure writes the same 1.5 KB prompt rows to a
fresh SQLite file (WAL, ``synchronous=FULL``) on the same file system, in
interleaved rounds (best of several), so ratios hold on a noisy machine:

* **meerkat, 64 sessions**: 64 ``PersistentRuntimeDriver``s on one
  ``SqliteRuntimeStore``, each awaiting its accepts one after the other,
  all 64 under ``asyncio.gather``.
* **raw group-commit writer**: the least a group commit in plain Python
  does. 64 asyncio tasks hand pre-encoded rows to one writer thread, which
  takes every row waiting, inserts them in one transaction, commits, and
  wakes the tasks (one ``call_soon_threadsafe`` per group). No driver, no
  encoding, no store.
* **floors** (``durable_floors``): the in-memory driver's decision, the
  store's encoding and plain sqlite3 on one thread, for 64 sessions (a
  perfect group of 64 per transaction) and for one caller.
* **meerkat, one caller**: sequential ``await accept_input``.

Then, in a separate pass of the 64-session load (so its probes do not
slow the timed rounds), each accept's latency (from the call to its
acknowledgement) and the event loop's longest stall: a monitor task sleeps
1 ms again and again and records how late it wakes.

Run with ``.venv/bin/python bench/group_commit.py`` (``--quick`` for small
sizes, ``--dir`` for the file system to measure, ``--profile`` for a
cProfile of the 64-session figure, main thread and writer thread).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import queue
import sqlite3
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from durable import (
    durable_sessions,
    one_durable_accepts,
    one_durable_sessions,
    print_profile,
)
from durable_floors import one_floor_accepts, one_floor_sessions
from durable_parts import (
    INSERT_ROW,
    SESSIONS,
    Clock,
    Repeat,
    Row,
    accepted_states,
    prompts,
    raw_connect,
    rounds,
    rows_of,
)
from goals import goal
from sqlite_tools import GroupCountingStore as BenchStore
from sqlite_tools import Scratch, count, describe_file_system, scratch_dir

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.store import records

RAW_WRITER_GOAL = 0.6  # 64 sessions / the raw group-commit writer
FLOOR_GOAL = 0.9  # meerkat / its in-process floor (64 sessions, one caller)
STALL_BUDGET_S = 0.050  # the longest event-loop stall under load
TAIL_GOAL = 10.0  # p99 / p50 accept latency, at most
MONITOR_TICK_S = 0.001


# ------------------------------------------------------------ raw writer


class RawGroupWriter:
    """One thread, one connection: every row waiting goes into one
    transaction; then each waiting task is woken."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.rows: queue.SimpleQueue[tuple[Row, asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    async def write(self, row: Row) -> None:
        future = asyncio.get_running_loop().create_future()
        self.rows.put((row, future))
        await future

    def _run(self) -> None:
        while (first := self.rows.get()) is not None:
            group = [first]
            stop = False
            while True:
                try:
                    item = self.rows.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self.conn.execute("BEGIN IMMEDIATE")
            for row, _ in group:
                self.conn.execute(INSERT_ROW, row)
            self.conn.execute("COMMIT")
            futures = [future for _, future in group]
            futures[0].get_loop().call_soon_threadsafe(_wake, futures)
            if stop:
                return

    def stop(self) -> None:
        self.rows.put(None)
        self.thread.join()


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        future.set_result(None)


def one_raw_group_writer(scratch: Scratch, sessions: list[list[Row]]) -> Repeat:
    """Seconds per ack: 64 tasks, each writing its rows one after the other
    through the raw group-commit writer."""
    total = sum(len(s) for s in sessions)

    async def all_tasks(writer: RawGroupWriter, clock: Clock) -> None:
        async def one(rows: list[Row]) -> None:
            for row in rows:
                await writer.write(row)

        with clock.section():
            await asyncio.gather(*(one(rows) for rows in sessions))

    def run() -> float:
        path = scratch.path("raw-group")
        conn = raw_connect(path)
        conn.close()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous = FULL")
        writer = RawGroupWriter(conn)
        clock = Clock()
        try:
            asyncio.run(all_tasks(writer, clock))
        finally:
            writer.stop()
            conn.close()
        assert count(path, records.INPUTS) == total
        scratch.remove(path)
        return clock.elapsed / total

    return run


# ------------------------------------------------------------ latency


class LoopMonitor:
    """A task that sleeps ``MONITOR_TICK_S`` again and again and records how
    late it wakes: the longest time the loop ran nothing else."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(MONITOR_TICK_S)
            late = time.perf_counter() - before - MONITOR_TICK_S
            self.longest = max(self.longest, late)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def timed_sessions(
    path: Path, sessions: list[list[PromptInput]], latencies: list[float]
) -> float:
    """The 64-session load with each accept timed; the longest loop stall."""
    store = BenchStore(path)
    monitor = LoopMonitor()
    try:
        drivers = [
            PersistentRuntimeDriver(
                LogicalRuntimeId(f"bench-session-{i:02d}"), store, MemoryBlobStore()
            )
            for i in range(len(sessions))
        ]

        async def one(
            driver: PersistentRuntimeDriver, inputs: list[PromptInput]
        ) -> None:
            for inp in inputs:
                start = time.perf_counter()
                await driver.accept_input(inp)
                latencies.append(time.perf_counter() - start)
                driver.drain_events()

        monitor.start()
        await asyncio.gather(
            *(one(d, inputs) for d, inputs in zip(drivers, sessions, strict=True))
        )
        await monitor.stop()
    finally:
        await store.close()
    return monitor.longest


def latency_pass(
    scratch: Scratch, sessions: list[list[PromptInput]], passes: int
) -> tuple[list[float], float]:
    """Every accept's latency over ``passes`` runs of the load, and the
    longest stall seen in any."""
    latencies: list[float] = []
    longest = 0.0
    for _ in range(passes):
        path = scratch.path("latency")
        longest = max(longest, asyncio.run(timed_sessions(path, sessions, latencies)))
        scratch.remove(path)
    return latencies, longest


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------ report


def line(label: str, seconds: float) -> str:
    return f"  {label:<48} {1 / seconds:>9,.0f} acks/s  {seconds * 1e6:>8.1f} µs each"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--dir", type=Path, default=None, help="temp dir parent")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the 64-session figure"
    )
    args = parser.parse_args(argv)
    per_session, n_one, repeats, passes = (
        (10, 200, 2, 1) if args.quick else (100, 2_000, 5, 3)
    )
    with scratch_dir(args.dir, "group-commit") as scratch:
        describe_file_system(scratch)
        inputs = prompts(0, n_one)
        sessions = [
            prompts(n_one + i * per_session, n_one + (i + 1) * per_session)
            for i in range(SESSIONS)
        ]
        session_rows = []
        for i, session in enumerate(sessions):
            rid = LogicalRuntimeId(f"bench-session-{i:02d}")
            session_rows.append(rows_of(rid, accepted_states(rid, session)))
        group_sizes: list[float] = []
        figures = rounds(
            repeats,
            {
                "raw_group": one_raw_group_writer(scratch, session_rows),
                "floor_64": one_floor_sessions(scratch, sessions),
                "sessions": one_durable_sessions(scratch, sessions, group_sizes),
                "floor_1": one_floor_accepts(scratch, inputs),
                "one": one_durable_accepts(scratch, inputs),
            },
        )
        best = {name: min(values) for name, values in figures.items()}
        spread = max(statistics.median(v) / min(v) for v in figures.values())
        print(
            f"WAL + synchronous=FULL, 1.5 KB prompts; best of {repeats} "
            f"interleaved rounds (worst median / best {spread:.2f}x)"
        )
        total = SESSIONS * per_session
        print(
            f"\n{SESSIONS} sessions, {per_session} sequential accepts each "
            f"({total:,} acks)"
        )
        raw, floor_64, meerkat = best["raw_group"], best["floor_64"], best["sessions"]
        print(line("raw group-commit writer (64 tasks, 1 thread)", raw))
        print(line("floor: 64 x (accept_now, encode); raw txn", floor_64))
        print(line("meerkat, 64 drivers on one store", meerkat))
        print(f"  median {statistics.median(group_sizes):.1f} acks per commit")
        print(
            goal(
                f"{SESSIONS} sessions",
                raw / meerkat,
                RAW_WRITER_GOAL,
                unit="x",
                of="the raw group-commit writer",
            )
        )
        print(
            goal(
                f"{SESSIONS} sessions",
                floor_64 / meerkat,
                FLOOR_GOAL,
                unit="x",
                of="the in-process floor",
            )
        )
        print(f"\none caller, {n_one:,} sequential accepts")
        floor_1, one = best["floor_1"], best["one"]
        print(line("floor: accept_now, encode, raw insert", floor_1))
        print(line("meerkat accept_input", one))
        print(
            goal(
                "one-caller accepts",
                floor_1 / one,
                FLOOR_GOAL,
                unit="x",
                of="the in-process floor",
            )
        )

        latencies, stall = latency_pass(scratch, sessions, passes)
        p50, p99 = quantile(latencies, 0.50), quantile(latencies, 0.99)
        print(
            f"\naccept latency under the {SESSIONS}-session load "
            f"({len(latencies):,} accepts, {passes} pass(es), loop monitor on)"
        )
        print(
            f"  p50 {ms(p50)}  p99 {ms(p99)}  max {ms(max(latencies))}  "
            f"longest event-loop stall {ms(stall)}"
        )
        print(
            goal(
                "longest loop stall",
                stall * 1e3,
                STALL_BUDGET_S * 1e3,
                unit=" ms",
                at_most=True,
            )
        )
        print(
            goal("latency tail p99/p50", p99 / p50, TAIL_GOAL, unit="x", at_most=True)
        )

        if args.profile:
            profile_sessions(scratch, sessions)


def profile_sessions(scratch: Scratch, sessions: list[list[PromptInput]]) -> None:
    clock = Clock(profiler=cProfile.Profile())
    path = scratch.path("profile")
    asyncio.run(durable_sessions(path, sessions, clock))
    scratch.remove(path)
    assert clock.profiler is not None
    assert clock.store is not None
    print(
        f"\ncProfile of {SESSIONS} sessions: {clock.elapsed:.3f} s under the profiler"
    )
    print_profile("main thread (event loop), by own time:", clock.profiler, 30)
    print_profile("store writer thread, by own time:", clock.store.writer_profile, 20)


if __name__ == "__main__":
    main()
