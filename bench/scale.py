"""Benchmark: big restarts and deep queues, each beside a same-run baseline.

Theory of operation: three figures that grow with the amount of work a
runtime holds, on ``SqliteRuntimeStore`` files in a scratch directory:

* **applied batch restart**: one run applied a batch of N inputs at its
  boundary (one receipt naming all N) and the process died before the run
  completed. The clock covers opening the store and ``recover()`` (which
  consumes all N); the baseline opens the same file and only loads and
  decodes the same rows (``load_input_states`` and the receipts). Each
  repeat works on a fresh copy of the file (recovery writes). Linear means
  the 10x batch takes about 10x as long; the goal allows 15x.
* **pending recovery** (PD-64): a file holding N small queued prompts of
  one runtime, built with plain sqlite3 inserts of records encoded as the
  store encodes them (one template record, its id replaced per row, each
  framed with its own checksum). Each figure runs in a fresh child process,
  which reports its time and its peak resident memory (``VmHWM``, or
  ``ru_maxrss`` where there is no /proc): a lazy recovery until the first
  dequeue (open, ``recover()``, the first input's payload read back,
  ``dequeue_next()``), an eager one (every payload decoded, as before
  PD-64), loading and decoding the rows, fetching them with plain sqlite3,
  an idle child (the floor every child pays: the interpreter and the
  imports), and the bytes the recovered driver holds per pending input
  (tracemalloc). At 100k (and, outside ``--quick``, 1M) the goals are
  issue 18's. The same bytes are measured for inputs accepted live by a
  lazy driver (PD-65 sheds their payloads past its limit).
* **coalescing accept**: an in-memory driver whose policy coalesces prompts
  of one scope, with 10 or 100k other inputs queued; the figure is the time
  of one accept that replaces the waiting input of its scope (best of
  several rounds of many accepts). Independent of the queue length means
  the two agree; the goal allows 2x.

Run with ``.venv/bin/python bench/scale.py`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
from durable_parts import INSERT_ROW, SELECT_ROWS, raw_connect, run_start_receipt
from goals import goal
from sqlite_tools import Scratch, describe_file_system, scratch_dir

from meerkat_runtime import codec
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.policy_table import PolicyDecision, QueueMode
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId, SupersessionKey
from meerkat_runtime.inputs import InputHeader, PromptInput
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.policy import DefaultPolicyTable, PolicySubject
from meerkat_runtime.runs import BoundaryApplied, RunBoundaryReceipt
from meerkat_runtime.store.integrity import frame
from meerkat_runtime.store.sqlite import SqliteRuntimeStore

RUNTIME_ID = LogicalRuntimeId("bench-scale")
BATCH_RATIO_GOAL = 15.0  # restart time of a 10x applied batch, at most
COALESCE_RATIO_GOAL = 2.0  # coalescing accept at 100k queued / at 10, at most
# PD-64 (issue 18): at most, each in a fresh process.
RECOVERY_100K_GOAL = 0.35  # seconds until the first dequeue, 100k pending
HELD_BYTES_GOAL = 400  # bytes held per pending input
RECOVERY_1M_GOAL = 3.0  # seconds, 1M pending
PEAK_1M_GOAL = 600  # MB peak resident, 1M pending
BUILD_CHUNK = 50_000  # raw rows per transaction when building the big file


# ------------------------------------------------------------ applied batch


def applied_batch(n: int) -> tuple[RunBoundaryReceipt, list[object]]:
    """The states of ``n`` prompts applied by one boundary of a run that has
    not completed, and its receipt, exactly as the driver makes them."""
    driver = EphemeralRuntimeDriver(RUNTIME_ID, max_pending_inputs=n)
    ids = []
    for i in range(n):
        outcome = driver.accept_now(PromptInput.new(f"prompt {i}"))
        assert isinstance(outcome, Accepted)
        ids.append(outcome.input_id)
    run_id = RunId.new()
    driver.start_run(run_id)
    driver.stage_batch(ids, run_id)
    receipt = run_start_receipt(run_id, ids)
    driver.run_event_now(BoundaryApplied(run_id=run_id, receipt=receipt))
    return receipt, [driver.input_state(i) for i in ids]


async def build_applied(path: Path, n: int) -> None:
    receipt, states = applied_batch(n)
    store = SqliteRuntimeStore(path)
    try:
        await store.atomic_apply(RUNTIME_ID, None, receipt, states)  # type: ignore[arg-type]
    finally:
        await store.close()


async def timed_recovery(path: Path, n: int) -> float:
    t0 = time.perf_counter()
    store = SqliteRuntimeStore(path)
    try:
        driver = PersistentRuntimeDriver(
            RUNTIME_ID, store, MemoryBlobStore(), max_pending_inputs=n
        )
        report = await driver.recover()
        elapsed = time.perf_counter() - t0
    finally:
        await store.close()
    assert report.inputs_recovered == n, report
    assert report.inputs_requeued == 0, report
    return elapsed


async def timed_load(path: Path, n: int) -> float:
    t0 = time.perf_counter()
    store = SqliteRuntimeStore(path)
    try:
        states = await store.load_input_states(RUNTIME_ID)
        receipts = await store.load_boundary_receipts(RUNTIME_ID)
        elapsed = time.perf_counter() - t0
    finally:
        await store.close()
    assert len(states) == n
    assert len(receipts) == 1
    return elapsed


def best_on_copies(
    scratch: Scratch, pristine: Path, repeats: int, measure: Callable[[Path], float]
) -> float:
    figures = []
    for _ in range(repeats):
        path = scratch.copy(pristine, "copy")
        try:
            figures.append(measure(path))
        finally:
            scratch.remove(path)
    return min(figures)


def recovering(n: int) -> Callable[[Path], float]:
    return lambda path: asyncio.run(timed_recovery(path, n))


def loading(n: int) -> Callable[[Path], float]:
    return lambda path: asyncio.run(timed_load(path, n))


def applied_batches(scratch: Scratch, sizes: Sequence[int], repeats: int) -> None:
    print("\napplied batch restart (one receipt naming the whole batch)")
    recovered: dict[int, float] = {}
    for n in sizes:
        pristine = scratch.path(f"applied-{n}")
        asyncio.run(build_applied(pristine, n))
        recovered[n] = best_on_copies(scratch, pristine, repeats, recovering(n))
        loaded = best_on_copies(scratch, pristine, repeats, loading(n))
        scratch.remove(pristine)
        print(
            f"  {n:>7,} inputs: recover {recovered[n] * 1e3:8.1f} ms   "
            f"load+decode the same rows {loaded * 1e3:8.1f} ms   "
            f"({recovered[n] / loaded:.2f}x)"
        )
    small, big = sizes
    ratio = recovered[big] / recovered[small]
    print(
        goal(
            f"applied-batch restart {big:,}/{small:,} time",
            ratio,
            BATCH_RATIO_GOAL,
            unit="x",
            at_most=True,
        )
    )


# ------------------------------------------------------------ 1M pending


def build_pending(path: Path, n: int) -> None:
    """``n`` queued prompts of one runtime, raw inserts of framed records."""
    driver = EphemeralRuntimeDriver(RUNTIME_ID)
    outcome = driver.accept_now(PromptInput.new("a small pending prompt"))
    assert isinstance(outcome, Accepted)
    template = codec.encode(outcome.state.to_record())
    old_id = str(outcome.input_id).encode()
    assert template.count(old_id) >= 1
    rid = str(RUNTIME_ID)
    conn = raw_connect(path)
    try:
        for start in range(0, n, BUILD_CHUNK):
            rows = []
            for _ in range(start, min(n, start + BUILD_CHUNK)):
                new_id = str(InputId.new())
                body = template.replace(old_id, new_id.encode())
                rows.append((rid, new_id, frame(body)))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_ROW, rows)
            conn.execute("COMMIT")
    finally:
        conn.close()


def driver_over(
    store: SqliteRuntimeStore, n: int, lazy: bool = True
) -> PersistentRuntimeDriver:
    """A driver for ``n`` pending inputs, lazy (PD-64) unless told."""
    return PersistentRuntimeDriver(
        RUNTIME_ID, store, MemoryBlobStore(), max_pending_inputs=n, lazy_payloads=lazy
    )


async def child_recover(path: Path, n: int, lazy: bool = True) -> None:
    """Open, ``recover()``, then dequeue the first input: with a lazy
    driver (PD-64) that includes reading its payload back."""
    store = SqliteRuntimeStore(path)
    try:
        driver = driver_over(store, n, lazy=lazy)
        report = await driver.recover()
        await driver.load_payloads(driver.queued_input_ids()[:1])
        assert driver.dequeue_next() is not None
    finally:
        await store.close()
    assert report.inputs_recovered == n, report


async def child_held(path: Path, n: int) -> int:
    """Bytes the recovered (lazy) driver holds per pending input: what
    tracemalloc counts as allocated once recovery is over, store closed."""
    tracemalloc.start()
    store = SqliteRuntimeStore(path)
    try:
        driver = driver_over(store, n)
        before = tracemalloc.get_traced_memory()[0]
        report = await driver.recover()
    finally:
        await store.close()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert report.inputs_recovered == n, report
    return held // n


async def child_load(path: Path, n: int) -> None:
    store = SqliteRuntimeStore(path)
    try:
        assert len(await store.load_input_states(RUNTIME_ID)) == n
    finally:
        await store.close()


def child_fetch(path: Path, n: int) -> None:
    conn = sqlite3.connect(path)
    try:
        assert len(conn.execute(SELECT_ROWS, (str(RUNTIME_ID),)).fetchall()) == n
    finally:
        conn.close()


def child(kind: str, path: Path, n: int) -> None:
    """In a fresh process: run one figure, print its seconds and peak KB
    (``held``: bytes per pending input instead of seconds)."""
    t0 = time.perf_counter()
    if kind == "held":
        print(f"{asyncio.run(child_held(path, n))} {peak_kb()} {time.process_time()}")
        return
    if kind == "recover":
        asyncio.run(child_recover(path, n))
    elif kind == "recover-eager":
        asyncio.run(child_recover(path, n, lazy=False))
    elif kind == "load":
        asyncio.run(child_load(path, n))
    elif kind == "fetch":
        child_fetch(path, n)
    elapsed = time.perf_counter() - t0
    print(f"{elapsed} {peak_kb()} {time.process_time()}")


def peak_kb() -> int:
    """This process's peak resident memory in KB. Linux keeps ``ru_maxrss``
    across ``exec``, so a child forked from a big parent would report the
    parent's peak: the memory map's own high-water mark (``VmHWM``, new at
    ``exec``) is read instead where there is one."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


