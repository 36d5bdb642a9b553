"""Benchmark: the persistent driver on SQLite: accepts, group commit, boundaries, recovery.

Theory of operation: every durable figure goes through the public
``PersistentRuntimeDriver`` on a ``SqliteRuntimeStore`` (WAL,
``synchronous=FULL``, its default) and is printed beside a baseline measured
in the same run, on the same file system, with the same record bytes:

* **one caller**: ``await accept_input`` of 1.5 KB operator prompts, one
  after the other, against plain ``sqlite3`` (WAL, FULL) doing
  ``BEGIN IMMEDIATE; INSERT one row; COMMIT`` per record, one caller, where
  the row is exactly what the store writes (``codec.encode(state.to_record())``
  of the accepted, queued input) and is encoded before the clock starts, so
  the baseline is SQLite and the disk alone. Three diagnostics split the
  difference: the in-memory ``accept_now`` alone,
  ``store.persist_input_state`` of prebuilt states alone (no driver), and
  the raw inserts again inside an event loop that turns once per row (the
  store lets ready coroutines run once before a lone write, so concurrent
  writers find each other: the price of that turn beside a flush).
* **64 sessions**: 64 drivers (one runtime id each) sharing one store, each
  accepting its prompts one after the other, all 64 at once under
  ``asyncio.gather``: the acks per second and their ratio to the one-caller
  rate, beside plain ``sqlite3`` inserting 64 rows per transaction (the most
  a group commit of 64 could approach).
* **boundary commit**: many runtimes on one store are first brought, untimed,
  to a run with 10 queued ``FlowStepInput``s staged; then each gets its
  ``BoundaryApplied`` (a receipt naming the 10), one runtime after the other,
  and only those calls are timed: each reads the receipt back (is it
  committed already?) and then is the store's ``atomic_apply`` of the receipt
  and the 10 applied states. The baseline is plain ``sqlite3`` writing the
  same receipt and the same 10 rows per transaction, over a file holding the
  same queued rows. Diagnostics: ``store.atomic_apply`` of prebuilt values
  alone (no driver), every runtime's boundary at once (group commit), and
  plain ``sqlite3`` writing half the boundaries per transaction: the most
  any group commit could reach on this disk.
* **floors** (``durable_floors``): for one caller, 64 sessions and
  boundaries, the in-memory driver, the store's encoding and plain sqlite3
  on one thread, with no event loop and no store: what any durable design
  in this process pays at least when nothing runs in parallel. A goal above
  its floor is out of reach of a cheaper store; the report says which.
* **recovery**: a file holding 100k queued prompts (built untimed through
  ``store.atomic_lifecycle_commit``) is copied before each repeat (and the copy
  fsynced, so its write-back does not land on the timed commits); the clock
  covers opening the store, ``recover()`` and the first ``dequeue_next()``.
  The baselines open the same copy and only load and decode the rows
  (``store.load_input_states``), or only fetch them with plain ``sqlite3``.
  The page cache is warm for all three (the copy was just written).
* **memory**: tracemalloc of what the recovered driver holds, per pending
  input (a separate, slower pass), beside the same states as
  ``load_input_states`` returns them and the stored record's size.

Each repeat gets a fresh database file (removed after it), and the timed
figures run in rounds (every measurement once per round, best of several
rounds), so a slow spell of a shared machine or disk hits all of them and
the ratios hold. The garbage collector stays on, as in a deployed process.
The database files live in a temporary directory under the system's
temporary directory (``--dir`` puts it elsewhere, e.g. on the file system
you deploy on), removed at the end; the report names its file system. The stores are a
subclass that only counts commit groups (and profiles the writer thread when
asked): cProfile hooks only the thread that enables it, and the writer
thread does the encoding and the SQLite work.

Run with ``.venv/bin/python bench/durable.py`` (``--quick`` for smaller sizes
and fewer repeats, ``--profile FIGURE`` to add a cProfile of one figure).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from durable_fencing import fencing_report
from durable_floors import (
    one_floor_accepts,
    one_floor_boundaries,
    one_floor_sessions,
)
from durable_parts import (
    BATCH,
    DRAIN_EVERY,
    INSERT_RECEIPT,
    INSERT_ROW,
    PROMPT_BYTES,
    RUNTIME_ID,
    SELECT_ROWS,
    SESSIONS,
    UPSERT_ROW,
    BoundaryCase,
    Clock,
    Repeat,
    Row,
    accepted_states,
    boundary_case,
    prompts,
    queued_file,
    raw_rows_timed,
    rounds,
    rows_of,
    state_of,
)
from durable_tracing import report as tracing_report
from goals import goal
from sqlite_tools import GroupCountingStore as BenchStore
from sqlite_tools import Scratch, count, describe_file_system, scratch_dir

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.store import records
from meerkat_runtime.store.sqlite import SqliteRuntimeStore

ACCEPT_RATIO_GOAL = 0.90  # durable one-caller accepts / raw sqlite3 rows
SESSIONS_GOAL = 25_000.0  # durable acks per second, 64 sessions
SESSIONS_RATIO_GOAL = 3.5  # 64-session rate / one-caller rate
BOUNDARY_GOAL = 5_000.0  # boundary commits per second
GROUPED_BOUNDARY_GOAL = 0.9  # all runtimes at once / the grouped floor
RECOVERY_BUDGET_S = 1.0  # 100k pending inputs, open to first dequeue

BUILD_CHUNK = 10_000  # queued states per transaction when building the file
FIGURES = ("accept", "sessions", "boundary", "recovery")


def one_raw_rows(scratch: Scratch, rows: list[Row], per_txn: int) -> Repeat:
    """Seconds per row of plain sqlite3 inserts, ``per_txn`` rows per
    ``BEGIN IMMEDIATE ... COMMIT``."""

    def insert(conn: sqlite3.Connection, clock: Clock) -> None:
        with clock.section():
            for start in range(0, len(rows), per_txn):
                conn.execute("BEGIN IMMEDIATE")
                for row in rows[start : start + per_txn]:
                    conn.execute(INSERT_ROW, row)
                conn.execute("COMMIT")

    return lambda: raw_rows_timed(scratch, f"raw-{per_txn}", len(rows), insert)


def one_raw_rows_in_a_loop(scratch: Scratch, rows: list[Row]) -> Repeat:
    """Seconds per row of plain sqlite3, one row per transaction, inside an
    asyncio event loop that runs one turn (``await asyncio.sleep(0)``) before
    each: what a lone write through the store pays at least, since the store
    lets every ready coroutine run once first (so concurrent writers find
    each other and share a flush)."""

    async def insert_all(conn: sqlite3.Connection, clock: Clock) -> None:
        with clock.section():
            for row in rows:
                await asyncio.sleep(0)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(INSERT_ROW, row)
                conn.execute("COMMIT")

    return lambda: raw_rows_timed(
        scratch,
        "raw-loop",
        len(rows),
        lambda conn, clock: asyncio.run(insert_all(conn, clock)),
    )


async def accept_all(
    driver: PersistentRuntimeDriver, inputs: Sequence[PromptInput]
) -> None:
    """Accept one after the other, draining the events every ``DRAIN_EVERY``."""
    outcome = None
    for index, inp in enumerate(inputs, 1):
        outcome = await driver.accept_input(inp)
        if index % DRAIN_EVERY == 0:
            driver.drain_events()
    driver.drain_events()
    assert isinstance(outcome, Accepted), outcome


async def durable_accepts(path: Path, inputs: list[PromptInput], clock: Clock) -> None:
    store = clock.store = BenchStore(path)
    try:
        driver = PersistentRuntimeDriver(RUNTIME_ID, store, MemoryBlobStore())
        with clock.section():
            await accept_all(driver, inputs)
    finally:
        await store.close()
    clock.groups = store.groups


def one_durable_accepts(scratch: Scratch, inputs: list[PromptInput]) -> Repeat:
    """Seconds per ``await accept_input``, one caller."""

    def run() -> float:
        path = scratch.path("accept")
        clock = Clock()
        asyncio.run(durable_accepts(path, inputs, clock))
        assert count(path, records.INPUTS) == len(inputs)
        scratch.remove(path)
        return clock.elapsed / len(inputs)

    return run


def one_memory_accepts(inputs: list[PromptInput]) -> Repeat:
    """Seconds per ``accept_now`` of the in-memory driver (no store): the
    driver's share of a durable accept."""

    def run() -> float:
        driver = EphemeralRuntimeDriver(RUNTIME_ID)
        clock = Clock()
        with clock.section():
            for index, inp in enumerate(inputs, 1):
                driver.accept_now(inp)
                if index % DRAIN_EVERY == 0:
                    driver.drain_events()
        assert len(driver.queued_input_ids()) == len(inputs)
        return clock.elapsed / len(inputs)

    return run


