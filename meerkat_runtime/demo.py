"""``meerkat-runtime demo``: three agent sessions, a SIGKILL, and recovery.

Theory of operation: phase 1 runs in a child process
(``python -m meerkat_runtime.demo worker PATH``) on a SQLite file. It drives
three sessions through a toy executor (no network): queued prompts, a steered
prompt, a duplicate, a superseded external event and a run that fails once.
Every acknowledgement, run start and settlement is written to stdout as one
JSON line. The executor of the last session then hangs inside ``apply``; when
the parent reads that run-start line it SIGKILLs the child. Phase 2 runs in
the parent: a new adapter on the same file recovers the sessions and finishes
the work. Finally the parent reads the file back, prints every input's
timeline and the receipts, and checks its claims against the file: every
acknowledged input is there and finished, and no input is named by two
receipts. Any failed claim makes the demo exit non-zero.

This module holds the story (the sessions, the worker, the crash, the
restart); the claims checked at the end are in ``demo_claims`` and the
console rendering in ``demo_narration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.text import Text

from meerkat_runtime.blobs import FileBlobStore

# Re-exported: the claims and the rendering moved to their own modules.
from meerkat_runtime.demo_claims import Claim as Claim
from meerkat_runtime.demo_claims import Event as Event
from meerkat_runtime.demo_claims import Journal as Journal
from meerkat_runtime.demo_claims import check_claims as check_claims
from meerkat_runtime.demo_claims import durable_claim as durable_claim
from meerkat_runtime.demo_claims import integrity_claim as integrity_claim
from meerkat_runtime.demo_narration import Narrator as Narrator
from meerkat_runtime.demo_narration import print_claims
from meerkat_runtime.errors import MeerkatError
from meerkat_runtime.generated.policy_table import PolicyDecision, QueueMode
from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.ids import (
    IdempotencyKey,
    InputId,
    RunId,
    SessionId,
    SupersessionKey,
)
from meerkat_runtime.inputs import (
    External,
    ExternalEventInput,
    Input,
    InputHeader,
    PromptInput,
    RuntimeTurnMetadata,
)
from meerkat_runtime.inspection import (
    RuntimeView,
    all_inputs,
    describe,
    load_database,
    print_views,
    short,
)
from meerkat_runtime.outcomes import Deduplicated
from meerkat_runtime.policy import DefaultPolicyTable, PolicySubject
from meerkat_runtime.runs import RunApplyBoundary
from meerkat_runtime.sessions.adapter import RuntimeSessionAdapter
from meerkat_runtime.sessions.completion import (
    AbandonedOutcome,
    AnyCompletionOutcome,
    Completed,
    CompletionHandle,
)
from meerkat_runtime.sessions.executor import (
    CoreApplyOutput,
    CoreExecutorError,
    RunControlCommand,
    RunPrimitive,
    RunResult,
    StagedInput,
    receipt_for,
)
from meerkat_runtime.store.sqlite import SqliteRuntimeStore

DB_NAME = "meerkat-demo.sqlite3"
BLOB_DIR = "meerkat-demo-blobs"
SUPPORT = SessionId("support-bot")
OPS = SessionId("ops-watch")
BILLING = SessionId("billing-agent")
SESSIONS = (SUPPORT, OPS, BILLING)
RETRY_DELAY = 0.05  # seconds between a failed run and its retry
TOY_LATENCY = 0.01  # what the toy "model" takes per run
DEMO_OWNER = "demo-worker"
CHILD_TIMEOUT = 20.0  # the worker must reach its crash point within this
DRAIN_TIMEOUT = 10.0  # phase 2 must finish the recovered work within this

Emit = Callable[[Event], None]


class DemoError(MeerkatError):
    """The demo could not run (not a failed claim: an environment problem)."""


# ================================================================ the pieces


class DemoPolicy:
    """The default table, except that external events supersede the queued
    event with the same supersession key (decision 20)."""

    def __init__(self) -> None:
        self._default = DefaultPolicyTable()

    def resolve(self, input: PolicySubject, runtime_idle: bool) -> PolicyDecision:
        decision = self._default.resolve(input, runtime_idle)
        if input.kind_id() != "external_event":
            return decision
        return msgspec.structs.replace(decision, queue_mode=QueueMode.SUPERSEDE)


class ToyExecutor:
    """A stand-in for the model: answers at once, fails chosen inputs once,
    and holds chosen runs until released (or forever)."""

    def __init__(self, session: SessionId, emit: Emit) -> None:
        self.session = str(session)
        self.emit = emit
        self.fail_once: set[InputId] = set()
        self._holds: dict[InputId, asyncio.Event] = {}
        self._forever: set[InputId] = set()
        self._started: dict[InputId, asyncio.Event] = {}

    def hold(self, input_id: InputId) -> asyncio.Event:
        """A run with this input waits inside ``apply`` until the event is set."""
        return self._holds.setdefault(input_id, asyncio.Event())

    def hold_forever(self, input_id: InputId) -> None:
        self.hold(input_id)
        self._forever.add(input_id)

    def started(self, input_id: InputId) -> asyncio.Event:
        return self._started.setdefault(input_id, asyncio.Event())

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        ids = list(primitive.contributing_input_ids)
        self._announce(run_id, primitive, ids)
        for input_id in ids:
            self.started(input_id).set()
            if input_id in self._holds:
                await self._holds[input_id].wait()
        failing = self.fail_once.intersection(ids)
        if failing:
            self.fail_once -= failing
            error = "toy model: upstream answered 503"
            self._emit("run_failed", run_id=str(run_id), error=error)
            raise CoreExecutorError.ApplyFailed(error)
        await asyncio.sleep(TOY_LATENCY)
        return CoreApplyOutput(
            receipt=receipt_for(run_id, primitive),
            run_result=RunResult(text=f"toy reply to run {short(run_id)}"),
        )

    async def control(self, command: RunControlCommand) -> None:
        self._emit("control", command=type(command).__name__)

    def _announce(
        self, run_id: RunId, primitive: RunPrimitive, ids: list[InputId]
    ) -> None:
        boundary = (
            primitive.boundary
            if isinstance(primitive, StagedInput)
            else RunApplyBoundary.IMMEDIATE
        )
        self._emit(
            "run_started",
            run_id=str(run_id),
            inputs=[str(i) for i in ids],
            boundary=boundary.value,
            blocked=bool(self._forever.intersection(ids)),
        )

    def _emit(self, kind: str, **fields: Any) -> None:
        self.emit({"event": kind, "session": self.session, **fields})


def _prompt(text: str, key: str | None = None, steer: bool = False) -> PromptInput:
    header = InputHeader.new(
        idempotency_key=IdempotencyKey(key) if key is not None else None
    )
    metadata = RuntimeTurnMetadata(handling_mode=HandlingMode.STEER) if steer else None
    return PromptInput(header=header, text=text, turn_metadata=metadata)


def _deploy_event(body: str) -> ExternalEventInput:
    header = InputHeader.new(
        source=External(source_name="ci"),
        supersession_key=SupersessionKey("deploy-41"),
    )
    return ExternalEventInput(
        header=header, event_type="deploy_status", payload={"body": body}
    )


def _adapter(path: Path) -> tuple[RuntimeSessionAdapter, SqliteRuntimeStore]:
    store = SqliteRuntimeStore(path)
    blobs = FileBlobStore(path.parent / BLOB_DIR)
    # One owner id for the worker and its restart (PD-36): the restarted
    # worker takes its runtimes back at once instead of waiting for the
    # killed one's leases to expire.
    adapter = RuntimeSessionAdapter.persistent(
        store,
        blobs,
        policy_table=DemoPolicy(),
        retry_delay=RETRY_DELAY,
        owner=DEMO_OWNER,
    )
    return adapter, store


# ================================================================ phase 1: the worker


@dataclass
class Scenario:
    """The worker's side: submits inputs and reports everything it sees."""

    adapter: RuntimeSessionAdapter
    emit: Emit
    waiting: list[asyncio.Task[None]] = field(default_factory=list)

    def note(self, session: SessionId, text: str) -> None:
        self.emit({"event": "note", "session": str(session), "text": text})

    async def submit(self, session: SessionId, inp: Input, role: str = "") -> None:
        outcome, handle = await self.adapter.accept_input_with_completion(session, inp)
        event: Event = {"event": "ack", "session": str(session), "role": role}
        event |= {"input_id": str(inp.id()), "text": describe(inp)}
        event["outcome"] = type(outcome).__name__.lower()
        if isinstance(outcome, Deduplicated):
            event["existing_id"] = str(outcome.existing_id)
        self.emit(event)  # printed only now: the input is durable
        if handle is not None and not isinstance(outcome, Deduplicated):
            self.waiting.append(asyncio.create_task(self._settle(session, handle)))

    async def _settle(self, session: SessionId, handle: CompletionHandle) -> None:
        outcome = await handle.wait()
        self.emit(
            {
                "event": "settled",
                "session": str(session),
                "input_id": str(handle.input_id),
                "outcome": _completion_text(outcome),
            }
        )

    async def settled(self) -> None:
        await asyncio.gather(*self.waiting)
        self.waiting.clear()


