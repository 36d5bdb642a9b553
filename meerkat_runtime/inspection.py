"""Read-only views of a meerkat SQLite file, and rich tables of them.

Theory of operation: ``load_database`` opens the file with a read-only URI
(never through ``SqliteRuntimeStore``, which would create its schema in any
file it is given), checks that the meerkat tables are there, and decodes every
row with ``store.records``, so a corrupt row raises the store's own
``ReadFailed`` error naming the table, runtime and record. Rows stream from a
cursor: every one is decoded and counted, only the first ``limit`` per
runtime are kept, so a runtime with a million inputs is inspected in the
memory of ``limit``. The render helpers
turn the views into rich tables; ``to_json`` into plain builtins.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from meerkat_runtime import codec
from meerkat_runtime.errors import CorruptError, MeerkatError
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import (
    ContinuationInput,
    ExternalEventInput,
    FlowStepInput,
    Input,
    OperationInput,
    PeerInput,
    PromptInput,
)
from meerkat_runtime.runs import RunBoundaryReceipt
from meerkat_runtime.store import records
from meerkat_runtime.store.inbox import INBOX
from meerkat_runtime.store.integrity import check_input_count
from meerkat_runtime.store.leases import Lease
from meerkat_runtime.store.sqlite_leases import all_leases
from meerkat_runtime.store.sqlite_schema import (
    SCHEMA_VERSION,
    SELECT_INPUTS,
    decode_input_row,
)
from meerkat_runtime.terminal_text import cell, markup_safe, printable

INBOX_VERSION = 4  # the SQLite schema version that added the inbox (PD-58)
_SELECT_INPUTS_V1 = (
    f"SELECT input_id, state_json, 0 FROM {records.INPUTS} WHERE runtime_id = ?"
)

REQUIRED_TABLES = (records.INPUTS, records.RECEIPTS, records.STATES)


class InspectionError(MeerkatError):
    """The file cannot be inspected (missing, not SQLite, not meerkat)."""


@dataclass(frozen=True)
class RuntimeView:
    """One runtime as the file holds it: its first inputs and receipts (all
    of them when loaded without a limit) and the counts over all of them."""

    runtime_id: str
    state: RuntimeState | None
    inputs: list[InputState]
    receipts: list[RunBoundaryReceipt]
    lease: Lease | None = None  # its owner (PD-36), if it ever had one
    inbox_pending: int = 0  # submitted by non-owners, not yet admitted (PD-58)
    # Over every stored row; None: the lists above hold them all.
    by_state: dict[str, int] | None = None
    receipt_count: int | None = None

    def input_counts(self) -> dict[str, int]:
        """How many inputs are in each state, over all of them."""
        if self.by_state is not None:
            return self.by_state
        counts: dict[str, int] = {}
        for state in self.inputs:
            name = state.current_state().value
            counts[name] = counts.get(name, 0) + 1
        return counts

    def input_total(self) -> int:
        return sum(self.input_counts().values())

    def receipt_total(self) -> int:
        return len(self.receipts) if self.receipt_count is None else self.receipt_count


# ---------------------------------------------------------------- loading


def load_database(path: Path, limit: int | None = None) -> list[RuntimeView]:
    """Every runtime in ``path``, each with its first ``limit`` inputs and
    receipts (None: all). Every row is read and decoded one at a time, so
    memory does not grow with the rows beyond the limit, and a damaged row
    past the limit is still found. Raises ``InspectionError``, or
    ``RuntimeStoreError.ReadFailed`` for a row that does not decode
    (``Corrupt`` for damaged pages)."""
    conn = _open(path)
    try:
        # One read transaction: every statement sees the same snapshot, so
        # a writer committing meanwhile (an owner beside `inspect --watch`)
        # cannot make the counts disagree with the rows. In WAL mode it
        # holds no lock a writer waits for.
        conn.execute("BEGIN")
        version = _check_schema(conn, path)
        # Read-only, so a version-1 file is read as it is: no recovery epochs.
        select = SELECT_INPUTS if version >= 2 else _SELECT_INPUTS_V1
        inbox = _inbox_counts(conn, version)
        ids = sorted({*_runtime_ids(conn), *inbox})
        views = [_load_runtime(conn, rid, select, limit) for rid in ids]
        return with_inbox(with_leases(views, all_leases(conn)), inbox)
    except sqlite3.Error as exc:  # damaged pages, an I/O error: said, not raised
        raise _read_failure(path, exc) from None
    finally:
        conn.close()


def _open(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise InspectionError(f"{path}: no such file")
    if not path.is_file():
        raise InspectionError(f"{path}: not a file")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _read_failure(path, exc) from None


def _read_failure(path: Path, exc: sqlite3.Error) -> InspectionError | CorruptError:
    """What stopped SQLite, said once: a file that is not SQLite, a file or
    directory this user may not use, damaged pages (``Corrupt``, as a
    damaged record is: the file was read and what it holds is wrong), or
    else the engine's own text. SQLite
    reports a permission problem as "unable to open" or "readonly", which
    names neither the path nor the cause, so the cause is looked up."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code
    if code == sqlite3.SQLITE_CORRUPT:
        return CorruptError(f"the file is damaged: {exc}")
    if code == sqlite3.SQLITE_NOTADB:
        return InspectionError(f"{path} is not a meerkat database (not an SQLite file)")
    if code in _ACCESS_CODES:
        denied = _permission_problem(path)
        if denied is not None:
            return InspectionError(denied)
    return InspectionError(f"{path}: cannot read: {exc}")


