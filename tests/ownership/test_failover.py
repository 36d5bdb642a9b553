"""Failover between real processes (issue 15, PD-36, PD-37): workers of
``tests.ownership.failover_child`` drive one runtime of one SQLite file or
PostgreSQL schema, with a lease of two seconds.

* An owner SIGKILLed while it runs and accepts is taken over, after its
  lease ran out, by the next worker, several times over; at the end every
  input any of them acknowledged is consumed, named by exactly one receipt.
* An owner SIGSTOPped inside a run is taken over by a second worker, which
  runs its inputs; continued, the first one's boundary commit, a new accept
  and writes sent straight through its fenced view are all refused, its
  waiters hear that ownership was lost, and nothing is applied twice.

Every wait is for a line a worker printed (or for its state), never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from meerkat_runtime import LogicalRuntimeId
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from tests.ownership.failover_child import SESSION, STOP_INPUTS, open_target
from tests.ownership.test_process_race import ROOT, race_target

RID = LogicalRuntimeId(str(SESSION))
KILLS = 3
WAIT = 60.0  # seconds a line may take, on a loaded machine (a failure, not a pace)


class Worker:
    """One child process; its stdout lines arrive in ``lines``, in order."""

    def __init__(self, target: str, owner: str, mode: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.ownership.failover_child",
                target,
                owner,
                mode,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[list[str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a kill may cut the last one short
                self.lines.put(line)
        self.lines.put(None)

    def next_line(self, first_word: str) -> list[str]:
        """The words of the next line starting with ``first_word`` (every
        line read on the way is kept in ``seen``)."""
        while True:
            line = self.lines.get(timeout=WAIT)
            if line is None:
                raise AssertionError(
                    f"worker ended before {first_word}: {self.finish()}"
                )
            words = line.split()
            self.seen.append(words)
            if words and words[0] == first_word:
                return words

    def said(self, first_word: str) -> list[list[str]]:
        return [words for words in self.seen if words and words[0] == first_word]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(WAIT)
        self.reader.join(WAIT)
        while (line := self.lines.get_nowait()) is not None:
            self.seen.append(line.split())
        self.finish()

    def finish(self) -> str:
        """Let it end (closing its stdin), then its stderr."""
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(WAIT)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return err


def target_for(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return race_target(store, tmp_path, request)


async def applied(target: str) -> tuple[dict[str, InputLifecycleState], Counter[str]]:
    """Every stored input's phase, and how many receipts name each input."""
    store = open_target(target)
    try:
        states = await store.load_input_states(RID)
        receipts = await store.load_boundary_receipts(RID)
    finally:
        await store.close()
    named = Counter(str(i) for r in receipts for i in r.contributing_input_ids)
    return {str(s.input_id): s.current_state() for s in states}, named


def assert_exactly_once(target: str, acked: list[str]) -> int:
    """Every acknowledged input is stored, and every stored one (also one
    committed just before a kill cut its ``ACK`` line) consumed and named
    by exactly one receipt. How many inputs were checked."""
    phases, named = asyncio.run(applied(target))
    assert set(acked) <= set(phases), "an acknowledged input is lost"
    assert dict(named) == dict.fromkeys(phases, 1)
    assert set(phases.values()) == {InputLifecycleState.CONSUMED}
    return len(phases)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_killed_owner_is_taken_over_and_every_input_runs_exactly_once(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    target = target_for(store, tmp_path, request)
    acked: list[str] = []
    epochs: list[int] = []
    recovered = 0  # inputs the killed owners left for the next one
    for n in range(KILLS):
        worker = Worker(target, f"worker-{n}", "work")
        ready = worker.next_line("READY")
        epochs.append(int(ready[1]))
        recovered += int(ready[2])
        while len(worker.said("ACK")) < 8:
            worker.next_line("ACK")
        worker.next_line("RUNNING")  # killed inside a run, inputs queued behind it
        worker.kill()
        acked += [words[1] for words in worker.said("ACK") if len(words) == 2]
    drainer = Worker(target, "drainer", "drain")
    ready = drainer.next_line("READY")
    epochs.append(int(ready[1]))
    recovered += int(ready[2])
    drainer.next_line("IDLE")
    err = drainer.finish()
    assert drainer.proc.returncode == 0, err
    # Each worker took the runtime over from a killed owner: a new epoch
    # each time, and the drainer completed whatever was left.
    assert epochs == list(range(1, KILLS + 2))
    assert recovered > 0, "no owner died with work pending: nothing was tested"
    checked = assert_exactly_once(target, acked)
    print(f"takeovers={KILLS} acknowledged={len(acked)} checked exactly-once={checked}")


def wait_stopped(pid: int) -> None:
    """Until the worker is stopped (it stops itself inside its run)."""
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), status


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_paused_owner_taken_over_is_fenced_when_it_wakes(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    target = target_for(store, tmp_path, request)
    paused = Worker(target, "paused", "stop")
    assert paused.next_line("READY")[1] == "1"
    acked = [paused.next_line("ACK")[1] for _ in range(STOP_INPUTS)]
    paused.next_line("RUNNING")
    wait_stopped(paused.proc.pid)
    taker = Worker(target, "taker", "drain")
    try:
        # The taker waits for the paused owner's lease to run out, claims
        # the runtime with the next epoch and runs every input it finds.
        assert taker.next_line("READY")[1:] == ["2", str(STOP_INPUTS)]
        taker.next_line("IDLE")
        assert sorted(w[1] for w in taker.said("DONE")) == sorted(acked)
        os.kill(paused.proc.pid, signal.SIGCONT)
        paused.next_line("END")
    finally:
        paused.finish()
        err = taker.finish()
    assert taker.proc.returncode == 0, err
    assert paused.proc.returncode == 0
    (boundary,) = paused.said("BOUNDARY")
    assert "boundary commit failed" in " ".join(boundary)
    assert "Store write fenced" in " ".join(boundary)
    waiters = paused.said("WAITER")
    assert sorted(w[1] for w in waiters) == sorted(acked)
    for words in waiters:
        assert words[2] == "RuntimeTerminated"
        assert " ".join(words[3:]).startswith("runtime ownership lost")
    (accept,) = paused.said("ACCEPT")
    assert accept[1] == "NotReadyError"
    assert "ownership lost" in " ".join(accept)
    writes = {w[1]: w[2] for w in paused.said("WRITE")}
    assert writes == {
        "persist_input_state": "FencedError",
        "atomic_apply": "FencedError",
    }
    assert assert_exactly_once(target, acked) == STOP_INPUTS
    refused = 1 + 1 + len(writes)  # the boundary, the accept, the raw writes
    print(f"takeovers=1 fenced writes refused={refused} inputs checked={len(acked)}")