async def store_persists(path: Path, states: list[InputState], clock: Clock) -> None:
    store = BenchStore(path)
    try:
        with clock.section():
            for state in states:
                await store.persist_input_state(RUNTIME_ID, state)
    finally:
        await store.close()


def one_store_persists(scratch: Scratch, states: list[InputState]) -> Repeat:
    """Seconds per ``await store.persist_input_state`` of a prebuilt state
    (no driver): the store's share of a durable accept."""

    def run() -> float:
        path = scratch.path("store")
        clock = Clock()
        asyncio.run(store_persists(path, states, clock))
        assert count(path, records.INPUTS) == len(states)
        scratch.remove(path)
        return clock.elapsed / len(states)

    return run


async def durable_sessions(
    path: Path, sessions: list[list[PromptInput]], clock: Clock
) -> None:
    store = clock.store = BenchStore(path)
    try:
        drivers = [
            PersistentRuntimeDriver(
                LogicalRuntimeId(f"bench-session-{i:02d}"), store, MemoryBlobStore()
            )
            for i in range(len(sessions))
        ]
        with clock.section():
            await asyncio.gather(
                *(
                    accept_all(d, inputs)
                    for d, inputs in zip(drivers, sessions, strict=True)
                )
            )
    finally:
        await store.close()
    clock.groups = store.groups


