"""``meerkat-runtime demo --fleet`` (``make demo-fleet``): the demo's story
across processes.

Theory of operation: three ``meerkat-runtime worker`` processes share one
SQLite file. A loader (this process, standing in for the web tier)
acknowledges prompts into a dozen sessions and goes away; the workers claim
the sessions, a fair share each, and run them through a slow echo executor.
Mid-run, the demo SIGKILLs the worker holding the most sessions with work
left. Its leases run out, the other workers take its sessions over, recover
the staged work and finish it. At the end the survivors are stopped with
SIGTERM, and the demo checks its claims against the file: every
acknowledged input consumed and named by exactly one receipt, in each
session's arrival order; the killed worker's unfinished sessions finished by
others; the survivors exited cleanly and released their leases. Any failed
claim makes it exit 1.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from meerkat_runtime.store.sqlite import SqliteRuntimeStore
from meerkat_runtime.terminal_text import markup_safe
from meerkat_runtime.testing.fleet import check_exactly_once, load_sessions, session_ids
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
        acked = await load_sessions(store, sessions, PER_SESSION)
        total = SESSIONS * PER_SESSION
        console.print(f"a loader acknowledged {total} prompts in {SESSIONS} sessions")
        victim, orphaned = await _kill_mid_run(fleet, store, console)
        await _finish(store)
        codes = fleet.terminate()
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
        work = {str(rid) for rid in await store.list_runtimes_with_work()}
        busy = [(len(held_by(w) & work), w) for w in fleet.workers]
        count, victim = max(busy, key=lambda pair: pair[0])
        if count >= 2 or not work or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    fleet.kill(victim, replace=False)  # the others take over
    orphaned = held_by(victim) & {str(r) for r in await store.list_runtimes_with_work()}
    console.print(
        f"SIGKILL {victim.owner} mid-run: it held {len(held_by(victim))} session(s), "
        f"{len(orphaned)} with work left; its leases expire in {LEASE_TTL:g} s"
    )
    return victim, orphaned


async def _finish(store: SqliteRuntimeStore) -> None:
    deadline = time.monotonic() + FINISH_WAIT
    while await store.list_runtimes_with_work() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
