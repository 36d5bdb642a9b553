"""Benchmark: inputs end to end through the session runtime loop on durable SQLite.

Theory of operation: every figure goes through public APIs on a
``SqliteRuntimeStore`` (WAL, ``synchronous=FULL``, its default) and is printed
beside a baseline measured in the same run, on the same file system, with the
same 1.5 KB operator prompts (``PromptInput.new``, distinct texts, built
before the clock starts):

* **baseline, one caller**: one ``PersistentRuntimeDriver`` accepting its
  prompts one after the other (``await accept_input``), draining its events
  every ``DRAIN_EVERY`` accepts: the durable-accept rate of one caller, and
  each accept's latency.
* **end to end**: ``SESSIONS`` sessions registered on one persistent
  ``RuntimeSessionAdapter`` (the store above plus a ``MemoryBlobStore``: the
  prompts carry no images), each with a no-op executor (it answers the
  receipt of everything it was handed), registered before the clock starts.
  Each session's submitter is a coroutine accepting its ``PROMPTS`` prompts
  one after the other with ``accept_input_with_completion``; all submitters
  run at once under ``asyncio.gather``. After each accept a task awaits the
  handle (``handle.wait()``) and stamps ``time.perf_counter()`` when it
  returns. The clock runs from the first accept call until the last handle
  resolved; completions per second = inputs / that time. An input's latency
  is its resolution stamp minus the start of its accept call: the submitters
  run ahead of their loops (a prompt always gets a run of its own, C-20), so
  it includes the wait behind the session's earlier prompts, and the stamp
  comes a few event-loop iterations after the loop resolved the waiter (the
  shield in ``wait()`` and the task's wake-up), as a caller sees it.

Per input the loop costs two store writes: the accept, and the run's end
(receipt, consumed state and phase in one commit, PD-70).
The store is a subclass that counts its calls, the writer thread's commit
groups and the commits a lone caller makes inline on the event loop's thread
(the writer's ``inline`` hook), to show group commit at work, and profiles the writer
thread when asked (cProfile hooks only the thread that enables it). Each repeat gets a fresh database file (removed
after it); the repeats run in rounds (baseline, then end to end), so a slow
spell of a shared machine or disk hits both and their ratio holds; each
figure is the best of its rounds, and the end-to-end latencies and counts are
those of its best round. The garbage collector stays on. The files live in a
temporary directory next to the project (the project's file system, not
``/tmp``), removed at the end.

Run with ``.venv/bin/python bench/sessions.py`` (``--quick`` for 20 sessions of
20 prompts and fewer rounds, ``--profile`` to add a cProfile of one more
end-to-end pass).
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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec
from goals import goal
from sqlite_tools import (
    GroupCountingStore,
    Scratch,
    count,
    describe_file_system,
    scratch_dir,
)

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import LogicalRuntimeId, RunId, SessionId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
from meerkat_runtime.sessions.completion import CompletedWithoutResult, CompletionHandle
from meerkat_runtime.sessions.executor import (
    CoreApplyOutput,
    RunControlCommand,
    RunPrimitive,
    receipt_for,
)
from meerkat_runtime.store import records
from meerkat_runtime.store.base import SessionDelta

GOAL = 0.9  # end-to-end completions/s / one caller's durable accepts/s
PROMPT_BYTES = 1536
DRAIN_EVERY = 64  # baseline: accepts between two drain_events()
BASELINE_ID = LogicalRuntimeId("bench-sessions-baseline")
T = TypeVar("T")
_FILLER = "The quick brown fox jumps over the lazy dog, then naps. " * 30


def text(i: int) -> str:
    """A distinct ASCII text of exactly ``PROMPT_BYTES`` bytes."""
    body = f"prompt {i:08d}: {_FILLER}"[:PROMPT_BYTES]
    assert len(body.encode()) == PROMPT_BYTES
    return body


def prompts(start: int, stop: int) -> list[PromptInput]:
    return [PromptInput.new(text(i)) for i in range(start, stop)]


# ------------------------------------------------------------ store, executor


class BenchStore(GroupCountingStore):
    """The group-counting store, also counting its calls by name and the
    commits made inline."""

    def __init__(self, path: Path) -> None:
        # Set before the writer thread starts (the base __init__ starts it).
        self.inline = 0  # commits made inline, without the writer thread
        self.calls: Counter[str] = Counter()
        super().__init__(path)
        self.writer.hooks.inline = self._inline

    def reset_counts(self) -> None:
        self.groups.clear()
        self.inline = 0
        self.calls.clear()

    def _inline(self) -> None:
        # A lone caller's write, committed on the event loop's thread.
        self.inline += 1

    async def persist_input_state(
        self, runtime_id: LogicalRuntimeId, state: InputState
    ) -> None:
        self.calls["persist_input_state"] += 1
        await super().persist_input_state(runtime_id, state)

    async def atomic_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
    ) -> None:
        self.calls["atomic_lifecycle_commit"] += 1
        await super().atomic_lifecycle_commit(runtime_id, runtime_state, input_states)

    async def atomic_apply(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        input_updates: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        self.calls["atomic_apply"] += 1
        await super().atomic_apply(
            runtime_id, session_delta, receipt, input_updates, session_store_key
        )

    async def atomic_apply_and_lifecycle_commit(
        self,
        runtime_id: LogicalRuntimeId,
        session_delta: SessionDelta | None,
        receipt: RunBoundaryReceipt,
        runtime_state: RuntimeState,
        input_states: Sequence[InputState],
        session_store_key: str | None = None,
    ) -> None:
        self.calls["atomic_apply_and_lifecycle_commit"] += 1
        await super().atomic_apply_and_lifecycle_commit(
            runtime_id,
            session_delta,
            receipt,
            runtime_state,
            input_states,
            session_store_key,
        )

    async def load_boundary_receipt(
        self, runtime_id: LogicalRuntimeId, run_id: RunId, sequence: int
    ) -> RunBoundaryReceipt | None:
        self.calls["load_boundary_receipt (read)"] += 1
        return await super().load_boundary_receipt(runtime_id, run_id, sequence)


class NoOpExecutor:
    """Applies nothing and answers the receipt of everything it was handed."""

    def __init__(self) -> None:
        self.runs = 0

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        self.runs += 1
        return CoreApplyOutput(receipt=receipt_for(run_id, primitive))

    async def control(self, command: RunControlCommand) -> None:
        pass


# ------------------------------------------------------------ files


# ------------------------------------------------------------ baseline


@dataclass(frozen=True, slots=True)
class Commits:
    """A store's commits: the writer thread's groups (requests in each) and
    the writes committed inline by a lone caller."""

    groups: list[int]
    inline: int

    @classmethod
    def of(cls, store: BenchStore) -> Commits:
        return cls(list(store.groups), store.inline)

    @property
    def total(self) -> int:
        return len(self.groups) + self.inline

    @property
    def requests(self) -> int:
        return sum(self.groups) + self.inline

    def describe(self, inputs: int) -> str:
        grouped = (
            f"{len(self.groups):,} by the writer thread for {sum(self.groups):,} "
            f"requests ({sum(self.groups) / len(self.groups):.1f} per commit, "
            f"largest {max(self.groups)})"
            if self.groups
            else "none by the writer thread"
        )
        return (
            f"{self.total:,} SQLite commits for {self.requests:,} writes "
            f"({self.total / inputs:.3f} commits per input): {grouped}, "
            f"{self.inline:,} inline"
        )


@dataclass(slots=True)
class Baseline:
    """One repeat of the one-caller durable accepts."""

    elapsed: float
    latencies: list[float]
    commits: Commits

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


async def one_caller(path: Path, inputs: list[PromptInput]) -> Baseline:
    store = BenchStore(path)
    try:
        driver = PersistentRuntimeDriver(BASELINE_ID, store, MemoryBlobStore())
        latencies: list[float] = []
        outcome = None
        gc.collect()
        t0 = time.perf_counter()
        for index, inp in enumerate(inputs, 1):
            start = time.perf_counter()
            outcome = await driver.accept_input(inp)
            latencies.append(time.perf_counter() - start)
            if index % DRAIN_EVERY == 0:
                driver.drain_events()
        elapsed = time.perf_counter() - t0
        driver.drain_events()
        assert isinstance(outcome, Accepted), outcome
    finally:
        await store.close()
    return Baseline(elapsed, latencies, Commits.of(store))


def run_baseline(scratch: Scratch, inputs: list[PromptInput]) -> Baseline:
    path = scratch.path("one-caller")
    result = asyncio.run(one_caller(path, inputs))
    assert count(path, records.INPUTS) == len(inputs)
    scratch.remove(path)
    return result


# ------------------------------------------------------------ end to end


@dataclass(slots=True)
class EndToEnd:
    """One repeat of the end-to-end run."""

    elapsed: float  # first accept call -> last handle resolved
    accepts_done: float  # first accept call -> last accept returned
    latencies: list[float]  # accept call start -> handle resolved
    accept_latencies: list[float]  # accept call start -> accept returned
    commits: Commits
    calls: Counter[str]
    events_held: int  # driver events nobody drained, all sessions
    profile: cProfile.Profile | None = None
    writer_profile: cProfile.Profile | None = None

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


@dataclass(slots=True)
class Stamps:
    latencies: list[float] = field(default_factory=list)
    accept_latencies: list[float] = field(default_factory=list)
    last_accept: float = 0.0
    last_resolved: float = 0.0


async def submitter(
    adapter: RuntimeSessionAdapter,
    session_id: SessionId,
    inputs: list[PromptInput],
    stamps: Stamps,
    waiters: list[asyncio.Task[None]],
) -> None:
    """Accept the session's prompts one after the other; a task per input
    awaits its handle and stamps the resolution."""

    async def wait_for(handle: CompletionHandle, start: float) -> None:
        outcome = await handle.wait()
        now = time.perf_counter()
        assert isinstance(outcome, CompletedWithoutResult), outcome
        stamps.latencies.append(now - start)
        stamps.last_resolved = max(stamps.last_resolved, now)

    for inp in inputs:
        start = time.perf_counter()
        outcome, handle = await adapter.accept_input_with_completion(session_id, inp)
        accepted = time.perf_counter()
        stamps.accept_latencies.append(accepted - start)
        stamps.last_accept = max(stamps.last_accept, accepted)
        assert isinstance(outcome, Accepted), outcome
        if handle is None:  # already finished: resolved at the accept
            stamps.latencies.append(accepted - start)
            stamps.last_resolved = max(stamps.last_resolved, accepted)
            continue
        waiters.append(asyncio.create_task(wait_for(handle, start)))


async def end_to_end(
    path: Path, sessions: list[list[PromptInput]], profile: bool = False
) -> EndToEnd:
    store = BenchStore(path)
    adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
    ids = [SessionId(f"bench-session-{i:03d}") for i in range(len(sessions))]
    executors = [NoOpExecutor() for _ in ids]
    try:
        for session_id, executor in zip(ids, executors, strict=True):
            await adapter.register_session_with_executor(session_id, executor)
        store.reset_counts()  # registration (recover, attach) is not counted
        stamps = Stamps()
        waiters: list[asyncio.Task[None]] = []
        profiler = cProfile.Profile() if profile else None
        gc.collect()
        if profiler is not None:
            store.profiling = True
            profiler.enable()
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                submitter(adapter, session_id, inputs, stamps, waiters)
                for session_id, inputs in zip(ids, sessions, strict=True)
            )
        )
        await asyncio.gather(*waiters)
        if profiler is not None:
            profiler.disable()
            store.profiling = False
        total = sum(len(s) for s in sessions)
        assert len(stamps.latencies) == total
        assert sum(e.runs for e in executors) == total  # one run per prompt
        result = EndToEnd(
            elapsed=stamps.last_resolved - t0,
            accepts_done=stamps.last_accept - t0,
            latencies=stamps.latencies,
            accept_latencies=stamps.accept_latencies,
            commits=Commits.of(store),
            calls=Counter(store.calls),
            events_held=sum(
                len(adapter.sessions[i].driver.drain_events()) for i in ids
            ),
            profile=profiler,
            writer_profile=store.writer_profile if profile else None,
        )
        for session_id, inputs in zip(ids, sessions, strict=True):
            last = await adapter.input_state(session_id, inputs[-1].id())
            assert last is not None
            assert last.current_state() is InputLifecycleState.CONSUMED
    finally:
        await adapter.close()
        await store.close()
    return result


def run_end_to_end(
    scratch: Scratch, sessions: list[list[PromptInput]], profile: bool = False
) -> EndToEnd:
    path = scratch.path("end-to-end")
    result = asyncio.run(end_to_end(path, sessions, profile))
    total = sum(len(s) for s in sessions)
    assert count(path, records.INPUTS) == total
    assert count(path, records.RECEIPTS) == total
    scratch.remove(path)
    return result


# ------------------------------------------------------------ report


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in (0, 100]."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def spread(values: Sequence[float]) -> str:
    return f"median / best of the rounds {statistics.median(values) / min(values):.2f}x"


def environment(scratch: Scratch, rounds: int) -> None:
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"msgspec {msgspec.__version__}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs"
    )
    describe_file_system(scratch)
    print(
        "every file WAL + synchronous=FULL; fresh file per repeat; GC on; "
        f"best of {rounds} interleaved rounds (one caller, then end to end)"
    )


def print_profile(title: str, profile: cProfile.Profile, top: int) -> None:
    print(title)
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--quick", action="store_true", help="20 sessions x 20 prompts, fewer rounds"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add a cProfile of one more end-to-end pass (event loop and writer)",
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
        n_sessions, per_session, n_baseline, n_rounds = 20, 20, 400, 2
    else:
        n_sessions, per_session, n_baseline, n_rounds = 100, 100, 2_000, 3
    total = n_sessions * per_session

    with scratch_dir(args.dir, "sessions") as scratch:
        environment(scratch, n_rounds)
        baseline_inputs = prompts(0, n_baseline)
        sessions = [
            prompts(n_baseline + i * per_session, n_baseline + (i + 1) * per_session)
            for i in range(n_sessions)
        ]
        print(
            f"prompt {PROMPT_BYTES:,} bytes (PromptInput.new, distinct texts, "
            "built before timing); no-op executor; MemoryBlobStore"
        )

        baselines: list[Baseline] = []
        runs: list[EndToEnd] = []
        for _ in range(n_rounds):
            baselines.append(run_baseline(scratch, baseline_inputs))
            runs.append(run_end_to_end(scratch, sessions))
        base = max(baselines, key=lambda b: b.rate)
        best = max(runs, key=lambda r: r.rate)

        print(
            f"\nbaseline, one caller: one PersistentRuntimeDriver, {n_baseline:,} "
            "sequential `await accept_input` per repeat"
        )
        print(
            f"  {base.rate:>10,.0f} durable accepts/s  "
            f"({spread([1 / b.rate for b in baselines])})"
        )
        print(
            f"  accept latency p50 {ms(percentile(base.latencies, 50))}, "
            f"p99 {ms(percentile(base.latencies, 99))}"
        )
        print(f"  {base.commits.describe(n_baseline)}")

        print(
            f"\nend to end: {n_sessions} sessions x {per_session} prompts = "
            f"{total:,} inputs, accept_input_with_completion, submitters gathered, "
            "runtime loop per session"
        )
        rate = best.rate
        print(
            f"  {rate:>10,.0f} completions/s  ({total:,} in {best.elapsed:.3f} s, "
            f"first accept -> last handle resolved; "
            f"{spread([1 / r.rate for r in runs])})"
        )
        print(
            f"  accept -> completion latency p50 {ms(percentile(best.latencies, 50))}, "
            f"p99 {ms(percentile(best.latencies, 99))}, "
            f"max {ms(max(best.latencies))}"
        )
        print(
            f"  accept call alone (ack) p50 {ms(percentile(best.accept_latencies, 50))}, "
            f"p99 {ms(percentile(best.accept_latencies, 99))}; the last accept "
            f"returned at {best.accepts_done:.3f} s "
            f"({total / best.accepts_done:,.0f} acks/s while the loops ran)"
        )
        ratio = rate / base.rate
        print(
            goal(
                "end to end",
                ratio,
                GOAL,
                unit="x",
                of="one caller's durable accepts",
            )
        )

        print("\ncommits (end to end, best round; registration not counted):")
        print(f"  {best.commits.describe(total)}")
        print(f"  one caller, for comparison: {base.commits.describe(n_baseline)}")
        print("  store calls per input (end to end):")
        for name, calls in sorted(best.calls.items()):
            print(f"    {name:<34} {calls / total:>5.2f}  ({calls:,})")
        print(
            f"  driver events never drained by the adapter: {best.events_held:,} "
            f"({best.events_held / total:.1f} per input, held until this "
            "benchmark drained them)"
        )

        if args.profile:
            prof = run_end_to_end(scratch, sessions, profile=True)
            assert prof.profile is not None
            assert prof.writer_profile is not None
            print(
                f"\ncProfile of one more end-to-end pass: {prof.elapsed:.3f} s "
                f"under the profiler ({prof.rate:,.0f} completions/s)"
            )
            print_profile("event loop thread, by own time:", prof.profile, 15)
            if prof.commits.groups:
                print_profile(
                    "store writer thread, by own time:", prof.writer_profile, 15
                )
            else:
                print(
                    "store writer thread: no commits (every write was committed "
                    "inline, on the event loop's thread, so it is profiled above)"
                )


if __name__ == "__main__":
    main()