_ACCESS_CODES = (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM)


def _permission_problem(path: Path) -> str | None:
    if not os.access(path, os.R_OK):
        return f"{path}: permission denied: this user cannot read the file"
    directory = path.resolve().parent
    shm = directory / f"{path.name}-shm"
    if not os.access(directory, os.W_OK) and not shm.exists():
        return (
            f"{path}: permission denied: reading this WAL database needs "
            f"{shm.name} created in {directory}, which this user cannot write"
        )
    return None


def _check_schema(conn: sqlite3.Connection, path: Path) -> int:
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {str(name) for (name,) in rows}
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise _read_failure(path, exc) from None
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise InspectionError(
            f"{path} is not a meerkat database (no table {', '.join(missing)})"
        )
    if version > SCHEMA_VERSION:
        raise InspectionError(
            f"{path} has schema version {version}, newer than this "
            f"meerkat-runtime reads ({SCHEMA_VERSION}); upgrade meerkat-runtime"
        )
    return version


def _runtime_ids(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        f"SELECT runtime_id FROM {records.INPUTS} "
        f"UNION SELECT runtime_id FROM {records.RECEIPTS} "
        f"UNION SELECT runtime_id FROM {records.STATES} ORDER BY 1"
    )
    return [str(rid) for (rid,) in rows]


def _inbox_counts(conn: sqlite3.Connection, version: int) -> dict[str, int]:
    """Pending inbox entries per runtime (the inbox came with version 4)."""
    if version < INBOX_VERSION:
        return {}
    rows = conn.execute(
        f"SELECT runtime_id, count(*) FROM {INBOX} WHERE pending = 1 "
        "GROUP BY runtime_id"
    )
    return {str(rid): int(n) for rid, n in rows}


def _load_runtime(
    conn: sqlite3.Connection, rid: str, select: str, limit: int | None
) -> RuntimeView:
    phase = conn.execute(
        f"SELECT runtime_state_json FROM {records.STATES} WHERE runtime_id = ?", (rid,)
    ).fetchone()
    inputs: list[InputState] = []
    by_state: dict[str, int] = {}
    for row in conn.execute(select, (rid,)):  # a cursor: one row at a time
        stored = decode_input_row(rid, row)
        name = stored.current_state().value
        by_state[name] = by_state.get(name, 0) + 1
        if limit is None or len(inputs) < limit:
            inputs.append(stored)
    check_input_count(conn, rid, sum(by_state.values()))  # a damaged index hides rows
    receipts: list[RunBoundaryReceipt] = []
    receipt_count = 0
    for run, seq, data in conn.execute(
        f"SELECT run_id, sequence, receipt_json FROM {records.RECEIPTS} "
        "WHERE runtime_id = ? ORDER BY rowid",  # commit order
        (rid,),
    ):
        receipt = records.decode_receipt(rid, f"{run}/{seq}", data)
        receipt_count += 1
        if limit is None or len(receipts) < limit:
            receipts.append(receipt)
    inputs.sort(key=lambda s: (s.created_at, str(s.input_id)))
    state = None if phase is None else records.decode_phase(rid, phase[0])
    return RuntimeView(
        rid, state, inputs, receipts, by_state=by_state, receipt_count=receipt_count
    )