def one_durable_sessions(
    scratch: Scratch, sessions: list[list[PromptInput]], groups: list[float]
) -> Repeat:
    """Seconds per ack, all sessions at once; appends the mean group size."""
    total = sum(len(s) for s in sessions)

    def run() -> float:
        path = scratch.path("sessions")
        clock = Clock()
        asyncio.run(durable_sessions(path, sessions, clock))
        assert count(path, records.INPUTS) == total
        scratch.remove(path)
        groups.append(total / len(clock.groups))
        return clock.elapsed / total

    return run


def one_raw_boundaries(
    scratch: Scratch, cases: list[BoundaryCase], per_txn: int = 1
) -> Repeat:
    """Seconds per boundary of plain sqlite3: the receipt plus the 10
    applied rows, ``per_txn`` boundaries per transaction, over a file
    already holding the queued rows."""

    def run() -> float:
        path = scratch.path(f"raw-boundary-{per_txn}")
        conn = queued_file(path, cases)
        try:
            clock = Clock()
            with clock.section():
                for start in range(0, len(cases), per_txn):
                    conn.execute("BEGIN IMMEDIATE")
                    for case in cases[start : start + per_txn]:
                        conn.execute(INSERT_RECEIPT, case.receipt_row)
                        for row in case.applied_rows:
                            conn.execute(UPSERT_ROW, row)
                    conn.execute("COMMIT")
        finally:
            conn.close()
        assert count(path, records.RECEIPTS) == len(cases)
        scratch.remove(path)
        return clock.elapsed / len(cases)

    return run


async def store_applies(path: Path, cases: list[BoundaryCase], clock: Clock) -> None:
    queued_file(path, cases).close()
    store = BenchStore(path)
    try:
        with clock.section():
            for case in cases:
                await store.atomic_apply(
                    case.runtime_id, None, case.event.receipt, case.applied
                )
    finally:
        await store.close()


def one_store_applies(scratch: Scratch, cases: list[BoundaryCase]) -> Repeat:
    """Seconds per ``await store.atomic_apply`` of a prebuilt receipt and
    10 states (no driver), over the queued rows: the store's share."""

    def run() -> float:
        path = scratch.path("store-boundary")
        clock = Clock()
        asyncio.run(store_applies(path, cases, clock))
        assert count(path, records.RECEIPTS) == len(cases)
        scratch.remove(path)
        return clock.elapsed / len(cases)

    return run


