"""Pieces bench/durable.py and bench/durable_floors.py share: the inputs
and boundary cases, their stored rows, plain sqlite3 files configured as the
store configures its own, and the timing (clocks, interleaved rounds). Not a
benchmark itself."""

from __future__ import annotations

import cProfile
import gc
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlite_tools import GroupCountingStore as BenchStore
from sqlite_tools import Scratch, count

from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.driver.face import RuntimeDriver
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Flow, FlowStepInput, InputHeader, PromptInput
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.runs import (
    BoundaryApplied,
    RunApplyBoundary,
    RunBoundaryReceipt,
    RunEvent,
)
from meerkat_runtime.store import records
from meerkat_runtime.store.sqlite_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    apply_step,
)

SESSIONS = 64
BATCH = 10  # inputs per boundary commit
PROMPT_BYTES = 1536
DRAIN_EVERY = 64  # accepts between two drain_events() per driver
RUNTIME_ID = LogicalRuntimeId("bench-durable")
_FILLER = "The quick brown fox jumps over the lazy dog, then naps. " * 30

# A new row takes the next arrival number of its runtime, as every writer of
# schema 3 must (PD-42).
INSERT_ROW = (
    "INSERT INTO runtime_input_states (runtime_id, input_id, state_json, arrival) "
    "VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(arrival), 0) + 1 "
    "FROM runtime_input_states WHERE runtime_id = ?1))"
)
UPSERT_ROW = (
    f"{INSERT_ROW} ON CONFLICT (runtime_id, input_id) "
    "DO UPDATE SET state_json = excluded.state_json"
)
INSERT_RECEIPT = "INSERT INTO runtime_boundary_receipts VALUES (?, ?, ?, ?)"
SELECT_ROWS = (
    "SELECT input_id, state_json FROM runtime_input_states "
    "WHERE runtime_id = ? ORDER BY arrival"
)

Row = tuple[str, str, bytes]  # (runtime_id, input_id, state_json)


# ------------------------------------------------------------ inputs


def text(i: int, prefix: str = "prompt") -> str:
    """A distinct ASCII text of exactly ``PROMPT_BYTES`` bytes."""
    body = f"{prefix} {i:08d}: {_FILLER}"[:PROMPT_BYTES]
    assert len(body.encode()) == PROMPT_BYTES
    return body


def prompts(start: int, stop: int) -> list[PromptInput]:
    return [PromptInput.new(text(i)) for i in range(start, stop)]


def flow_step(case: int, step: int) -> FlowStepInput:
    return FlowStepInput(
        header=InputHeader.new(source=Flow(flow_id=f"flow-{case}", step_index=step)),
        step_id=f"step-{step}",
        instructions=text(case * BATCH + step, "step"),
    )


def state_of(driver: RuntimeDriver, input_id: InputId) -> InputState:
    state = driver.input_state(input_id)
    assert state is not None
    return state


def accepted_states(
    runtime_id: LogicalRuntimeId, inputs: Sequence[PromptInput]
) -> list[InputState]:
    """Each input's state once accepted (queued), as the driver persists it."""
    driver = EphemeralRuntimeDriver(runtime_id)
    states: list[InputState] = []
    for inp in inputs:
        outcome = driver.accept_now(inp)
        assert isinstance(outcome, Accepted), outcome
        states.append(outcome.state)
    return states


def rows_of(runtime_id: LogicalRuntimeId, states: Sequence[InputState]) -> list[Row]:
    """The rows the store writes for these states, encoded as it encodes them."""
    rid = str(runtime_id)
    return [(rid, str(s.input_id), records.encode_state(s)) for s in states]


@dataclass(frozen=True, slots=True)
class BoundaryCase:
    """One runtime's run: 10 flow steps, staged, and their boundary, with the
    rows the store holds before (queued) and writes at the boundary."""

    runtime_id: LogicalRuntimeId
    inputs: list[FlowStepInput]
    ids: list[InputId]
    run_id: RunId
    event: BoundaryApplied
    queued_rows: list[Row]
    applied: list[InputState]
    applied_rows: list[Row]
    receipt_row: tuple[str, str, int, bytes]


def stage(driver: EphemeralRuntimeDriver, ids: list[InputId], run_id: RunId) -> None:
    """The run started and the accepted ``ids`` staged into it."""
    driver.start_run(run_id)
    driver.stage_batch(ids, run_id)


