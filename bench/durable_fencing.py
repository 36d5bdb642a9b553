"""The cost of ownership (PD-36) on durable accepts, for ``bench/durable.py``.

Theory of operation: the same accepts as ``durable.py``'s one-caller and
64-session figures, through the same store class, twice in each round:
once by drivers with no ownership (their writes go to the store as they
are) and once by drivers that claimed their runtime first (``OwnerLeases``,
as the session adapter does), so every write goes through the fenced view
and the store checks the lease's epoch inside the write's transaction.
Claims happen before the clock starts; with the default lease lifetime no
renewal falls inside a repeat. The goal is a ratio of the two rates of one
run: fenced accepts at most 5 % slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from durable_parts import SESSIONS, Clock, Repeat, rounds
from goals import goal
from sqlite_tools import GroupCountingStore as BenchStore
from sqlite_tools import Scratch, count

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.sessions.ownership import OwnerLeases
from meerkat_runtime.store import records

OVERHEAD_GOAL = 1.05  # fenced seconds per ack / unfenced, at most


def never_lost(runtime_id: LogicalRuntimeId, reason: str) -> None:
    raise AssertionError(f"benchmark lost runtime {runtime_id}: {reason}")


async def accepts(
    path: Path, sessions: Sequence[Sequence[PromptInput]], fenced: bool, clock: Clock
) -> None:
    """Every session's prompts, one after the other per session, all
    sessions at once; each session a driver of its own runtime."""
    store = BenchStore(path)
    ownership = OwnerLeases(store, "bench", never_lost) if fenced else None
    try:
        drivers = [
            PersistentRuntimeDriver(
                LogicalRuntimeId(f"fencing-{i:02d}"),
                store,
                MemoryBlobStore(),
                ownership=ownership,
            )
            for i in range(len(sessions))
        ]
        for driver in drivers:
            await driver.recover()  # claims the runtime when fenced
        with clock.section():
            await asyncio.gather(
                *(accept_all(d, s) for d, s in zip(drivers, sessions, strict=True))
            )
    finally:
        if ownership is not None:
            await ownership.close()
        await store.close()


async def accept_all(
    driver: PersistentRuntimeDriver, inputs: Sequence[PromptInput]
) -> None:
    for inp in inputs:
        outcome = await driver.accept_input(inp)
        assert isinstance(outcome, Accepted), outcome
    driver.drain_events()


def one_run(
    scratch: Scratch, sessions: Sequence[Sequence[PromptInput]], fenced: bool
) -> Repeat:
    """Seconds per ack."""
    total = sum(len(s) for s in sessions)

    def run() -> float:
        path = scratch.path("fencing")
        clock = Clock()
        asyncio.run(accepts(path, sessions, fenced, clock))
        assert count(path, records.INPUTS) == total
        scratch.remove(path)
        return clock.elapsed / total

    return run


def fencing_report(
    scratch: Scratch,
    one_caller: Sequence[PromptInput],
    sessions: Sequence[Sequence[PromptInput]],
    repeats: int,
) -> None:
    """Print the accept rates with and without ownership checks, and the
    goal, for one caller and for ``SESSIONS`` sessions."""
    figures = rounds(
        repeats,
        {
            "one": one_run(scratch, [one_caller], False),
            "one_fenced": one_run(scratch, [one_caller], True),
            "many": one_run(scratch, sessions, False),
            "many_fenced": one_run(scratch, sessions, True),
        },
    )
    best = {name: min(values) for name, values in figures.items()}
    print(
        "\nfencing (PD-36): the same accepts by drivers that claimed their "
        "runtime, every write checked against the lease's epoch, beside "
        "drivers with no ownership (same rounds)"
    )
    for label, plain, fenced in (
        ("one caller", "one", "one_fenced"),
        (f"{SESSIONS} sessions", "many", "many_fenced"),
    ):
        ratio = best[fenced] / best[plain]
        print(
            f"  {label:<12} without {1 / best[plain]:>9,.0f} acks/s, "
            f"with {1 / best[fenced]:>9,.0f} acks/s: {(ratio - 1) * 100:+.1f} %"
        )
        print(
            goal(
                f"fencing cost, {label}",
                ratio,
                OVERHEAD_GOAL,
                unit="x",
                of="unfenced time per ack",
                digits=3,
                at_most=True,
            )
        )