async def prepare_run(driver: PersistentRuntimeDriver, case: BoundaryCase) -> None:
    """Untimed: the 10 steps accepted (durably), the run started, all staged."""
    for inp in case.inputs:
        assert isinstance(await driver.accept_input(inp), Accepted)
    driver.start_run(case.run_id)
    driver.stage_batch(case.ids, case.run_id)
    driver.drain_events()


async def durable_boundaries(
    path: Path, cases: list[BoundaryCase], clock: Clock, together: bool = False
) -> None:
    store = clock.store = BenchStore(path)
    try:
        drivers = [
            PersistentRuntimeDriver(c.runtime_id, store, MemoryBlobStore())
            for c in cases
        ]
        await asyncio.gather(
            *(prepare_run(d, c) for d, c in zip(drivers, cases, strict=True))
        )
        with clock.section():
            if together:  # every runtime's boundary at once: group commit
                await asyncio.gather(
                    *(
                        d.on_run_event(c.event)
                        for d, c in zip(drivers, cases, strict=True)
                    )
                )
            else:
                for driver, case in zip(drivers, cases, strict=True):
                    await driver.on_run_event(case.event)
        last = state_of(drivers[-1], cases[-1].ids[-1])
        assert last.current_state() is InputLifecycleState.APPLIED_PENDING_CONSUMPTION
    finally:
        await store.close()


def one_durable_boundaries(
    scratch: Scratch, cases: list[BoundaryCase], together: bool = False
) -> Repeat:
    """Seconds per ``on_run_event(BoundaryApplied)``, one runtime at a time
    (or all at once, ``together``)."""

    def run() -> float:
        path = scratch.path("boundary")
        clock = Clock()
        asyncio.run(durable_boundaries(path, cases, clock, together))
        assert count(path, records.RECEIPTS) == len(cases)
        scratch.remove(path)
        return clock.elapsed / len(cases)

    return run


# ------------------------------------------------------------ recovery


async def build_pending(path: Path, n: int) -> None:
    """``n`` queued prompts of one runtime, ``BUILD_CHUNK`` per transaction,
    as the driver would have accepted them; the runtime's phase idle."""
    store = SqliteRuntimeStore(path)
    try:
        for start in range(0, n, BUILD_CHUNK):
            driver = EphemeralRuntimeDriver(RUNTIME_ID)
            states: list[InputState] = []
            for inp in prompts(start, min(n, start + BUILD_CHUNK)):
                outcome = driver.accept_now(inp)
                assert isinstance(outcome, Accepted), outcome
                states.append(outcome.state)
            await store.atomic_lifecycle_commit(RUNTIME_ID, RuntimeState.IDLE, states)
    finally:
        await store.close()


async def recover_until_dequeue(path: Path, n: int, clock: Clock) -> None:
    """Open, ``recover()``, first ``dequeue_next()`` (timed); then close."""
    store: BenchStore | None = None
    try:
        with clock.section():
            store = clock.store = BenchStore(path)
            store.profiling = clock.profiler is not None
            driver = PersistentRuntimeDriver(RUNTIME_ID, store, MemoryBlobStore())
            report = await driver.recover()
            first = driver.dequeue_next()
        assert first is not None
        assert report.inputs_recovered == n, report
        assert len(driver.queued_input_ids()) == n
    finally:
        if store is not None:
            await store.close()


def one_recovery(scratch: Scratch, pristine: Path, n: int) -> Repeat:
    def run() -> float:
        path = scratch.copy(pristine, "recover")
        clock = Clock()
        try:
            asyncio.run(recover_until_dequeue(path, n, clock))
        finally:
            scratch.remove(path)
        return clock.elapsed

    return run


async def load_states(path: Path, n: int, clock: Clock) -> None:
    store: SqliteRuntimeStore | None = None
    try:
        with clock.section():
            store = SqliteRuntimeStore(path)
            states = await store.load_input_states(RUNTIME_ID)
        assert len(states) == n
    finally:
        if store is not None:
            await store.close()


def one_load(scratch: Scratch, pristine: Path, n: int) -> Repeat:
    """Seconds to open the store and ``load_input_states`` (fetch + decode)."""

    def run() -> float:
        path = scratch.copy(pristine, "load")
        clock = Clock()
        try:
            asyncio.run(load_states(path, n, clock))
        finally:
            scratch.remove(path)
        return clock.elapsed

    return run


