"""Worker processes for fleet tests, the fleet demo and the fleet benchmark:
start ``meerkat-runtime worker`` children over one database, SIGKILL,
SIGSTOP/SIGCONT and replace them, stop them cleanly, and read who claimed
what from their logs.

Each child logs to a file of its own (a pipe nobody reads could fill and
stall it) and is known by the owner id it was given (``worker-<n>``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meerkat_runtime.ids import RunId, SessionId
from meerkat_runtime.sessions.executor import (
    CoreApplyOutput,
    CoreExecutor,
    RunControlCommand,
    RunPrimitive,
)
from meerkat_runtime.sessions.fleet import EchoExecutor
from meerkat_runtime.testing.fleet_submitter import (
    SUBMITTED,
    SUBMITTING,
    SubmitterReport,
)

DELAY_VARIABLE = "MEERKAT_FLEET_RUN_DELAY"
READY_WAIT = 60.0  # seconds a child may take to start (a loaded machine)


class SlowEchoExecutor(EchoExecutor):
    """The echo executor, spending ``MEERKAT_FLEET_RUN_DELAY`` seconds per
    run (as a model call would), so that kills land while runs are in
    flight."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        await asyncio.sleep(self.delay)
        return await super().apply(run_id, primitive)

    async def control(self, command: RunControlCommand) -> None:
        pass


def slow_echo(session_id: SessionId) -> CoreExecutor:  # noqa: ARG001
    """Executor factory for ``meerkat-runtime worker --executor``."""
    return SlowEchoExecutor(float(os.environ.get(DELAY_VARIABLE, "0.01")))


SLOW_ECHO = f"{__name__}:slow_echo"


@dataclass
class Worker:
    owner: str
    process: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False  # SIGSTOPped, not yet continued

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready(self) -> bool:
        return f"worker {self.owner} ready" in self.text()


@dataclass
class WorkerProcesses:
    """N ``meerkat-runtime worker`` children over ``target``."""

    target: str
    logs: Path
    options: list[str] = field(default_factory=list)
    delay: float = 0.01
    workers: list[Worker] = field(default_factory=list)
    retired: list[Worker] = field(default_factory=list)  # killed or stopped
    kills: int = 0
    pauses: int = 0
    _timers: list[threading.Timer] = field(default_factory=list)

    def spawn(self) -> Worker:
        n = len(self.workers) + len(self.retired)
        owner = f"worker-{n}"
        log = self.logs / f"{owner}.log"
        env = {**os.environ, DELAY_VARIABLE: str(self.delay)}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "meerkat_runtime.cli",
                    "worker",
                    self.target,
                    "--owner",
                    owner,
                    "--executor",
                    SLOW_ECHO,
                    *self.options,
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
            )
        worker = Worker(owner, process, log)
        self.workers.append(worker)
        return worker

    def start(self, count: int) -> None:
        for _ in range(count):
            self.spawn()
        for worker in list(self.workers):
            self.wait_ready(worker)

    def wait_ready(self, worker: Worker) -> None:
        deadline = time.monotonic() + READY_WAIT
        while not worker.ready():
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{worker.owner} did not start:\n{worker.text()}")
            time.sleep(0.02)

    def kill(self, worker: Worker, *, replace: bool = True) -> Worker | None:
        """SIGKILL ``worker``; with ``replace``, start another in its place."""
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        self.workers.remove(worker)
        self.retired.append(worker)
        self.kills += 1
        return self.spawn() if replace else None

    def pause(self, worker: Worker, seconds: float) -> None:
        """SIGSTOP ``worker`` now and SIGCONT it ``seconds`` later, from a
        timer (past its leases' lifetime, it loses them meanwhile)."""
        worker.process.send_signal(signal.SIGSTOP)
        worker.stopped = True
        self.pauses += 1

        def resume() -> None:
            worker.process.send_signal(signal.SIGCONT)
            worker.stopped = False

        timer = threading.Timer(seconds, resume)
        self._timers.append(timer)
        timer.start()

    def running(self) -> list[Worker]:
        """The live workers started and not stopped at the moment."""
        return [w for w in self.workers if not w.stopped and w.ready()]

    def terminate(self) -> dict[str, int]:
        """SIGTERM every live worker, once each is continued and started;
        their exit codes by owner."""
        for timer in self._timers:
            timer.join()
        for worker in self.workers:
            self.wait_ready(worker)
        for worker in self.workers:
            worker.process.send_signal(signal.SIGTERM)
        codes = {w.owner: w.process.wait(timeout=READY_WAIT) for w in self.workers}
        self.retired.extend(self.workers)
        self.workers = []
        return codes

    def kill_all(self) -> None:
        """The clean-up of a failed run: nothing is left running."""
        for timer in self._timers:
            timer.join()
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    def claims(self) -> dict[str, int]:
        """Runtimes each worker (ever) claimed, from its log."""
        every = self.workers + self.retired
        return {w.owner: w.text().count(f"fleet {w.owner}: claimed ") for w in every}


SUBMITTER_WAIT = 600.0  # a hang guard for a submitter's whole life


@dataclass
class SubmitterProcess:
    """A ``fleet_submitter`` child: submits to the inboxes of ``sessions``
    sessions as ``name`` and waits on its handles; its report goes to
    ``<logs>/<name>.json``, its log to ``<logs>/<name>.log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    report: Path

    @classmethod
    def start(
        cls,
        name: str,
        target: str,
        logs: Path,
        *,
        sessions: int,
        inputs: int,
        options: Sequence[str] = (),
    ) -> SubmitterProcess:
        log, report = logs / f"{name}.log", logs / f"{name}.json"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "meerkat_runtime.testing.fleet_submitter",
                    target,
                    str(report),
                    *("--name", name),
                    *("--sessions", str(sessions)),
                    *("--inputs", str(inputs)),
                    *options,
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        return cls(name, process, log, report)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def submitting(self) -> bool:
        """Started submitting and not done with it yet."""
        text = self.text()
        return SUBMITTING in text and SUBMITTED not in text

    def finish(self) -> SubmitterReport:
        """Wait for it to exit (0) and read its report."""
        code = self.process.wait(timeout=SUBMITTER_WAIT)
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code}:\n{self.text()}")
        return SubmitterReport.load(self.report)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
