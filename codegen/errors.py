"""Spec errors: collected, never raised one at a time.

A spec author fixes a file faster when every problem is listed at once, each
with the file, the line, the offending name and what would have been valid.
Loaders append to a ``Problems`` list and keep going; the CLI prints them all
and exits non-zero before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One thing wrong with a spec file."""

    file: str
    line: int
    kind: str  # a stable category tests can match: "unknown-state", ...
    name: str  # the offending name or text
    message: str
    valid: tuple[str, ...] = ()  # what would have been accepted

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: [{self.kind}] {self.message}"
        if self.valid:
            text += f" (valid: {', '.join(self.valid)})"
        return text


@dataclass(slots=True)
class Problems:
    """An append-only list of problems found in one file."""

    file: str
    items: list[SpecProblem] = field(default_factory=list)

    def add(
        self,
        line: int,
        kind: str,
        name: str,
        message: str,
        valid: Iterable[str] = (),
    ) -> None:
        problem = SpecProblem(
            self.file, line, kind, name, message, tuple(sorted(valid))
        )
        # A mistake reached twice (a guard used by two transitions) is one mistake.
        if problem not in self.items:
            self.items.append(problem)

    def __bool__(self) -> bool:
        return bool(self.items)


class SpecError(Exception):
    """Raised once loading is over if any problem was found."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.kind))
        super().__init__("\n".join(str(p) for p in self.problems))
