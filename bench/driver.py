"""Benchmark: the in-memory ``EphemeralRuntimeDriver``, accepts and full lifecycles.

Theory of operation: single-threaded, one driver at a time, durable 1.5 KB
operator prompts (``PromptInput.new``) with distinct texts. Everything a
caller builds (the inputs, the run ids, the ``BoundaryApplied`` and
``RunCompleted`` events) is built before the clock starts and reported as a
figure of its own, so the timed loops measure only the driver. Each repeat
gets a fresh driver and starts after a ``gc.collect()``: the driver keeps every
input it ever saw (terminal ones too), so a driver shared between repeats
would time ever larger ledgers and lanes, and the garbage collector's full
passes would grow with them. A fresh driver per repeat bounds the ledger and
the queue to the repeat's size and makes the repeats alike. The event buffer
is drained as a runtime loop would: every ``DRAIN_EVERY`` accepts in the
accept loop and once per turn in the lifecycle loop. Each figure is the best
of several repeats, which filters out scheduler noise; the repeats run in
rounds (every measurement once per round), so a slow spell of the machine
hits all of them rather than one, and their ratios hold. The overhead of the
async ``accept_input`` is too small for whole runs to resolve, so it is
measured on paired chunks instead (``paired_async_overhead``). The garbage
collector stays enabled, as in a deployed process; the figures with it
disabled are a diagnostic only (how much of the cost is collector passes).

Machines are shared and noisy, so the run also times two reference loops
(a dict insert plus a deque append per item, and ``codec.encode`` of the same
prompt input) and prints the driver's cost as a multiple of them: a change in
those ratios between runs is a change in the driver, not in the machine.

Run with ``.venv/bin/python bench/driver.py`` (``--quick`` for fewer repeats
of the same sizes, ``--profile`` to add a cProfile of accepts).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import platform
import pstats
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from goals import goal

from meerkat_runtime import codec
from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.outcomes import Accepted, AcceptOutcome
from meerkat_runtime.runs import (
    BoundaryApplied,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunCompleted,
    RunEvent,
)

ACCEPT_GOAL = 50_000.0  # accepts per second
ACCEPT_BUDGET_US = 15.0  # in-memory work per accept the durable path can afford
LIFECYCLE_GOAL = 15_000.0  # full lifecycles per second
PROMPT_BYTES = 1536
DRAIN_EVERY = 64  # accepts between two drain_events() in the accept loop
PROFILE_ACCEPTS = 10_000
RUNTIME_ID = LogicalRuntimeId("bench-driver")
_FILLER = "The quick brown fox jumps over the lazy dog, then naps. " * 30


def prompt_texts(n: int) -> list[str]:
    """``n`` distinct ASCII prompts of exactly ``PROMPT_BYTES`` bytes."""
    texts = [(f"prompt {i:08d}: {_FILLER}")[:PROMPT_BYTES] for i in range(n)]
    assert all(len(t.encode()) == PROMPT_BYTES for t in texts)
    return texts


@dataclass(frozen=True, slots=True)
class Turn:
    """One full lifecycle's caller-built values."""

    input: PromptInput
    ids: list[InputId]
    run_id: RunId
    boundary: BoundaryApplied
    completed: RunCompleted


def make_turn(inp: PromptInput) -> Turn:
    input_id, run_id = inp.id(), RunId.new()
    receipt = RunBoundaryReceipt(
        run_id=run_id,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=[input_id],
        message_count=1,
        sequence=0,
    )
    return Turn(
        input=inp,
        ids=[input_id],
        run_id=run_id,
        boundary=RunEvent.BoundaryApplied(run_id=run_id, receipt=receipt),
        completed=RunEvent.RunCompleted(run_id=run_id, consumed_input_ids=[input_id]),
    )


# ------------------------------------------------------------ timing


def timed(body: Callable[[], object], gc_enabled: bool = True) -> float:
    """Seconds ``body`` takes, after a full collection; the collector is on
    unless ``gc_enabled`` is false (then it is re-enabled afterwards)."""
    gc.collect()
    if not gc_enabled:
        gc.disable()
    try:
        t0 = time.perf_counter()
        body()
        return time.perf_counter() - t0
    finally:
        gc.enable()


