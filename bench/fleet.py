"""Completions per second of a fleet: 1, 2 and 4 ``meerkat-runtime worker``
processes over one SQLite file and over one PostgreSQL schema, beside one
``FleetWorker`` inside this process, all in the same run.

Each measurement starts from a fresh database: a loader acknowledges
``--sessions`` x ``--inputs`` prompts and releases the sessions (not timed);
the clock runs from that release until the store lists no runtime with
work left. Every worker runs the echo executor (no model, no delay), so
the figure is the runtime's own cost per completed input: its staging, the
boundary commit, the leases. The exactly-once check runs after each
measurement (not timed) and a failure stops the benchmark.

Then the end-to-end latency of a cross-process submit, p50/p99: this
process submits to sessions 4 worker processes run and waits until its
handle sees the stored outcome (the submitter polls the store with
back-off, the owner looks at its inbox periodically: both show here),
beside accept-to-completion inside the owning process as the baseline.

Goal (issue 17): on PostgreSQL, 4 worker processes at least 2.5x one.

``python bench/fleet.py [--quick] [--sessions N] [--inputs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from goals import goal
from sqlite_tools import describe_file_system, scratch_dir

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.ids import SessionId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
from meerkat_runtime.sessions.fleet import EchoExecutor, FleetWorker
from meerkat_runtime.sessions.submitter import RuntimeSubmitter
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.store.sqlite import SqliteRuntimeStore
from meerkat_runtime.testing.fleet import check_exactly_once, load_sessions, session_ids
from meerkat_runtime.testing.fleet_processes import WorkerProcesses
from meerkat_runtime.testing.postgres_server import ThrowawayPostgres

WORKER_COUNTS = (1, 2, 4)
GOAL_RATIO = 2.5  # PostgreSQL, 4 workers over 1
OPTIONS = ["--scan-interval", "0.05", "--idle-release", "60"]
LATENCY_SESSIONS = 8
LATENCY_SAMPLES = 300

Opener = Callable[[str], Awaitable[RuntimeStore]]  # a fresh store, by label


class Backend:
    """Where a measurement's database lives, and how workers name it."""

    def __init__(
        self, name: str, open_store: Opener, target: Callable[[str], list[str]]
    ):
        self.name = name
        self.open_store = open_store
        self.target = target  # label -> [target, *options] of a worker


async def drained(store: RuntimeStore) -> None:
    while await store.list_runtimes_with_work():
        await asyncio.sleep(0.1)  # the scan is not free: do not crowd the workers


async def measure(
    backend: Backend, label: str, sessions: int, inputs: int, workers: int, logs: Path
) -> float:
    """Completions/s of ``workers`` processes (0: one FleetWorker here)."""
    store = await backend.open_store(label)
    fleet: WorkerProcesses | None = None
    try:
        if workers:
            target, *options = backend.target(label)
            fleet = WorkerProcesses(target, logs, [*OPTIONS, *options], delay=0.0)
            fleet.start(workers)
            here = None
        else:
            here = FleetWorker(store, scan_interval=0.05, idle_release=60.0)
            here.start()
        acked = await load_sessions(store, session_ids(sessions), inputs)
        start = time.perf_counter()
        await drained(store)
        elapsed = time.perf_counter() - start
        if here is not None:
            await here.close()
        if fleet is not None:
            fleet.terminate()
        check = await check_exactly_once(store, acked)
        if not check.clean:
            raise SystemExit(f"{backend.name} {label}: {check.problems[:5]}")
    finally:
        if fleet is not None:
            fleet.kill_all()
        await store.close()
    return sessions * inputs / elapsed


