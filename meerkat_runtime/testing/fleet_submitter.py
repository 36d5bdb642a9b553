"""A submitter process of a fleet (issue 17, item 4): submits prompts to
the inboxes of many sessions with ``RuntimeSubmitter``, none of which it
owns, and waits on every completion handle it was given, while worker
processes elsewhere admit and run them.

``python -m meerkat_runtime.testing.fleet_submitter TARGET REPORT --name N
--sessions S --inputs K [--schema X] [--prefix P] [--hold FILE]``

Round by round, each session is sent its next prompt (the sessions side by
side, a session's own prompts one after another, so its arrival order is
known), and every other round the key of an earlier prompt is sent again,
which must be answered ``Deduplicated`` naming that prompt. A submission
the store refuses as unavailable is sent again unchanged (same id, same
key): it is acknowledged by whichever answer comes back. The log (stdout)
says ``submitting`` and ``submitted`` around the submission phase; the
report (JSON, written at the end) holds what a checker needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from meerkat_runtime.errors import is_retryable
from meerkat_runtime.ids import IdempotencyKey, InputId, SessionId
from meerkat_runtime.inputs import InputHeader, PromptInput
from meerkat_runtime.outcomes import AcceptOutcome, Deduplicated, Submitted
from meerkat_runtime.sessions.completion import CompletionHandle
from meerkat_runtime.sessions.submitter import RuntimeSubmitter
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.testing.fleet import session_ids

RETRY_PAUSE = 0.05  # seconds before sending a refused submission again
HOLD_WAIT = 300.0  # a hang guard for --hold
SUBMITTING = "submitting"
SUBMITTED = "submitted"


@dataclass
class SubmitterReport:
    """What one submitter process saw (JSON in its report file)."""

    name: str
    acked: dict[str, list[str]] = field(default_factory=dict)  # by session
    deduplicated: int = 0  # resubmissions answered Deduplicated, rightly
    wrong: list[str] = field(default_factory=list)  # answers that were not
    handles: int = 0  # completion handles held
    finished: int = 0  # answers without a handle: the input was done already
    outcomes: dict[str, int] = field(default_factory=dict)  # by outcome type
    retries: int = 0  # submissions sent again after a refusal

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> SubmitterReport:
        return cls(**json.loads(path.read_text()))

    @property
    def inputs(self) -> int:
        return sum(len(ids) for ids in self.acked.values())


class _Submitting:
    def __init__(self, submitter: RuntimeSubmitter, report: SubmitterReport) -> None:
        self.submitter = submitter
        self.report = report
        self.handles: list[CompletionHandle] = []

    async def send(self, sid: SessionId, prompt: PromptInput) -> AcceptOutcome:
        while True:
            try:
                outcome, handle = await self.submitter.submit_with_completion(
                    sid, prompt
                )
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.report.retries += 1
                await asyncio.sleep(RETRY_PAUSE)
                continue
            if handle is None:
                self.report.finished += 1
            else:
                self.handles.append(handle)
            return outcome

    async def one(self, sid: SessionId, n: int) -> None:
        acked = self.report.acked[str(sid)]
        outcome = await self.send(sid, self._prompt(sid, n))
        if isinstance(outcome, Submitted):
            acked.append(str(outcome.input_id))
        elif isinstance(outcome, Deduplicated):  # a refused send that was written
            acked.append(str(outcome.existing_id))
        else:
            self.report.wrong.append(f"{sid} #{n}: {outcome!r}")
        if n % 2 == 1 and len(acked) > n // 2:
            again = await self.send(sid, self._prompt(sid, n // 2))
            if isinstance(again, Deduplicated) and again.existing_id == InputId(
                acked[n // 2]
            ):
                self.report.deduplicated += 1
            else:
                self.report.wrong.append(f"{sid} #{n // 2} again: {again!r}")

    def _prompt(self, sid: SessionId, n: int) -> PromptInput:
        key = IdempotencyKey(f"{self.report.name}/{sid}/{n}")
        header = InputHeader.new(idempotency_key=key)
        return PromptInput(header=header, text=f"{self.report.name} {sid} #{n}")


async def submit_and_wait(
    store: RuntimeStore,
    name: str,
    sessions: list[SessionId],
    per_session: int,
    hold: Path | None = None,
) -> SubmitterReport:
    """Submit ``per_session`` prompts to each session (module doc), then wait
    on every handle; the report of it all. With ``hold``, the second half of
    the rounds waits until that file exists (a test makes sure something
    happens while inputs are still arriving)."""
    report = SubmitterReport(name, acked={str(sid): [] for sid in sessions})
    submitter = RuntimeSubmitter(store)
    work = _Submitting(submitter, report)
    try:
        print(SUBMITTING, flush=True)
        for n in range(per_session):
            if n == per_session // 2 and hold is not None:
                await _wait_for(hold)
            await asyncio.gather(*(work.one(sid, n) for sid in sessions))
        print(f"{SUBMITTED} {report.inputs}", flush=True)
        outcomes = await asyncio.gather(*(h.wait() for h in work.handles))
    finally:
        await submitter.close()
    report.handles = len(work.handles)
    report.outcomes = dict(Counter(type(o).__name__ for o in outcomes))
    return report


async def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + HOLD_WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear")
        await asyncio.sleep(RETRY_PAUSE)


async def _open(target: str, schema: str) -> RuntimeStore:
    from meerkat_runtime.targets import is_dsn

    if is_dsn(target):
        from meerkat_runtime.store.postgres import PostgresRuntimeStore

        return await PostgresRuntimeStore.open(target, schema=schema)
    from meerkat_runtime.store.sqlite import SqliteRuntimeStore

    return await SqliteRuntimeStore.open(Path(target))


async def _main(args: argparse.Namespace) -> None:
    store = await _open(args.target, args.schema)
    try:
        sessions = session_ids(args.sessions, args.prefix)
        start = time.perf_counter()
        report = await submit_and_wait(
            store, args.name, sessions, args.inputs, args.hold
        )
        print(f"done in {time.perf_counter() - start:.1f}s", flush=True)
    finally:
        await store.close()
    report.save(args.report)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a SQLite file or a PostgreSQL DSN")
    parser.add_argument("report", type=Path, help="where the JSON report goes")
    parser.add_argument("--name", required=True)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--inputs", type=int, default=5, help="per session")
    parser.add_argument("--schema", default="meerkat")
    parser.add_argument("--prefix", default="inbox")
    parser.add_argument(
        "--hold", type=Path, help="the second half waits for this file to exist"
    )
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