def one_fetch(scratch: Scratch, pristine: Path, n: int) -> Repeat:
    """Seconds to open the file with plain sqlite3 and fetch the rows."""

    def run() -> float:
        path = scratch.copy(pristine, "fetch")
        clock = Clock()
        try:
            with clock.section():
                conn = sqlite3.connect(path)
                rows = conn.execute(SELECT_ROWS, (str(RUNTIME_ID),)).fetchall()
                conn.close()
            assert len(rows) == n
        finally:
            scratch.remove(path)
        return clock.elapsed

    return run


@dataclass(frozen=True, slots=True)
class Memory:
    """Bytes per pending input (tracemalloc)."""

    driver: float  # held by the recovered driver
    driver_peak: float  # peak during open + recover()
    loaded: float  # held by the list load_input_states returns
    record: float  # mean stored record (JSON) length


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def measure_memory(path: Path, n: int) -> Memory:
    tracemalloc.start()
    try:
        base = traced()
        store = SqliteRuntimeStore(path)
        states = await store.load_input_states(RUNTIME_ID)
        await store.close()
        loaded = traced() - base
        del states, store
        base = traced()
        tracemalloc.reset_peak()
        store = SqliteRuntimeStore(path)
        driver = PersistentRuntimeDriver(RUNTIME_ID, store, MemoryBlobStore())
        await driver.recover()
        peak = tracemalloc.get_traced_memory()[1] - base
        await store.close()  # the writer thread and reader connections go
        driver.drain_events()
        held = traced() - base
        assert len(driver.queued_input_ids()) == n
    finally:
        tracemalloc.stop()
    conn = sqlite3.connect(path)
    try:
        mean = conn.execute(
            "SELECT AVG(LENGTH(state_json)) FROM runtime_input_states"
        ).fetchone()[0]
    finally:
        conn.close()
    return Memory(
        driver=held / n, driver_peak=peak / n, loaded=loaded / n, record=float(mean)
    )


# ------------------------------------------------------------ profile


def print_profile(title: str, profile: cProfile.Profile, top: int = 18) -> None:
    print(title)
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)


def profile_figure(
    figure: str,
    scratch: Scratch,
    inputs: list[PromptInput],
    sessions: list[list[PromptInput]],
    cases: list[BoundaryCase],
    pristine: Path,
    n_pending: int,
) -> None:
    """One more pass of ``figure`` with its measured section under cProfile,
    main thread and store writer thread (profiler overhead inflates times;
    reader threads, which run the SELECTs, are not profiled)."""
    clock = Clock(profiler=cProfile.Profile())
    path = scratch.path(f"profile-{figure}")
    try:
        if figure == "accept":
            asyncio.run(durable_accepts(path, inputs, clock))
        elif figure == "sessions":
            asyncio.run(durable_sessions(path, sessions, clock))
        elif figure == "boundary":
            asyncio.run(durable_boundaries(path, cases, clock))
        else:
            scratch.remove(path)
            path = scratch.copy(pristine, "profile-recovery")
            asyncio.run(recover_until_dequeue(path, n_pending, clock))
    finally:
        scratch.remove(path)
    assert clock.profiler is not None
    assert clock.store is not None
    print(f"\ncProfile of {figure}: {clock.elapsed:.3f} s under the profiler")
    print_profile("main thread (event loop), by own time:", clock.profiler)
    print_profile("store writer thread, by own time:", clock.store.writer_profile)


# ------------------------------------------------------------ report


NOISY = 1.25  # median / best of a figure's rounds above which it is flagged


def noise(figures: dict[str, list[float]]) -> None:
    """Flag the figures whose rounds disagree: a slow spell of the shared
    disk or machine that the best-of filter may not have removed."""
    spread = {
        name: statistics.median(values) / min(values)
        for name, values in figures.items()
    }
    noisy = [f"{name} {ratio:.2f}x" for name, ratio in spread.items() if ratio > NOISY]
    worst = max(spread.values())
    if noisy:
        print(f"NOISY (median / best of the rounds > {NOISY}): {', '.join(noisy)}")
    else:
        print(f"rounds agree: median / best <= {worst:.2f}x for every figure")


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def floor_line(label: str, seconds: float, unit: str) -> str:
    """A floor (see durable_floors): one thread, no event loop, no store."""
    return line(f"  floor: {label}", seconds, unit)