def _completion_text(outcome: AnyCompletionOutcome) -> str:
    if isinstance(outcome, Completed):
        return f"completed ({outcome.run_result.text})"
    if isinstance(outcome, AbandonedOutcome):
        return f"abandoned ({outcome.reason})"
    return type(outcome).__name__


async def _support_bot(s: Scenario) -> None:
    executor = ToyExecutor(SUPPORT, s.emit)
    first = _prompt("Draft a reply to ticket #412")
    gate = executor.hold(first.id())
    await s.adapter.register_session_with_executor(SUPPORT, executor)
    await s.submit(SUPPORT, first, "first")
    await executor.started(first.id()).wait()
    s.note(SUPPORT, "while that run is in flight, more input arrives")
    refund = _prompt("Look up the refund policy for order 9917", "ticket-412-refund")
    await s.submit(SUPPORT, refund, "original")
    retry = _prompt(refund.text, "ticket-412-refund")  # the client retried
    await s.submit(SUPPORT, retry, "duplicate")
    await s.submit(SUPPORT, _prompt("Close ticket #412 once replied"), "queued")
    urgent = _prompt("The customer is on the phone: keep it to one line", steer=True)
    await s.submit(SUPPORT, urgent, "steer")
    gate.set()
    await s.settled()


async def _ops_watch(s: Scenario) -> None:
    executor = ToyExecutor(OPS, s.emit)
    watch = _prompt("Watch deploy #41 and summarise it")
    gate = executor.hold(watch.id())
    await s.adapter.register_session_with_executor(OPS, executor)
    await s.submit(OPS, watch, "watch")
    await executor.started(watch.id()).wait()
    s.note(OPS, "two CI events share supersession key deploy-41 (policy: SUPERSEDE)")
    await s.submit(OPS, _deploy_event("40% of hosts updated"), "superseded")
    await s.submit(OPS, _deploy_event("all hosts updated"), "superseding")
    flaky = _prompt("Post the deploy summary to #ops")
    executor.fail_once.add(flaky.id())
    await s.submit(OPS, flaky, "flaky")
    gate.set()
    await s.settled()