# Each ``one_*`` below builds one repeat: a callable that runs it once and
# returns seconds per item. ``rounds`` interleaves them.
Repeat = Callable[[], float]


def rounds(repeats: int, runs: dict[str, Repeat]) -> dict[str, list[float]]:
    """Every run's figures over ``repeats`` rounds, each round running each
    once in turn, so that a slow spell of a shared machine hits all the
    figures alike and the ratios between them stay meaningful."""
    figures: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            figures[name].append(run())
    return figures


def chunked(inputs: Sequence[PromptInput]) -> list[Sequence[PromptInput]]:
    """The inputs in runs of ``DRAIN_EVERY``: one drain after each run."""
    return [inputs[i : i + DRAIN_EVERY] for i in range(0, len(inputs), DRAIN_EVERY)]


def one_build_inputs(texts: list[str]) -> Repeat:
    """Seconds per ``PromptInput.new`` (the built inputs are dropped)."""

    def body() -> None:
        for text in texts:
            PromptInput.new(text)

    return lambda: timed(body) / len(texts)


def one_build_turns(inputs: list[PromptInput]) -> Repeat:
    """Seconds per turn built: run id, boundary and completion events."""

    def body() -> None:
        for inp in inputs:
            make_turn(inp)

    return lambda: timed(body) / len(inputs)


def accepts(driver: EphemeralRuntimeDriver, chunks: list[Sequence[PromptInput]]) -> int:
    """Accept every input, draining the event buffer after each chunk; the
    number of events drained."""
    events = 0
    outcome: AcceptOutcome | None = None
    for chunk in chunks:
        for inp in chunk:
            outcome = driver.accept_now(inp)
        events += len(driver.drain_events())
    assert isinstance(outcome, Accepted), outcome
    return events


async def accepts_async(
    driver: EphemeralRuntimeDriver, chunks: list[Sequence[PromptInput]]
) -> float:
    """``accepts`` through ``await accept_input``, timed inside the loop."""
    t0 = time.perf_counter()
    for chunk in chunks:
        for inp in chunk:
            await driver.accept_input(inp)
        driver.drain_events()
    return time.perf_counter() - t0


def one_accepts(inputs: list[PromptInput], gc_enabled: bool = True) -> Repeat:
    """Seconds per ``accept_now``, into a fresh driver."""
    chunks = chunked(inputs)

    def run() -> float:
        driver = EphemeralRuntimeDriver(RUNTIME_ID)
        events = 0

        def body() -> None:
            nonlocal events
            events = accepts(driver, chunks)

        elapsed = timed(body, gc_enabled)
        assert events == 2 * len(inputs)  # InputAccepted, InputQueued
        assert len(driver.queued_input_ids()) == len(inputs)
        return elapsed / len(inputs)

    return run


def one_accepts_async(inputs: list[PromptInput]) -> Repeat:
    """Seconds per ``await accept_input``, into a fresh driver."""
    chunks = chunked(inputs)

    def run() -> float:
        driver = EphemeralRuntimeDriver(RUNTIME_ID)
        gc.collect()
        elapsed = asyncio.run(accepts_async(driver, chunks))
        assert len(driver.queued_input_ids()) == len(inputs)
        return elapsed / len(inputs)

    return run


async def paired_async_overhead(chunks: list[Sequence[PromptInput]]) -> float:
    """Median over chunks of (await accept_input - accept_now) per accept.

    Two fresh drivers take the same chunk back to back, one each way, the
    order alternating, collector off: a chunk lasts about a millisecond, so
    most pairs see the same machine, and the median drops the pairs that did
    not. Whole-run figures differ by more than the overhead from run to run.
    """
    sync, via_await = (EphemeralRuntimeDriver(RUNTIME_ID) for _ in range(2))
    diffs: list[float] = []
    for index, chunk in enumerate(chunks):
        seconds: dict[bool, float] = {}
        for awaited in (False, True) if index % 2 else (True, False):
            t0 = time.perf_counter()
            if awaited:
                for inp in chunk:
                    await via_await.accept_input(inp)
            else:
                for inp in chunk:
                    sync.accept_now(inp)
            seconds[awaited] = time.perf_counter() - t0
        sync.drain_events()
        via_await.drain_events()
        diffs.append((seconds[True] - seconds[False]) / len(chunk))
    return statistics.median(diffs)