def above(floor: float, goal: float) -> str:
    """Whether a goal lies beyond what its one-thread floor reaches."""
    if floor >= goal:
        return "the goal is below the floor"
    return "the goal is above the floor"


def line(label: str, seconds: float, unit: str) -> str:
    return f"  {label:<44} {1 / seconds:>9,.0f} {unit}/s  {us(seconds):>10} each"


def environment(scratch: Scratch, repeats: int, recovery_repeats: int) -> None:
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"msgspec {msgspec.__version__}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs"
    )
    describe_file_system(scratch)
    print(
        "every file WAL + synchronous=FULL; fresh file per repeat; GC on; "
        f"best of {repeats} interleaved rounds (recovery: {recovery_repeats})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, fewer repeats"
    )
    parser.add_argument(
        "--profile", choices=FIGURES, help="add a cProfile of one figure"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the temporary directory goes (default: the system's, "
        "tempfile.gettempdir())",
    )
    args = parser.parse_args(argv)
    if args.quick:
        n_accepts, per_session, n_cases, n_pending = 500, 25, 100, 10_000
        repeats, recovery_repeats = 3, 2
    else:
        n_accepts, per_session, n_cases, n_pending = 2_000, 100, 500, 100_000
        repeats, recovery_repeats = 5, 3

    with scratch_dir(args.dir, "durable") as scratch:
        environment(scratch, repeats, recovery_repeats)

        inputs = prompts(0, n_accepts)
        one_states = accepted_states(RUNTIME_ID, inputs)
        one_rows = rows_of(RUNTIME_ID, one_states)
        sessions = [
            prompts(n_accepts + i * per_session, n_accepts + (i + 1) * per_session)
            for i in range(SESSIONS)
        ]
        session_rows = []
        for i, session in enumerate(sessions):
            rid = LogicalRuntimeId(f"bench-session-{i:02d}")
            session_rows += rows_of(rid, accepted_states(rid, session))
        cases = [boundary_case(i) for i in range(n_cases)]
        record = len(one_rows[0][2])
        print(
            f"prompt {PROMPT_BYTES:,} bytes; stored record of a queued prompt "
            f"{record:,} bytes (codec.encode(state.to_record()))"
        )

        group_sizes: list[float] = []
        figures = rounds(
            repeats,
            {
                "raw_1": one_raw_rows(scratch, one_rows, 1),
                "raw_1_loop": one_raw_rows_in_a_loop(scratch, one_rows),
                "floor_1": one_floor_accepts(scratch, inputs),
                "accept": one_durable_accepts(scratch, inputs),
                "memory_accept": one_memory_accepts(inputs),
                "store_persist": one_store_persists(scratch, one_states),
                "raw_64": one_raw_rows(scratch, session_rows, SESSIONS),
                "floor_64": one_floor_sessions(scratch, sessions),
                "sessions": one_durable_sessions(scratch, sessions, group_sizes),
                "raw_boundary": one_raw_boundaries(scratch, cases),
                "floor_boundary": one_floor_boundaries(scratch, cases, 1),
                "floor_boundary_grouped": one_floor_boundaries(
                    scratch, cases, max(1, n_cases // 2)
                ),
                "raw_boundary_grouped": one_raw_boundaries(
                    scratch, cases, max(1, n_cases // 2)
                ),
                "boundary": one_durable_boundaries(scratch, cases),
                "store_apply": one_store_applies(scratch, cases),
                "boundary_together": one_durable_boundaries(scratch, cases, True),
            },
        )
        best = {name: min(values) for name, values in figures.items()}
        noise(figures)

        print(
            f"\ndurable accepts, one caller: {n_accepts:,} sequential "
            "`await accept_input` per repeat"
        )
        raw, accept = best["raw_1"], best["accept"]
        print(line("raw sqlite3, 1 row per transaction", raw, "rows"))
        print(line("durable accept_input", accept, "acks"))
        print(
            goal(
                "one-caller accepts",
                raw / accept,
                ACCEPT_RATIO_GOAL,
                unit="x",
                of="raw sqlite3",
            )
        )
        print(f"  durable - raw = {us(accept - raw)} per ack")
        memory_accept, store_persist = best["memory_accept"], best["store_persist"]
        print("  where it goes (diagnostic, same rounds):")
        print(
            line("  accept_now alone (in memory, no store)", memory_accept, "accepts")
        )
        print(
            line("  store.persist_input_state alone (no driver)", store_persist, "rows")
        )
        print(
            f"    store alone - raw = {us(store_persist - raw)} (encode, one "
            f"event-loop turn, the store's bookkeeping); durable - store alone = "
            f"{us(accept - store_persist)} (accept_now is {us(memory_accept)})"
        )
        raw_loop = best["raw_1_loop"]
        print(line("  raw sqlite3 + one event-loop turn per row", raw_loop, "rows"))
        print(
            f"    one loop turn beside a flush costs {us(raw_loop - raw)}; "
            f"durable / (raw + loop turn) = {raw_loop / accept:.2f}x"
        )
        floor_1 = best["floor_1"]
        print(
            "  floors (durable_floors.py): the driver's decision, the store's "
            "encoding and plain sqlite3, on one thread; no event loop, no store"
        )
        print(floor_line("accept_now, encode, raw insert", floor_1, "acks"))
        print(
            f"    the best ratio any durable accept could reach here: floor / raw "
            f"= {raw / floor_1:.2f}x ({above(raw / floor_1, ACCEPT_RATIO_GOAL)}); "
            f"durable / floor = {floor_1 / accept:.2f}x"
        )

        total = SESSIONS * per_session
        print(
            f"\n{SESSIONS} concurrent sessions: {SESSIONS} drivers on one store, "
            f"{per_session:,} sequential accepts each ({total:,} acks), asyncio.gather"
        )
        sessions_s = best["sessions"]
        print(
            line(
                f"raw sqlite3, {SESSIONS} rows per transaction", best["raw_64"], "rows"
            )
        )
        print(line("durable acks through group commit", sessions_s, "acks"))
        rate, speedup = 1 / sessions_s, accept / sessions_s
        mean_group = sorted(group_sizes)[len(group_sizes) // 2]
        print(
            goal(f"{SESSIONS} sessions", rate, SESSIONS_GOAL, unit=" acks/s", digits=0)
        )
        print(
            goal(
                f"{SESSIONS} sessions speed-up",
                speedup,
                SESSIONS_RATIO_GOAL,
                unit="x",
                of="one caller",
            )
        )
        print(
            f"  {best['raw_64'] / sessions_s:.2f}x the raw {SESSIONS}-row rate; "
            f"median {mean_group:.1f} acks per commit"
        )
        floor_64 = best["floor_64"]
        print(
            floor_line(f"{SESSIONS} x (accept_now, encode); raw txn", floor_64, "acks")
        )
        print(
            f"    {1 / floor_64 / SESSIONS_GOAL:.2f}x the goal "
            f"({above(1 / floor_64, SESSIONS_GOAL)}); durable / floor = "
            f"{floor_64 / sessions_s:.2f}x"
        )

        fencing_report(scratch, inputs, sessions, repeats)

        print(
            f"\nboundary commit: {n_cases:,} runtimes on one store, each with "
            f"{BATCH} staged flow steps; one BoundaryApplied (receipt naming "
            f"{BATCH}) at a time"
        )
        raw_b, boundary = best["raw_boundary"], best["boundary"]
        print(line(f"raw sqlite3, receipt + {BATCH} upserts per txn", raw_b, "commits"))
        print(line("durable on_run_event(BoundaryApplied)", boundary, "commits"))
        rate = 1 / boundary
        print(goal("boundary commits", rate, BOUNDARY_GOAL, unit="/s", digits=0))
        print(f"  durable / raw = {raw_b / boundary:.2f}x")
        store_apply = best["store_apply"]
        print("  where it goes (diagnostic, same rounds):")
        print(line("  store.atomic_apply alone (no driver)", store_apply, "commits"))
        print(
            f"    store alone - raw = {us(store_apply - raw_b)} (encoding the 10 "
            f"states and the receipt, the receipt check of decision 16); durable - "
            f"store alone = {us(boundary - store_apply)} (the in-memory boundary: "
            "10 transitions, checkpoint copies, events)"
        )
        together, grouped = best["boundary_together"], best["raw_boundary_grouped"]
        print(
            line(
                f"  durable, all {n_cases:,} runtimes at once (gather)",
                together,
                "commits",
            )
        )
        per_txn = max(1, n_cases // 2)
        print(line(f"  raw sqlite3, {per_txn} boundaries per txn", grouped, "commits"))
        print(
            f"    the most group commit could reach on this disk: "
            f"{1 / grouped:,.0f}/s ({1 / grouped / BOUNDARY_GOAL:.2f}x the goal); "
            f"durable at once / that = {grouped / together:.2f}x"
        )
        floor_b, floor_grouped = best["floor_boundary"], best["floor_boundary_grouped"]
        print(floor_line("in-memory boundary, encode, raw", floor_b, "commits"))
        print(floor_line(f"the same, {per_txn} per txn", floor_grouped, "commits"))
        print(
            f"    grouped: {1 / floor_grouped / BOUNDARY_GOAL:.2f}x the goal "
            f"({above(1 / floor_grouped, BOUNDARY_GOAL)})"
        )
        print(
            goal(
                "grouped boundary commits",
                floor_grouped / together,
                GROUPED_BOUNDARY_GOAL,
                unit="x",
                of="the grouped floor",
            )
        )

        pristine = scratch.path("pending")
        t0 = time.perf_counter()
        asyncio.run(build_pending(pristine, n_pending))
        built = time.perf_counter() - t0
        size = sum(
            Path(f"{pristine}{s}").stat().st_size
            for s in ("", "-wal")
            if Path(f"{pristine}{s}").exists()
        )
        print(
            f"\nrecovery of {n_pending:,} pending (queued) prompts: file "
            f"{size / 1e6:,.0f} MB (built untimed in {built:.1f} s), copied and "
            "fsynced before each repeat, page cache warm"
        )
        recovery = rounds(
            recovery_repeats,
            {
                "fetch": one_fetch(scratch, pristine, n_pending),
                "load": one_load(scratch, pristine, n_pending),
                "recover": one_recovery(scratch, pristine, n_pending),
            },
        )
        noise(recovery)
        fetch, load, recover = (min(recovery[k]) for k in ("fetch", "load", "recover"))
        print(f"  {'raw sqlite3 open + SELECT fetchall':<44} {fetch:>9.3f} s")
        print(f"  {'open + store.load_input_states (+ decode)':<44} {load:>9.3f} s")
        print(f"  {'open + recover() until dequeue_next()':<44} {recover:>9.3f} s")
        print(
            goal(
                f"recovery of {n_pending:,}",
                recover,
                RECOVERY_BUDGET_S,
                unit=" s",
                at_most=True,
            )
        )
        print(
            f"  {recover / load:.1f}x load + decode, {recover / fetch:.1f}x the raw fetch"
        )

        path = scratch.copy(pristine, "memory")
        memory = asyncio.run(measure_memory(path, n_pending))
        scratch.remove(path)
        print(
            f"\nmemory per pending input, {n_pending:,} recovered "
            "(tracemalloc, separate pass; SQLite's own allocations not traced)"
        )
        print(f"  {'held by the recovered driver':<44} {memory.driver:>9,.0f} bytes")
        print(
            f"  {'peak during open + recover()':<44} {memory.driver_peak:>9,.0f} bytes"
        )
        print(
            f"  {'the list load_input_states returns':<44} {memory.loaded:>9,.0f} bytes"
        )
        print(
            f"  {'stored record (mean JSON length)':<44} {memory.record:>9,.0f} bytes"
        )
        print(f"  {'prompt text':<44} {PROMPT_BYTES:>9,} bytes")

        tracing_report(scratch, n_accepts, repeats)  # issue 19: on, off, absent
        if args.profile:
            profile_figure(
                args.profile, scratch, inputs, sessions, cases, pristine, n_pending
            )
        scratch.remove(pristine)


if __name__ == "__main__":
    main()