def accepted_driver(
    runtime_id: LogicalRuntimeId, inputs: Sequence[FlowStepInput]
) -> EphemeralRuntimeDriver:
    """A fresh in-memory driver that has accepted ``inputs``."""
    driver = EphemeralRuntimeDriver(runtime_id)
    for inp in inputs:
        assert isinstance(driver.accept_now(inp), Accepted)
    return driver


def staged_driver(case: BoundaryCase) -> EphemeralRuntimeDriver:
    """A fresh in-memory driver holding the case's run, its steps staged."""
    driver = accepted_driver(case.runtime_id, case.inputs)
    stage(driver, case.ids, case.run_id)
    driver.drain_events()
    return driver


def run_start_receipt(run_id: RunId, ids: list[InputId]) -> RunBoundaryReceipt:
    """The receipt of a run's first boundary, naming ``ids``."""
    return RunBoundaryReceipt(
        run_id=run_id,
        boundary=RunApplyBoundary.RUN_START,
        contributing_input_ids=ids,
        message_count=0,
        sequence=0,
    )


def boundary_case(index: int) -> BoundaryCase:
    runtime_id = LogicalRuntimeId(f"bench-boundary-{index:05d}")
    rid = str(runtime_id)
    inputs = [flow_step(index, step) for step in range(BATCH)]
    ids = [inp.id() for inp in inputs]
    run_id = RunId.new()
    receipt = run_start_receipt(run_id, ids)
    event = RunEvent.BoundaryApplied(run_id=run_id, receipt=receipt)
    # The same steps through the in-memory driver give the exact rows.
    driver = accepted_driver(runtime_id, inputs)
    queued = rows_of(runtime_id, [state_of(driver, i) for i in ids])
    stage(driver, ids, run_id)
    driver.run_event_now(event)
    applied = [state_of(driver, i) for i in ids]
    return BoundaryCase(
        runtime_id=runtime_id,
        inputs=inputs,
        ids=ids,
        run_id=run_id,
        event=event,
        queued_rows=queued,
        applied=applied,
        applied_rows=rows_of(runtime_id, applied),
        receipt_row=(rid, str(run_id), 0, records.encode_receipt(receipt)),
    )


# ------------------------------------------------------------ files


def raw_connect(path: Path) -> sqlite3.Connection:
    """Plain sqlite3 as the store configures it: WAL, synchronous=FULL, the
    store's schema; autocommit, so transactions are explicit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:  # a new file
        for version in range(1, SCHEMA_VERSION + 1):
            for step in MIGRATIONS[version]:
                apply_step(conn, step)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


# ------------------------------------------------------------ timing


@dataclass(slots=True)
class Clock:
    """Times a repeat's measured section (after a full collection), and
    profiles it, main thread and store writer, when given a profiler."""

    profiler: cProfile.Profile | None = None
    store: BenchStore | None = None
    elapsed: float = 0.0
    groups: list[int] = field(default_factory=list)

    @contextmanager
    def section(self) -> Iterator[None]:
        gc.collect()
        if self.profiler is not None:
            if self.store is not None:
                self.store.profiling = True
            self.profiler.enable()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.elapsed += time.perf_counter() - t0
            if self.profiler is not None:
                self.profiler.disable()
                if self.store is not None:
                    self.store.profiling = False


# Each ``one_*`` below builds one repeat: a callable that runs it once on a
# fresh file and returns seconds per item. ``rounds`` interleaves them.
Repeat = Callable[[], float]


def rounds(repeats: int, runs: dict[str, Repeat]) -> dict[str, list[float]]:
    """Every run's figures over ``repeats`` rounds, each round running each
    once in turn, so a slow spell of the machine or disk hits all alike."""
    figures: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            figures[name].append(run())
    return figures


def raw_rows_timed(
    scratch: Scratch,
    name: str,
    rows: int,
    insert: Callable[[sqlite3.Connection, Clock], None],
) -> float:
    """Seconds per row that ``insert`` takes to write ``rows`` rows with
    plain sqlite3 into a fresh file (checked, then removed)."""
    path = scratch.path(name)
    conn = raw_connect(path)
    clock = Clock()
    try:
        insert(conn, clock)
    finally:
        conn.close()
    assert count(path, records.INPUTS) == rows
    scratch.remove(path)
    return clock.elapsed / rows


def queued_file(path: Path, cases: list[BoundaryCase]) -> sqlite3.Connection:
    """A new file holding every case's queued rows (one transaction)."""
    conn = raw_connect(path)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT_ROW, [r for c in cases for r in c.queued_rows])
    conn.execute("COMMIT")
    return conn