def with_leases(views: list[RuntimeView], leases: list[Lease]) -> list[RuntimeView]:
    by_runtime = {lease.runtime_id: lease for lease in leases}
    return [
        dataclasses.replace(view, lease=by_runtime.get(view.runtime_id))
        for view in views
    ]


def with_inbox(views: list[RuntimeView], pending: dict[str, int]) -> list[RuntimeView]:
    """``views`` with their counts of pending inbox entries."""
    return [
        dataclasses.replace(view, inbox_pending=pending.get(view.runtime_id, 0))
        for view in views
    ]


# ---------------------------------------------------------------- facts


def receipts_naming(views: Iterable[RuntimeView]) -> dict[str, list[str]]:
    """input id -> the receipts (``run/sequence``) that name it."""
    named: dict[str, list[str]] = {}
    for view in views:
        for receipt in view.receipts:
            for input_id in receipt.contributing_input_ids:
                key = f"{receipt.run_id}/{receipt.sequence}"
                named.setdefault(str(input_id), []).append(key)
    return named


def all_inputs(views: Iterable[RuntimeView]) -> dict[str, InputState]:
    return {str(s.input_id): s for view in views for s in view.inputs}


def describe(inp: Input | None) -> str:
    """A one-line human description of an input's payload."""
    if isinstance(inp, PromptInput):
        return inp.text
    if isinstance(inp, ExternalEventInput):
        body = inp.payload.get("body") if isinstance(inp.payload, dict) else None
        return f"{inp.event_type}: {body}" if body else inp.event_type
    if isinstance(inp, PeerInput):
        return inp.body
    if isinstance(inp, FlowStepInput):
        return inp.instructions
    if isinstance(inp, ContinuationInput):
        return f"continuation: {inp.reason}"
    if isinstance(inp, OperationInput):
        return f"operation {inp.operation_id}"
    return "(no stored payload)"


def short(identifier: object) -> str:
    """The distinctive tail of a time-ordered id (its head is the clock)."""
    return "…" + str(identifier)[-8:]


def to_json(path: Path, views: list[RuntimeView]) -> dict[str, Any]:
    return {
        "database": str(path),
        "runtimes": [
            {
                "runtime_id": v.runtime_id,
                "state": None if v.state is None else v.state.value,
                "input_count": v.input_total(),
                "inputs_by_state": dict(sorted(v.input_counts().items())),
                "receipt_count": v.receipt_total(),
                "inbox_pending": v.inbox_pending,
                "inputs": [codec.to_builtins(s.to_record()) for s in v.inputs],
                "receipts": codec.to_builtins(v.receipts),
                "lease": None if v.lease is None else lease_json(v.lease),
            }
            for v in views
        ],
    }


def lease_json(lease: Lease) -> dict[str, Any]:
    return {
        "owner": lease.owner,
        "epoch": lease.epoch,
        "expires_at": lease.expires_at,
        "released": lease.released,
    }