async def run_backend(
    backend: Backend, sessions: int, inputs: int, logs: Path
) -> dict[int, float]:
    rates: dict[int, float] = {}
    for workers in (0, *WORKER_COUNTS):
        label = f"w{workers}"
        rate = await measure(backend, label, sessions, inputs, workers, logs)
        rates[workers] = rate
        what = (
            "one FleetWorker in this process"
            if workers == 0
            else (f"{workers} worker process{'es' if workers > 1 else ''}")
        )
        ratio = "" if workers in (0, 1) else f"  ({rate / rates[1]:.2f}x one process)"
        print(f"  {backend.name:10s} {what:32s} {rate:9,.0f} completions/s{ratio}")
    return rates


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples``, in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def timed(wait: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await wait()
    return time.perf_counter() - start


async def submit_latency(
    backend: Backend, samples: int, logs: Path
) -> tuple[float, float]:
    """p50/p99 (ms) of a cross-process submit: this process owns nothing and
    submits with ``RuntimeSubmitter`` (the input is durable in the inbox when
    it returns) to sessions that 4 worker processes run, then waits on the
    handle until it sees the stored outcome. One input at a time, after a
    first round that gets every session claimed (steady state)."""
    store = await backend.open_store("latency")
    target, *options = backend.target("latency")
    fleet = WorkerProcesses(target, logs, [*OPTIONS, *options], delay=0.0)
    submitter = RuntimeSubmitter(store)
    sessions = session_ids(LATENCY_SESSIONS, "latency")
    try:
        fleet.start(4)

        async def one(sid: SessionId) -> None:
            _, handle = await submitter.submit_with_completion(
                sid, PromptInput.new("ping")
            )
            if handle is not None:
                await handle.wait()

        await asyncio.gather(*(one(sid) for sid in sessions))  # warm up
        times = [
            await timed(functools.partial(one, sessions[n % len(sessions)]))
            for n in range(samples)
        ]
        fleet.terminate()
    finally:
        await submitter.close()
        fleet.kill_all()
        await store.close()
    return percentiles(times)


async def local_latency(root: Path, samples: int) -> tuple[float, float]:
    """The baseline: accept to completion inside the owning process (one
    adapter over a SQLite file, echo executor)."""
    store = await SqliteRuntimeStore.open(root / "local-latency.db")
    adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
    sid = SessionId("local")
    try:
        await adapter.register_session_with_executor(sid, EchoExecutor())

        async def one() -> None:
            _, handle = await adapter.accept_input_with_completion(
                sid, PromptInput.new("ping")
            )
            if handle is not None:
                await handle.wait()

        times = [await timed(one) for _ in range(samples)]
    finally:
        await adapter.close()
        await store.close()
    return percentiles(times)


def report_latency(name: str, p50_p99: tuple[float, float]) -> None:
    p50, p99 = p50_p99
    print(f"  {name:44s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (smoke)")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--inputs", type=int, default=20, help="per session")
    parser.add_argument("--dir", type=Path, help="where the SQLite files go")
    args = parser.parse_args(argv)
    sessions, inputs = (20, 5) if args.quick else (args.sessions, args.inputs)
    samples = 40 if args.quick else LATENCY_SAMPLES
    print(
        f"fleet: {sessions} sessions x {inputs} prompts, echo executor, fresh db each"
    )
    with scratch_dir(args.dir, "fleet") as scratch:
        describe_file_system(scratch)
        root = scratch.dir

        async def sqlite(label: str) -> RuntimeStore:
            return await SqliteRuntimeStore.open(root / f"{label}.db")

        lite = Backend("sqlite", sqlite, lambda label: [str(root / f"{label}.db")])
        asyncio.run(run_backend(lite, sessions, inputs, root))
        latency = {
            "local": asyncio.run(local_latency(root, samples)),
            "sqlite": asyncio.run(submit_latency(lite, samples, root)),
        }
        with ThrowawayPostgres() as server:

            async def postgres(label: str) -> RuntimeStore:
                return await PostgresRuntimeStore.open(
                    server.dsn, schema=f"fleet_{label}"
                )

            pg = Backend(
                "postgresql",
                postgres,
                lambda label: [server.dsn, "--schema", f"fleet_{label}"],
            )
            rates = asyncio.run(run_backend(pg, sessions, inputs, root))
            latency["postgresql"] = asyncio.run(submit_latency(pg, samples, root))
    print(f"submit -> completion seen by the submitter, {samples} inputs one by one")
    report_latency("in the owning process (sqlite, baseline)", latency["local"])
    for name, figures in latency.items():
        if name != "local":
            report_latency(f"cross-process, 4 workers ({name})", figures)
    print(
        goal(
            "PostgreSQL 4 workers",
            rates[4] / rates[1],
            GOAL_RATIO,
            unit="x",
            of="one worker",
        )
    )


if __name__ == "__main__":
    main()
