"""``meerkat-runtime inspect --watch``: a live view of a store, refreshed in place.

Theory of operation: every ``interval`` seconds the view reads the store
again through the same read-only loaders as ``inspect`` (a SQLite file
opened with ``mode=ro``, a PostgreSQL schema in a ``READ ONLY`` transaction),
so it never takes the writer's lock or a lease and can run beside an owner
that is writing. What it shows comes from what the store holds: staging is
never stored (D-2), so an input a run has taken but not yet applied still
counts as waiting, and "in run" counts inputs whose boundary is committed and
whose run has not ended. A read that fails (a file being replaced, a server
restarting) is shown in the view and tried again at the next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meerkat_runtime.errors import RuntimeStoreError
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.inspection import (
    InspectionError,
    RuntimeView,
    describe_lease,
    short,
)
from meerkat_runtime.terminal_text import cell, printable

_S = InputLifecycleState
WAITING = (_S.ACCEPTED.value, _S.QUEUED.value, _S.STAGED.value)
IN_RUN = (_S.APPLIED.value, _S.APPLIED_PENDING_CONSUMPTION.value)
RECENT_FAILURES = 8  # rows of the failures table

Loader = Callable[[], list[RuntimeView]]


def watch(
    load: Loader,
    label: str,
    console: Console,
    *,
    interval: float,
    iterations: int | None = None,
) -> None:
    """Show the view, refreshed every ``interval`` seconds, ``iterations``
    times (None: until interrupted)."""
    shown = 0
    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(_frame(load, label), refresh=True)
            shown += 1
            if iterations is not None and shown >= iterations:
                return
            time.sleep(interval)


def _frame(load: Loader, label: str) -> RenderableType:
    stamp = datetime.now().isoformat(timespec="seconds")
    try:
        views = load()
    except (InspectionError, RuntimeStoreError) as exc:
        failed = Text(f"{stamp}  {label}: cannot read: {printable(str(exc))}")
        return Group(failed, Text("retrying at the next refresh", style="dim"))
    heading = Text(f"{stamp}  {label}  ({len(views)} runtimes, read-only)")
    return Group(heading, runtimes_table(views), failures_table(views))


def runtimes_table(views: list[RuntimeView]) -> Table:
    """Per runtime: its phase, queue depth, inputs in a run, owner."""
    table = Table(title="Runtimes", title_justify="left")
    table.add_column("runtime", overflow="fold")
    for column in ("phase", "waiting", "in run", "finished", "owner"):
        table.add_column(column)
    now = time.time()
    for view in views:
        counts = view.input_counts()
        waiting = sum(counts.get(name, 0) for name in WAITING)
        in_run = sum(counts.get(name, 0) for name in IN_RUN)
        table.add_row(
            cell(view.runtime_id),
            "(none stored)" if view.state is None else view.state.value,
            str(waiting),
            str(in_run),
            str(view.input_total() - waiting - in_run),
            cell(describe_lease(view.lease, now)),
        )
    return table


def failures_table(views: list[RuntimeView]) -> Table:
    """The inputs whose latest run failed, most recent first (among the
    inputs loaded: ``--limit`` bounds them per runtime)."""
    failed = [
        (state.updated_at(), view.runtime_id, state)
        for view in views
        for state in view.inputs
        if state.last_error() is not None
    ]
    failed.sort(key=lambda row: row[0], reverse=True)
    table = Table(title="Recent failures", title_justify="left")
    for column in ("when", "runtime", "input", "state", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for when, runtime_id, state in failed[:RECENT_FAILURES]:
        table.add_row(
            when.isoformat(timespec="seconds"),
            cell(runtime_id),
            short(state.input_id),
            state.current_state().value,
            str(state.attempt_count()),
            cell(state.last_error() or ""),
        )
    return table