def one_async_overhead(inputs: list[PromptInput]) -> Repeat:
    """Seconds that ``await accept_input`` adds to an accept."""
    chunks = chunked(inputs)

    def run() -> float:
        gc.collect()
        gc.disable()
        try:
            return asyncio.run(paired_async_overhead(chunks))
        finally:
            gc.enable()

    return run


def lifecycles(driver: EphemeralRuntimeDriver, turns: list[Turn]) -> int:
    """accept -> start_run -> stage -> boundary -> complete per turn, draining
    the events once per turn; the number of events drained."""
    events = 0
    for turn in turns:
        driver.accept_now(turn.input)
        driver.start_run(turn.run_id)
        driver.stage_batch(turn.ids, turn.run_id)
        driver.run_event_now(turn.boundary)
        driver.run_event_now(turn.completed)
        events += len(driver.drain_events())
    return events


def one_lifecycles(inputs: list[PromptInput], gc_enabled: bool = True) -> Repeat:
    """Seconds per full lifecycle, in a fresh driver. The turns are built per
    repeat, before the clock starts, and dropped after it: held for the whole
    run they would swell every other measurement's collector passes."""

    def run() -> float:
        turns = [make_turn(inp) for inp in inputs]
        driver = EphemeralRuntimeDriver(RUNTIME_ID)
        events = 0

        def body() -> None:
            nonlocal events
            events = lifecycles(driver, turns)

        elapsed = timed(body, gc_enabled)
        # InputAccepted, InputQueued, InputStaged, InputApplied, InputConsumed
        assert events == 5 * len(turns), events
        last = driver.input_state(turns[-1].ids[0])
        assert last is not None
        assert last.current_state() is InputLifecycleState.CONSUMED
        assert driver.runtime_state() is RuntimeState.IDLE
        return elapsed / len(turns)

    return run


# The reference loops make several passes, so that a repeat of theirs lasts
# about as long as one of the driver's (a tenth of a second or more): a short
# loop slips between the pauses of a shared machine that a long one suffers.


def one_reference_dict_deque(n: int, passes: int = 100) -> Repeat:
    """Seconds per item of a dict insert plus a deque append."""
    keys = [f"key-{i:08d}" for i in range(n)]

    def body() -> None:
        for _ in range(passes):
            table: dict[str, str] = {}
            lane: deque[str] = deque()
            for key in keys:
                table[key] = key
                lane.append(key)

    return lambda: timed(body) / (n * passes)


def one_reference_encode(inputs: list[PromptInput], passes: int = 5) -> Repeat:
    """Seconds per ``codec.encode`` of a 1.5 KB prompt input."""

    def body() -> None:
        for _ in range(passes):
            for inp in inputs:
                codec.encode(inp)

    return lambda: timed(body) / (len(inputs) * passes)


def profile_accepts(inputs: list[PromptInput]) -> None:
    """cProfile of ``PROFILE_ACCEPTS`` accepts, top 15 functions by tottime."""
    chunks = chunked(inputs[:PROFILE_ACCEPTS])
    driver = EphemeralRuntimeDriver(RUNTIME_ID)
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    accepts(driver, chunks)
    profiler.disable()
    count = sum(len(chunk) for chunk in chunks)
    print(f"cProfile of {count:,} accepts (profiler overhead inflates the times)")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(15)


