"""How the demo renders: the live narration of the worker's events and the
closing list of claims.

Apart from ``demo`` so the story (what the sessions do, the crash, the
recovery) reads without the console formatting, and the formatting without
the story.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from meerkat_runtime.demo_claims import Claim, Event
from meerkat_runtime.inspection import (
    short,
)
from meerkat_runtime.runs import RunApplyBoundary


class Narrator:
    """Prints the worker's (and the restarted process's) events as they come."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.texts: dict[str, str] = {}

    def show(self, event: Event) -> None:
        handlers = {
            "note": self._on_note,
            "ack": self._on_ack,
            "run_started": self._on_run_started,
            "run_failed": self._on_run_failed,
            "settled": self._on_settled,
        }
        handler = handlers.get(str(event["event"]))
        if handler is not None:
            handler(event)

    def line(self, session: str, mark: str, style: str, message: str) -> None:
        line = Text(f"  {session:<14}", style="bold")
        line.append(f"{mark} ", style=style)
        line.append(message)
        self.console.print(line)

    def quote(self, input_id: str) -> str:
        return f"“{self.texts.get(input_id, short(input_id))}”"

    def _on_note(self, event: Event) -> None:
        self.line(event["session"], "·", "dim", event["text"])

    def _on_ack(self, event: Event) -> None:
        self.texts.setdefault(event["input_id"], event["text"])
        quoted = self.quote(event["input_id"])
        if event["outcome"] == "deduplicated":
            original = short(event["existing_id"])
            message = f"Deduplicated {quoted}: same idempotency key as {original}"
            self.line(event["session"], "≡", "yellow", message)
            return
        message = f"acknowledged (durable) {quoted}"
        self.line(event["session"], "✔", "green", message)

    def _on_run_started(self, event: Event) -> None:
        names = ", ".join(self.quote(i) for i in event["inputs"])
        message = f"run {short(event['run_id'])} started: {names}"
        if event["boundary"] == RunApplyBoundary.RUN_CHECKPOINT.value:
            message += "  [steer: at a run checkpoint]"
        if event["blocked"]:
            message += "  ← hangs here, mid-run"
        self.line(event["session"], "▶", "cyan", message)

    def _on_run_failed(self, event: Event) -> None:
        message = f"run {short(event['run_id'])} failed ({event['error']}): back to queued, retry"
        self.line(event["session"], "✘", "red", message)

    def _on_settled(self, event: Event) -> None:
        quoted = self.quote(event["input_id"])
        if "superseded" in event["outcome"]:
            message = f"{quoted} superseded by the newer event before it ran"
            self.line(event["session"], "⊘", "magenta", message)
            return
        self.line(event["session"], "■", "blue", f"{quoted}: {event['outcome']}")


def print_claims(console: Console, claims: list[Claim]) -> None:
    console.rule("What you just saw")
    for claim in claims:
        mark, style = ("✔", "green") if claim.ok else ("✘", "bold red")
        line = Text(f"{mark} ", style=style)
        line.append(f"{claim.title}: ", style="bold")
        line.append(claim.text)
        console.print(line)
