"""A worker process of the failover tests (issue 15):
``python -m tests.ownership.failover_child TARGET OWNER MODE``.

TARGET is a SQLite path or ``postgres:<schema>:<dsn>``; every worker opens
it with a lease of ``LEASE_TTL`` seconds and waits up to ``CLAIM_WAIT`` for
another owner's lease to run out. It drives the session "failover" through
a ``RuntimeSessionAdapter`` under the owner id OWNER and reports on stdout,
one line per fact, only once the fact is true:

* every mode: ``READY <epoch> <inputs recovered>`` once it owns the runtime;
* ``work``: accepts inputs for ever (``ACK <id>`` after ``accept_input``
  returned) while its loop runs them (``RUNNING`` as a run starts), until
  it is killed;
* ``drain``: runs what it recovered (``DONE <id>`` as each completes),
  says ``IDLE``, then holds the runtime until its stdin closes;
* ``stop``: accepts ``STOP_INPUTS`` inputs (``ACK``), then stops itself
  (SIGSTOP) inside the first run, after ``RUNNING``. Once continued it
  reports what became of its boundary commit (``BOUNDARY <reason>``, from
  the executor's stop), of its waiters (``WAITER <id> <reason>``), of a new
  accept (``ACCEPT <outcome>``) and of writes sent straight through its
  stale fenced view (``WRITE <method> <outcome>``), then ``END``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from meerkat_runtime import (
    CoreApplyOutput,
    InputHeader,
    InputId,
    LogicalRuntimeId,
    PromptInput,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RunResult,
    RuntimeSessionAdapter,
    SessionId,
    receipt_for,
)
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.outcomes import Accepted
from meerkat_runtime.sessions.completion import CompletionHandle
from meerkat_runtime.store import RuntimeStore, SqliteRuntimeStore
from meerkat_runtime.testing.conformance_support import receipt_for as receipt_naming
from meerkat_runtime.testing.conformance_support import rich_state

SESSION = SessionId("failover")
LEASE_TTL = 2.0
CLAIM_WAIT = 60.0
STOP_INPUTS = 3


def say(*words: object) -> None:
    print(*words, flush=True)


def open_target(target: str) -> RuntimeStore:
    if target.startswith("postgres:"):
        from meerkat_runtime.store.postgres import PostgresRuntimeStore

        schema, dsn = target.removeprefix("postgres:").split(":", 1)
        return PostgresRuntimeStore(dsn, schema=schema, lease_ttl=LEASE_TTL)
    return SqliteRuntimeStore(target, lease_ttl=LEASE_TTL)


class Worker:
    """The executor: answers every run, announcing it first. With
    ``stop_in_run`` the first run stops the whole process (SIGSTOP, as a
    paused VM would) and goes on when it is continued."""

    def __init__(self, *, stop_in_run: bool = False) -> None:
        self.stop_in_run = stop_in_run
        self.resumed = asyncio.Event()
        self.stops: list[str] = []
        self.stopped = asyncio.Event()

    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        say("RUNNING")
        if self.stop_in_run and not self.resumed.is_set():
            # Synchronous: nothing else of this process runs until SIGCONT.
            os.kill(os.getpid(), signal.SIGSTOP)
            self.resumed.set()
        else:
            await asyncio.sleep(0.005)  # a run takes a moment: kills land in it
        return CoreApplyOutput(
            receipt=receipt_for(run_id, primitive), run_result=RunResult(text="ok")
        )

    async def control(self, command: RunControlCommand) -> None:
        self.stops.append(str(getattr(command, "reason", command)))
        self.stopped.set()


def prompt(n: int) -> PromptInput:
    return PromptInput(header=InputHeader.new(), text=f"input {n}")


async def work(adapter: RuntimeSessionAdapter) -> None:
    await adapter.register_session_with_executor(SESSION, Worker())
    n = 0
    while True:
        outcome = await adapter.accept_input(SESSION, prompt(n))
        assert isinstance(outcome, Accepted)
        say("ACK", outcome.input_id)
        n += 1
        await asyncio.sleep(0.002)


async def drain(adapter: RuntimeSessionAdapter) -> None:
    handles: list[tuple[InputId, CompletionHandle]] = []
    for input_id in await adapter.list_active_inputs(SESSION):
        handle = await adapter.completion_for(SESSION, input_id)
        if handle is not None:
            handles.append((input_id, handle))
    await adapter.register_session_with_executor(SESSION, Worker())
    for input_id, handle in handles:
        say("DONE", input_id, type(await handle.wait()).__name__)
    say("IDLE")
    await asyncio.to_thread(sys.stdin.read)  # hold the runtime until told


async def stop(adapter: RuntimeSessionAdapter) -> None:
    handles: list[tuple[InputId, CompletionHandle]] = []
    for n in range(STOP_INPUTS):
        outcome, handle = await adapter.accept_input_with_completion(SESSION, prompt(n))
        assert isinstance(outcome, Accepted)
        assert handle is not None
        handles.append((outcome.input_id, handle))
        say("ACK", outcome.input_id)
    driver = adapter.sessions[SESSION].driver
    assert isinstance(driver, PersistentRuntimeDriver)
    stale = driver.store  # its fenced view, kept past the takeover
    executor = Worker(stop_in_run=True)
    await adapter.register_session_with_executor(SESSION, executor)
    await executor.resumed.wait()
    await asyncio.wait_for(executor.stopped.wait(), 30)
    say("BOUNDARY", executor.stops[0])
    for input_id, handle in handles:
        answer = await asyncio.wait_for(handle.wait(), 30)
        say("WAITER", input_id, type(answer).__name__, getattr(answer, "reason", ""))
    try:
        await adapter.accept_input(SESSION, prompt(99))
    except Exception as refused:
        say("ACCEPT", type(refused).__name__, refused)
    else:
        say("ACCEPT accepted")
    await stale_writes(stale, [input_id for input_id, _ in handles])
    say("END")


async def stale_writes(stale: RuntimeStore, ran: list[InputId]) -> None:
    """Writes the stale owner sends straight to the store, past every check
    of its own: the store must refuse each (PD-36)."""
    runtime_id = LogicalRuntimeId(str(SESSION))
    writes: dict[str, Callable[[], Awaitable[object]]] = {
        "persist_input_state": lambda: stale.persist_input_state(
            runtime_id, rich_state(1)
        ),
        "atomic_apply": lambda: stale.atomic_apply(
            runtime_id, None, receipt_naming(RunId.new(), ran), []
        ),
    }
    for method, write in writes.items():
        try:
            await write()
        except Exception as refused:
            say("WRITE", method, type(refused).__name__)
        else:
            say("WRITE", method, "written")


async def main(target: str, owner: str, mode: str) -> None:
    store = open_target(target)
    adapter = RuntimeSessionAdapter.persistent(
        store, MemoryBlobStore(), owner=owner, claim_wait=CLAIM_WAIT, retry_delay=0.01
    )
    await adapter.register_session(SESSION)
    driver = adapter.sessions[SESSION].driver
    assert isinstance(driver, PersistentRuntimeDriver)
    assert driver.lease is not None
    report = adapter.recovery_report(SESSION)
    say("READY", driver.lease.epoch, report.inputs_recovered if report else 0)
    await {"work": work, "drain": drain, "stop": stop}[mode](adapter)
    await adapter.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