# ------------------------------------------------------------ report


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats: shorter, noisier"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"add a cProfile of {PROFILE_ACCEPTS:,} accepts",
    )
    args = parser.parse_args(argv)
    # --quick keeps the driver sizes and cuts the repeats: the collector's
    # share of the cost grows with the number of live objects (up to about
    # 20k accepts here), so smaller drivers would report a smaller cost.
    n_accepts, n_lifecycles = 20_000, 10_000
    repeats = 2 if args.quick else 5
    n_inputs = max(n_accepts, n_lifecycles, PROFILE_ACCEPTS if args.profile else 0)

    print(
        f"Python {platform.python_version()}, best of {repeats} interleaved "
        "rounds, single-threaded, fresh driver per repeat, GC on unless stated"
    )
    print(
        f"prompt {PROMPT_BYTES:,} bytes; events drained every {DRAIN_EVERY} "
        "accepts (accept loop) and once per turn (lifecycle loop)"
    )

    texts = prompt_texts(n_inputs)
    inputs = [PromptInput.new(text) for text in texts]
    accept_inputs, lifecycle_inputs = inputs[:n_accepts], inputs[:n_lifecycles]
    figures = rounds(
        repeats,
        {
            "build_input": one_build_inputs(texts[:n_accepts]),
            "build_turn": one_build_turns(lifecycle_inputs),
            "ref_dict": one_reference_dict_deque(n_accepts),
            "ref_encode": one_reference_encode(accept_inputs),
            "accept": one_accepts(accept_inputs),
            "accept_no_gc": one_accepts(accept_inputs, gc_enabled=False),
            "accept_async": one_accepts_async(accept_inputs),
            "async_overhead": one_async_overhead(accept_inputs),
            "lifecycle": one_lifecycles(lifecycle_inputs),
            "lifecycle_no_gc": one_lifecycles(lifecycle_inputs, gc_enabled=False),
        },
    )
    best = {name: min(values) for name, values in figures.items()}
    ref_dict, ref_encode = best["ref_dict"], best["ref_encode"]
    accept, accept_no_gc = best["accept"], best["accept_no_gc"]
    accept_async = best["accept_async"]
    overhead = statistics.median(figures["async_overhead"])
    lifecycle, lifecycle_no_gc = best["lifecycle"], best["lifecycle_no_gc"]

    per_input, per_turn = best["build_input"], best["build_turn"]
    print("caller's cost, built before timing (not in the driver figures)")
    print(f"  PromptInput.new (1.5 KB)                     {us(per_input):>10} each")
    print(f"  RunId + BoundaryApplied + RunCompleted       {us(per_turn):>10} per turn")
    print("machine reference, same rounds")
    print(
        f"  dict insert + deque append       {1 / ref_dict:>12,.0f} items/s "
        f"({us(ref_dict)})"
    )
    print(
        f"  codec.encode of the prompt input {1 / ref_encode:>12,.0f} items/s "
        f"({us(ref_encode)})"
    )

    rate = 1 / accept
    print(f"accept_now: {n_accepts:,} accepts per repeat into one fresh driver")
    print(f"  {rate:>12,.0f} accepts/s = {us(accept)} per accept")
    print(goal("accept_now", rate, ACCEPT_GOAL, unit=" accepts/s", digits=0))
    print(
        goal(
            "accept_now per accept",
            accept * 1e6,
            ACCEPT_BUDGET_US,
            unit=" µs",
            at_most=True,
        )
    )
    print(
        f"  = {accept / ref_dict:,.0f}x a dict insert + deque append, "
        f"{accept / ref_encode:.1f}x a codec.encode of the prompt"
    )
    print(
        f"  GC disabled (diagnostic): {us(accept_no_gc)} per accept; "
        f"collector passes cost {us(accept - accept_no_gc)} "
        f"({(accept - accept_no_gc) / accept:.0%})"
    )
    print(f"  await accept_input, one asyncio.run loop: {us(accept_async)} per accept")
    print(
        f"  await accept_input overhead over accept_now (paired chunks, GC off): "
        f"{overhead * 1e6:+.2f} µs per accept ({overhead / accept_no_gc:+.1%})"
    )

    rate = 1 / lifecycle
    print(
        f"full lifecycle: {n_lifecycles:,} per repeat into one fresh driver "
        "(accept_now, start_run, stage_batch, BoundaryApplied, RunCompleted)"
    )
    print(f"  {rate:>12,.0f} lifecycles/s = {us(lifecycle)} per lifecycle")
    print(goal("full lifecycle", rate, LIFECYCLE_GOAL, unit=" lifecycles/s", digits=0))
    print(
        f"  = {lifecycle / ref_dict:,.0f}x a dict insert + deque append, "
        f"{lifecycle / accept:.1f}x an accept"
    )
    print(
        f"  GC disabled (diagnostic): {us(lifecycle_no_gc)} per lifecycle; "
        f"collector passes cost {us(lifecycle - lifecycle_no_gc)} "
        f"({(lifecycle - lifecycle_no_gc) / lifecycle:.0%})"
    )

    if args.profile:
        profile_accepts(inputs)


if __name__ == "__main__":
    main()