async def _billing_agent(s: Scenario) -> None:
    await s.adapter.register_session(BILLING)
    reconcile = _prompt("Reconcile the March invoices (a long tool run)")
    await s.submit(BILLING, reconcile, "crash")
    await s.submit(BILLING, _prompt("Email finance the reconciliation"), "behind")
    executor = ToyExecutor(BILLING, s.emit)
    executor.hold_forever(reconcile.id())
    s.note(BILLING, "the executor will hang inside this run: the parent kills us")
    await s.adapter.register_session_with_executor(BILLING, executor)
    await asyncio.sleep(CHILD_TIMEOUT)  # the parent SIGKILLs us long before


async def _worker(path: Path) -> int:
    adapter, store = _adapter(path)

    def emit(event: Event) -> None:
        print(json.dumps(event), flush=True)

    scenario = Scenario(adapter, emit)
    try:
        await _support_bot(scenario)
        await _ops_watch(scenario)
        await _billing_agent(scenario)
    finally:
        await adapter.close()
        await store.close()
    print("worker: nobody killed me", file=sys.stderr)
    return 3


def worker_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "worker":
        print("usage: python -m meerkat_runtime.demo worker PATH", file=sys.stderr)
        return 2
    return asyncio.run(_worker(Path(argv[1])))


# ================================================================ phase 1: the parent


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH", "")) if p
    )
    return env


async def _run_worker(path: Path, narrator: Narrator) -> Journal:
    command = [sys.executable, "-m", "meerkat_runtime.demo", "worker", str(path)]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_worker_env(),
    )
    journal = Journal(crash_pid=proc.pid)
    narrator.console.rule(f"Phase 1 · worker process pid {proc.pid} on {path.name}")
    try:
        crash = await _read_until_crash_point(proc, narrator, journal)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        _, stderr = await proc.communicate()
    if crash is None:
        detail = stderr.decode(errors="replace").strip()[-2000:]
        raise DemoError(f"the worker exited before its crash point:\n{detail}")
    journal.crash_run = crash["run_id"]
    message = f"SIGKILL → pid {proc.pid} (exit status {proc.returncode}) in the middle of run {short(crash['run_id'])}"
    narrator.console.print(Text(f"  💥 {message}", style="bold red"))
    return journal


