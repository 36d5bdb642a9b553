"""The floors of bench/durable.py: the least a durable figure could cost in
one Python thread, measured in the same rounds as the figures.

A floor runs the in-memory driver (``EphemeralRuntimeDriver``), encodes
what it changed as the store encodes it, and writes the rows with plain
sqlite3 (WAL, FULL), all on one thread: no event loop, no store, no
persistent driver, no thread hand-offs. Only the work every durable design
must do in this process is left: the driver's decision, the encoding, and
SQLite's commit. A goal above its floor cannot be reached by making the
store cheaper; only work done in parallel with SQLite could pass it (for
one caller, nothing can: each accept waits for the commit before it).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from durable_parts import (
    DRAIN_EVERY,
    INSERT_RECEIPT,
    INSERT_ROW,
    RUNTIME_ID,
    UPSERT_ROW,
    BoundaryCase,
    Clock,
    Repeat,
    queued_file,
    raw_rows_timed,
    staged_driver,
    state_of,
)
from sqlite_tools import Scratch, count

from meerkat_runtime.driver.ephemeral import EphemeralRuntimeDriver
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.store import records


def accept_row(
    driver: EphemeralRuntimeDriver, inp: PromptInput
) -> tuple[str, str, bytes]:
    """Accept in memory; the row the store would write for it."""
    outcome = driver.accept_now(inp)
    assert isinstance(outcome, Accepted), outcome
    rid = str(driver.runtime_id)
    return rid, str(outcome.input_id), records.encode_state(outcome.state)


def commit_rows(conn: sqlite3.Connection, sql: str, rows: list[Any]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for row in rows:
        conn.execute(sql, row)
    conn.execute("COMMIT")


def one_floor_accepts(scratch: Scratch, inputs: list[PromptInput]) -> Repeat:
    """Seconds per accept, one caller: ``accept_now``, encode, and one
    plain sqlite3 transaction per row."""

    def insert(conn: sqlite3.Connection, clock: Clock) -> None:
        driver = EphemeralRuntimeDriver(RUNTIME_ID)
        with clock.section():
            for index, inp in enumerate(inputs, 1):
                commit_rows(conn, INSERT_ROW, [accept_row(driver, inp)])
                if index % DRAIN_EVERY == 0:
                    driver.drain_events()

    return lambda: raw_rows_timed(scratch, "floor-1", len(inputs), insert)


def one_floor_sessions(scratch: Scratch, sessions: list[list[PromptInput]]) -> Repeat:
    """Seconds per ack, all sessions: each session's next accept in memory,
    then one plain sqlite3 transaction of all their rows (a perfect group
    commit), round after round."""
    total = sum(len(s) for s in sessions)

    def insert(conn: sqlite3.Connection, clock: Clock) -> None:
        drivers = [
            EphemeralRuntimeDriver(LogicalRuntimeId(f"bench-session-{i:02d}"))
            for i in range(len(sessions))
        ]
        with clock.section():
            for step in range(len(sessions[0])):
                rows = [
                    accept_row(d, s[step])
                    for d, s in zip(drivers, sessions, strict=True)
                ]
                commit_rows(conn, INSERT_ROW, rows)
                if (step + 1) % DRAIN_EVERY == 0:
                    for driver in drivers:
                        driver.drain_events()

    return lambda: raw_rows_timed(scratch, "floor-64", total, insert)


def boundary_rows(
    driver: EphemeralRuntimeDriver, case: BoundaryCase
) -> list[tuple[str, tuple[Any, ...]]]:
    """Apply the boundary in memory; the statements the store would run."""
    driver.run_event_now(case.event)
    driver.drain_events()
    rid = str(case.runtime_id)
    receipt = case.event.receipt
    statements: list[tuple[str, tuple[Any, ...]]] = [
        (
            INSERT_RECEIPT,
            (
                rid,
                str(receipt.run_id),
                receipt.sequence,
                records.encode_receipt(receipt),
            ),
        )
    ]
    for input_id in case.ids:
        encoded = records.encode_state(state_of(driver, input_id))
        statements.append((UPSERT_ROW, (rid, str(input_id), encoded)))
    return statements


def one_floor_boundaries(
    scratch: Scratch, cases: list[BoundaryCase], per_txn: int
) -> Repeat:
    """Seconds per boundary: the in-memory ``BoundaryApplied``, encoding the
    receipt and the 10 states, and plain sqlite3 writing them, ``per_txn``
    boundaries per transaction, over a file holding the queued rows."""

    def run() -> float:
        path = scratch.path(f"floor-boundary-{per_txn}")
        conn = queued_file(path, cases)
        drivers = [staged_driver(case) for case in cases]  # untimed
        clock = Clock()
        try:
            with clock.section():
                for start in range(0, len(cases), per_txn):
                    batch = zip(
                        drivers[start : start + per_txn],
                        cases[start : start + per_txn],
                        strict=True,
                    )
                    statements = [s for d, c in batch for s in boundary_rows(d, c)]
                    conn.execute("BEGIN IMMEDIATE")
                    for sql, params in statements:
                        conn.execute(sql, params)
                    conn.execute("COMMIT")
        finally:
            conn.close()
        assert count(Path(path), records.RECEIPTS) == len(cases)
        scratch.remove(path)
        return clock.elapsed / len(cases)

    return run