def describe_lease(lease: Lease | None, now: float) -> str:
    """Who owns the runtime, as an operator reads it."""
    if lease is None:
        return "(never claimed)"
    if lease.released:
        return f"released by {lease.owner} (epoch {lease.epoch})"
    # UTC, said so: an operator comparing hosts' logs needs no time zone.
    until = datetime.fromtimestamp(lease.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    held = "held" if lease.held_at(now) else "expired"
    return f"{lease.owner} (epoch {lease.epoch}, {held}, until {until})"


# ---------------------------------------------------------------- rendering


def first_timestamp(views: Iterable[RuntimeView]) -> datetime | None:
    stamps = [s.created_at for v in views for s in v.inputs]
    return min(stamps) if stamps else None


def runtimes_table(views: list[RuntimeView]) -> Table:
    table = Table(title="Runtimes", title_justify="left")
    # A runtime id is shown whole (folded over lines when long): it is the
    # name to pass on, unlike the input and run ids the other tables shorten.
    table.add_column("runtime", overflow="fold")
    for column in ("state", "inputs", "by state", "receipts", "inbox", "owner"):
        table.add_column(column)
    now = time.time()
    for view in views:
        counts = view.input_counts()
        by_state = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        phase = "(none stored)" if view.state is None else view.state.value
        table.add_row(
            cell(view.runtime_id),
            phase,
            str(view.input_total()),
            by_state,
            str(view.receipt_total()),
            str(view.inbox_pending),
            cell(describe_lease(view.lease, now)),
        )
    return table


def inputs_table(view: RuntimeView, start: datetime | None) -> Table:
    """Per input: a heading row (id, payload, where it ended), then one row
    per transition of its stored history, offset from ``start`` (the
    runtime's first input, so each runtime's times start near zero)."""
    table = Table(
        title=f"{markup_safe(view.runtime_id)}: inputs and their timelines"
        + _shown(len(view.inputs), view.input_total()),
        title_justify="left",
    )
    table.add_column("input", no_wrap=True)
    table.add_column("+t", justify="right", no_wrap=True)
    table.add_column("from → to")
    table.add_column("reason")
    for state in view.inputs:
        _add_input_rows(table, state, start or state.created_at)
    return table


def _shown(shown: int, total: int) -> str:
    return "" if shown == total else f" (the first {shown} of {total}: see --limit)"


def _add_input_rows(table: Table, state: InputState, start: datetime) -> None:
    payload = state.persisted_input
    kind = payload.kind_id() if payload is not None else "?"
    heading = cell(f"{kind}: {describe(payload)}", style="bold")
    table.add_row(cell(short(state.input_id)), "", heading, cell(_summary(state)))
    for entry in state.history():
        offset = (entry.timestamp - start).total_seconds()
        table.add_row(
            "",
            f"+{offset:.3f}s",
            f"{entry.from_state.value} → {entry.to_state.value}",
            cell(entry.reason),  # stored text: never read as markup
        )
        if entry.error is not None:  # the failed run that caused it
            table.add_row("", "", "", cell(f"error: {entry.error}", style="red"))
    table.add_section()


def _summary(state: InputState) -> str:
    attempts = state.attempt_count()
    text = f"now {state.current_state().value}, {attempts} attempt"
    text += "" if attempts == 1 else "s"
    if state.recovery_count:
        text += f", {state.recovery_count} recovery"
    return text


def receipts_table(view: RuntimeView, labels: dict[str, str]) -> Table:
    table = Table(
        title=f"{markup_safe(view.runtime_id)}: boundary receipts"
        + _shown(len(view.receipts), view.receipt_total()),
        title_justify="left",
    )
    for column in ("run", "seq", "boundary", "contributing inputs"):
        table.add_column(column, overflow="fold")
    for receipt in view.receipts:
        named = [
            f"{short(i)} {labels.get(str(i), '')}".rstrip()
            for i in receipt.contributing_input_ids
        ]
        table.add_row(
            cell(short(receipt.run_id)),
            str(receipt.sequence),
            receipt.boundary.value,
            Text("\n".join(printable(line) for line in named)),
        )
    return table


def input_labels(views: Iterable[RuntimeView]) -> dict[str, str]:
    return {
        str(s.input_id): describe(s.persisted_input) for v in views for s in v.inputs
    }


def print_views(console: Console, views: list[RuntimeView]) -> None:
    """Each runtime's inputs (with their timelines) and its receipts. Times
    count from each runtime's own first input: runtimes that lived hours
    apart in one file would otherwise all read from the oldest."""
    labels = input_labels(views)
    for view in views:
        console.print(inputs_table(view, first_timestamp([view])))
        console.print(receipts_table(view, labels))
