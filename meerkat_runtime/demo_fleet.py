"""``meerkat-runtime demo --fleet`` (``make demo-fleet``): the demo's story
across processes.

Theory of operation: three ``meerkat-runtime worker`` processes share one
SQLite file. This process stands in for the web tier: it owns nothing and
submits prompts with a ``RuntimeSubmitter`` to the inboxes of a dozen
sessions nobody has registered yet, keeping a completion handle for each.
The workers claim the sessions, a fair share each, admit their inboxes and
run them through a slow echo executor. Mid-run, the demo SIGKILLs the
worker holding the most sessions with work left and goes on submitting.
Its leases run out, the other workers take its sessions over, recover the
staged work, admit what arrived meanwhile and finish it. At the end the
survivors are stopped with SIGTERM, and the demo checks its claims against
the file: every acknowledged input consumed and named by exactly one
receipt, in each session's arrival order; every handle resolved as
completed; the killed worker's unfinished sessions finished by others; the
survivors exited cleanly and released their leases. Any failed claim makes
it exit 1.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from meerkat_runtime.ids import SessionId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.outcomes import Submitted
from meerkat_runtime.sessions.completion import CompletionHandle
from meerkat_runtime.sessions.submitter import RuntimeSubmitter
from meerkat_runtime.store.sqlite import SqliteRuntimeStore
from meerkat_runtime.terminal_text import markup_safe
from meerkat_runtime.testing.fleet import (
    Acknowledged,
    check_exactly_once,
    session_ids,
)
from meerkat_runtime.testing.fleet_processes import Worker, WorkerProcesses

SESSIONS = 12
PER_SESSION = 4
WORKERS = 3
LEASE_TTL = 2.0
RUN_DELAY = 0.15  # seconds per run: long enough to kill a worker mid-run
OPTIONS = [
    *("--lease-ttl", str(LEASE_TTL)),
    *("--scan-interval", "0.1"),
    *("--idle-release", "1"),
]
FINISH_WAIT = 300.0  # a hang guard


@dataclass(frozen=True)
class FleetClaim:
    text: str
    holds: bool


def held_by(worker: Worker) -> set[str]:
    """The runtimes ``worker`` claimed and had not released or lost, from
    its log."""
    held: set[str] = set()
    pattern = re.compile(
        rf"fleet {re.escape(worker.owner)}: (claimed|released|lost) (\S+)"
    )
    for verb, runtime in pattern.findall(worker.text()):
        (held.add if verb == "claimed" else held.discard)(runtime)
    return held


def run_fleet_demo(directory: Path | None, keep: bool, console: Console) -> int:
    work_dir = (
        Path(tempfile.mkdtemp(prefix="meerkat-fleet-"))
        if directory is None
        else directory
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        claims = asyncio.run(_story(work_dir, console))
    finally:
        if not keep and directory is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    console.print("\n[bold]Claims[/bold]")
    for claim in claims:
        mark = "[green]✓[/green]" if claim.holds else "[red]✗[/red]"
        console.print(f"  {mark} {markup_safe(claim.text)}")
    return 0 if all(claim.holds for claim in claims) else 1


async def _story(work_dir: Path, console: Console) -> list[FleetClaim]:
    path = work_dir / "fleet.db"
    path.unlink(missing_ok=True)
    fleet = WorkerProcesses(str(path), work_dir, OPTIONS, delay=RUN_DELAY)
    store = await SqliteRuntimeStore.open(path, lease_ttl=LEASE_TTL)
    try:
        console.print(f"[bold]Fleet[/bold]: {WORKERS} worker processes over {path}")
        fleet.start(WORKERS)
        sessions = session_ids(SESSIONS, prefix="agent")
        web = _WebTier(RuntimeSubmitter(store), sessions)
        before = PER_SESSION // 2
        for n in range(before):
            await web.submit_round(n)
        total = SESSIONS * PER_SESSION
        console.print(
            f"this process submitted {SESSIONS * before} prompts to the inboxes "
            f"of {SESSIONS} sessions"
        )
        victim, orphaned = await _kill_mid_run(fleet, store, console)
        for n in range(before, PER_SESSION):
            await web.submit_round(n)
        console.print(
            f"and {SESSIONS * (PER_SESSION - before)} more after the kill; "
            f"waiting on {len(web.handles)} completion handles"
        )
        outcomes = await web.wait()
        await _finish(store)
        codes = fleet.terminate()
        acked = web.acked
        check = await check_exactly_once(store, acked)
        leases = await store.load_leases()
    finally:
        fleet.kill_all()
        await store.close()
    claimed = fleet.claims()
    for owner, count in claimed.items():
        fate = "killed" if owner == victim.owner else f"exit {codes.get(owner)}"
        console.print(f"  {owner}: claimed {count} session(s), {fate}")
    taken_over = {
        sid
        for sid in orphaned
        for worker in fleet.retired
        if worker is not victim
        and f"fleet {worker.owner}: claimed {sid}" in worker.text()
    }
    survivors = set(codes)
    return [
        FleetClaim(
            f"{check.inputs} acknowledged inputs: each consumed, named by exactly one "
            f"receipt, in its session's arrival order ({len(check.problems)} problems)",
            check.clean and check.inputs == total,
        ),
        FleetClaim(
            f"every completion handle this process held resolved as completed "
            f"({sum(outcomes.values())} of {len(web.handles)}: {outcomes})",
            sum(outcomes.values()) == len(web.handles)
            and set(outcomes) <= {"Completed", "CompletedWithoutResult"},
        ),
        FleetClaim(
            f"the killed worker's {len(orphaned)} unfinished session(s) were taken over "
            f"and finished by the others ({len(taken_over)})",
            bool(orphaned) and taken_over == orphaned,
        ),
        FleetClaim(
            "more than one worker ran sessions",
            sum(1 for n in claimed.values() if n) > 1,
        ),
        FleetClaim(
            "the surviving workers exited 0 on SIGTERM and released their leases",
            all(code == 0 for code in codes.values())
            and not [x for x in leases if x.owner in survivors and not x.released],
        ),
    ]


async def _kill_mid_run(
    fleet: WorkerProcesses, store: SqliteRuntimeStore, console: Console
) -> tuple[Worker, set[str]]:
    """SIGKILL the worker holding the most sessions with work left, once
    runs are under way; the sessions it left unfinished."""
    deadline = time.monotonic() + FINISH_WAIT
    while True:
        work = await _with_work(store)
        busy = [(len(held_by(w) & work), w) for w in fleet.workers]
        count, victim = max(busy, key=lambda pair: pair[0])
        if count >= 2 or not work or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    fleet.kill(victim, replace=False)  # the others take over
    orphaned = held_by(victim) & await _with_work(store)
    console.print(
        f"SIGKILL {victim.owner} mid-run: it held {len(held_by(victim))} session(s), "
        f"{len(orphaned)} with work left; its leases expire in {LEASE_TTL:g} s"
    )
    return victim, orphaned


async def _with_work(store: SqliteRuntimeStore) -> set[str]:
    """Runtimes with inputs unfinished in their ledger or waiting in their
    inbox."""
    ledger = await store.list_runtimes_with_work()
    return {str(rid) for rid in [*ledger, *await store.list_runtimes_with_inbox()]}


async def _finish(store: SqliteRuntimeStore) -> None:
    deadline = time.monotonic() + FINISH_WAIT
    while await _with_work(store) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


class _WebTier:
    """The demo process as a submitter: what it was acknowledged, per
    session in order, and the handles it holds."""

    def __init__(self, submitter: RuntimeSubmitter, sessions: list[SessionId]) -> None:
        self.submitter = submitter
        self.sessions = sessions
        self.acked: Acknowledged = {sid: [] for sid in sessions}
        self.handles: list[CompletionHandle] = []

    async def submit_round(self, n: int) -> None:
        """The ``n``-th prompt of every session, side by side."""

        async def one(sid: SessionId) -> None:
            prompt = PromptInput.new(f"{sid} #{n}")
            outcome, handle = await self.submitter.submit_with_completion(sid, prompt)
            if isinstance(outcome, Submitted):
                self.acked[sid].append(outcome.input_id)
            if handle is not None:
                self.handles.append(handle)

        await asyncio.gather(*(one(sid) for sid in self.sessions))

    async def wait(self) -> dict[str, int]:
        """Every handle's outcome, counted by kind; then the submitter closes."""
        try:
            done = await asyncio.wait_for(
                asyncio.gather(*(h.wait() for h in self.handles)), FINISH_WAIT
            )
        finally:
            await self.submitter.close()
        return dict(Counter(type(outcome).__name__ for outcome in done))