CPU_SECONDS: dict[str, float] = {}  # of the last child of each kind


def in_child(kind: str, path: Path, n: int) -> tuple[float, float]:
    """(seconds, peak MB) of ``kind`` run in a fresh child process; the
    CPU seconds the child used (interpreter start included) are kept in
    ``CPU_SECONDS``: on a loaded machine they say more than the clock."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak_kb, cpu = done.stdout.split()
    CPU_SECONDS[kind] = float(cpu)
    return float(seconds), int(peak_kb) / 1024


PENDING_LABELS = {
    "idle": "idle child (interpreter + imports)",
    "fetch": "raw sqlite3 fetch of the rows",
    "load": "load + decode (load_input_states)",
    "recover-eager": "recover(), payloads loaded (eager)",
    "recover": "recover() + first dequeue (lazy)",
}


def pending_figures(
    scratch: Scratch, n: int, kinds: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """Each figure of ``kinds`` on a file of ``n`` pending inputs, each in a
    fresh process on its own copy: (seconds, peak MB)."""
    print(f"\n{n:,} small pending inputs, each figure in a fresh process")
    pristine = scratch.path(f"pending-{n}")
    t0 = time.perf_counter()
    build_pending(pristine, n)
    print(f"  (file built in {time.perf_counter() - t0:.1f} s)")
    figures = {}
    for kind in kinds:
        path = scratch.copy(pristine, kind)
        try:
            figures[kind] = in_child(kind, path, n)
        finally:
            scratch.remove(path)
        if kind == "held":
            print(f"  {'memory held per pending input':<38} {figures[kind][0]:7.0f} B")
        else:
            seconds, peak = figures[kind]
            print(
                f"  {PENDING_LABELS[kind]:<38} {seconds:7.2f} s   peak {peak:8.0f} MB"
                f"   (cpu {CPU_SECONDS[kind]:.2f} s)"
            )
    scratch.remove(pristine)
    return figures


def pending_recovery(scratch: Scratch, deep: int, big: int | None) -> None:
    """PD-64's goals: the recovery of ``deep`` pending inputs until the
    first dequeue, the memory each holds, and (``big``) a million."""
    figures = pending_figures(scratch, deep, [*PENDING_LABELS, "held"])
    print(
        goal(
            f"recovery of {deep:,} pending until the first dequeue",
            figures["recover"][0],
            RECOVERY_100K_GOAL,
            unit=" s",
            at_most=True,
        )
    )
    print(
        goal(
            "memory held per pending input",
            figures["held"][0],
            HELD_BYTES_GOAL,
            unit=" B",
            digits=0,
            at_most=True,
        )
    )
    if big is None:
        return
    seconds, peak = pending_figures(scratch, big, ["idle", "fetch", "recover"])[
        "recover"
    ]
    print(
        goal(
            f"recovery of {big:,} pending",
            seconds,
            RECOVERY_1M_GOAL,
            unit=" s",
            at_most=True,
        )
    )
    print(
        goal(
            f"peak memory of recovering {big:,} pending",
            peak,
            PEAK_1M_GOAL,
            unit=" MB",
            digits=0,
            at_most=True,
        )
    )


def accepted_held(scratch: Scratch, n: int) -> None:
    """Memory held per pending input when the ``n`` inputs were accepted
    live by a lazy driver (PD-65) rather than recovered."""
    path = scratch.path("accepted")

    async def measure() -> int:
        store = SqliteRuntimeStore(path, synchronous="OFF")
        try:
            driver = driver_over(store, n)
            await driver.recover()
            inputs = [PromptInput.new("a small pending prompt") for _ in range(n)]
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for inp in inputs:
                await driver.accept_input(inp)
            del inputs
            driver.drain_events()
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
        finally:
            await store.close()
        return held // n

    try:
        held = asyncio.run(measure())
    finally:
        scratch.remove(path)
    print(
        f"\n{n:,} inputs accepted live by a lazy driver (payloads past PD-65's limit shed)"
    )
    print(
        goal(
            "memory held per input accepted live",
            held,
            HELD_BYTES_GOAL,
            unit=" B",
            digits=0,
            at_most=True,
        )
    )


# ------------------------------------------------------------ coalescing


class CoalescingPrompts:
    """The default table, with prompts coalescing in their scope."""

    def resolve(self, input: PolicySubject, runtime_idle: bool) -> PolicyDecision:
        decision = DefaultPolicyTable.resolve(input, runtime_idle)
        return msgspec.structs.replace(decision, queue_mode=QueueMode.COALESCE)


def coalescing_accept(queued: int, accepts: int, repeats: int) -> float:
    """Seconds per accept that replaces the waiting input of its scope, with
    ``queued`` other inputs in the queue."""
    driver = EphemeralRuntimeDriver(
        RUNTIME_ID,
        policy_table=CoalescingPrompts(),
        max_pending_inputs=queued + 10,
    )
    for i in range(queued):
        scope = SupersessionKey(f"other-{i}")
        driver.accept_now(
            PromptInput(header=InputHeader.new(supersession_key=scope), text="x")
        )
    scope = SupersessionKey("the-scope")
    best = float("inf")
    for _ in range(repeats):
        inputs = [
            PromptInput(header=InputHeader.new(supersession_key=scope), text="x")
            for _ in range(accepts)
        ]
        t0 = time.perf_counter()
        for inp in inputs:
            driver.accept_now(inp)
        best = min(best, (time.perf_counter() - t0) / accepts)
        driver.drain_events()
    assert len(driver.queued_input_ids()) == queued + 1
    return best


def coalescing(sizes: Sequence[int], accepts: int, repeats: int) -> None:
    print("\ncoalescing accept (replaces the waiting input of its scope)")
    small, big = sizes
    figures = {n: coalescing_accept(n, accepts, repeats) for n in sizes}
    for n, seconds in figures.items():
        print(f"  {n:>7,} queued: {seconds * 1e6:8.1f} µs per accept")
    print(
        goal(
            f"coalescing accept at {big:,} queued vs {small:,}",
            figures[big] / figures[small],
            COALESCE_RATIO_GOAL,
            unit="x",
            at_most=True,
        )
    )


# ------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--dir", type=Path, help="where the scratch files go")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, path, n = args.child
        child(kind, Path(path), int(n))
        return
    batch = (200, 2_000) if args.quick else (2_000, 20_000)
    deep = 5_000 if args.quick else 100_000
    big = None if args.quick else 1_000_000
    queues = (10, 10_000) if args.quick else (10, 100_000)
    repeats = 2 if args.quick else 3
    with scratch_dir(args.dir, "scale") as scratch:
        describe_file_system(scratch)
        applied_batches(scratch, batch, repeats)
        pending_recovery(scratch, deep, big)
        accepted_held(scratch, 2_000 if args.quick else 50_000)
    coalescing(queues, accepts=200 if args.quick else 2_000, repeats=repeats + 2)


if __name__ == "__main__":
    main()