async def _read_until_crash_point(
    proc: asyncio.subprocess.Process, narrator: Narrator, journal: Journal
) -> Event | None:
    """Relay the worker's events until its executor reports the hanging run."""
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHILD_TIMEOUT
    while True:
        remaining = max(0.1, deadline - loop.time())
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), remaining)
        except TimeoutError:
            raise DemoError(f"the worker said nothing for {CHILD_TIMEOUT} s") from None
        if not raw.endswith(b"\n"):
            return None  # end of output (a line cut short never counts)
        event: Event = json.loads(raw)
        journal.record(event)
        narrator.show(event)
        if event["event"] == "run_started" and event["blocked"]:
            return event


# ================================================================ phase 2: recovery


async def _restart(path: Path, narrator: Narrator) -> bool:
    """A new adapter on the same file: recover, attach executors, drain."""
    narrator.console.rule("Phase 2 · a new process (this one) opens the same file")
    adapter, store = _adapter(path)
    try:
        for session in SESSIONS:
            await adapter.register_session(session)  # recovery runs here
            await _show_recovered(adapter, session, narrator)
        for session in SESSIONS:
            executor = ToyExecutor(session, narrator.show)
            await adapter.register_session_with_executor(session, executor)
        drained = await _drained(adapter)
    finally:
        await adapter.close()
        await store.close()
    if drained:
        message = "every recovered input finished; loops stopped, file closed"
        narrator.line("all sessions", "■", "blue", message)
    return drained


async def _show_recovered(
    adapter: RuntimeSessionAdapter, session: SessionId, narrator: Narrator
) -> None:
    active = await adapter.list_active_inputs(session)
    if not active:
        narrator.line(str(session), "·", "dim", "recovered: nothing unfinished")
    for input_id in active:
        state = await adapter.input_state(session, input_id)
        assert state is not None
        message = (
            f"recovered {narrator.quote(str(input_id))}: "
            f"{state.current_state().value} again (recovery #{state.recovery_count})"
        )
        narrator.line(str(session), "↻", "yellow", message)


async def _drained(adapter: RuntimeSessionAdapter) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT
    while loop.time() < deadline:
        active = [await adapter.list_active_inputs(s) for s in SESSIONS]
        if not any(active):
            return True
        await asyncio.sleep(0.02)
    return False


# ================================================================ the whole demo


async def _demo(path: Path, console: Console) -> bool:
    narrator = Narrator(console)
    journal = await _run_worker(path, narrator)
    after_crash = set(all_inputs(load_database(path)))
    drained = await _restart(path, narrator)
    views = sorted(load_database(path), key=_session_order)
    console.rule("The file afterwards: every input's timeline, and the receipts")
    print_views(console, views)
    claims = check_claims(journal, views, after_crash)
    if not drained:
        claims.append(
            Claim("Drain", False, "the recovered work did not finish in time")
        )
    print_claims(console, claims)
    return all(c.ok for c in claims)


def _session_order(view: RuntimeView) -> int:
    names = [str(s) for s in SESSIONS]
    return names.index(view.runtime_id) if view.runtime_id in names else len(names)


def _paths(directory: Path | None) -> tuple[Path, Path]:
    """(working directory, database path)."""
    if directory is None:
        workdir = Path(tempfile.mkdtemp(prefix="meerkat-demo-"))
    else:
        workdir = directory
        workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / DB_NAME
    if path.exists():
        raise DemoError(f"{path} already exists: delete it or pick another --dir")
    return workdir, path


def _cleanup(workdir: Path, path: Path, temporary: bool) -> None:
    if temporary:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(workdir / BLOB_DIR, ignore_errors=True)


def run_demo(directory: Path | None, keep: bool, console: Console) -> int:
    """The ``demo`` command: 0 when every claim held, 1 otherwise."""
    workdir, path = _paths(directory)
    try:
        ok = asyncio.run(_demo(path, console))
    finally:
        if not keep:
            _cleanup(workdir, path, temporary=directory is None)
    if keep:
        console.print(f"database kept: {path}  (try: meerkat-runtime inspect {path})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
