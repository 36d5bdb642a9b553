"""Helpers shared by the spec and policy error tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from codegen.errors import SpecError, SpecProblem


def lines_of(text: str, needle: str) -> list[int]:
    """1-based numbers of the lines holding ``needle``; ``^`` anchors it at the
    start of a line."""
    numbered = enumerate(text.splitlines(), 1)
    if needle.startswith("^"):
        return [n for n, line in numbered if line.startswith(needle[1:])]
    return [n for n, line in numbered if needle in line]


def line_of(text: str, needle: str) -> int:
    found = lines_of(text, needle)
    assert len(found) == 1, f"{needle!r} is on lines {found}"
    return found[0]


def problems(
    load: Callable[[Path, str], object], tmp_path: Path, file: str, text: str
) -> list[SpecProblem]:
    """Write ``text`` as ``file``, load it, and return every problem found."""
    path = tmp_path / file
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load(path, file)
    found = caught.value.problems
    assert all(p.file == file for p in found)
    return found


def only(found: list[SpecProblem]) -> SpecProblem:
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def assert_problem(
    problem: SpecProblem,
    *,
    kind: str,
    line: int,
    name: str,
    valid: tuple[str, ...] | None = None,
) -> None:
    """Exact kind, line and name; ``valid`` too unless it is ``None``."""
    assert (problem.kind, problem.line, problem.name) == (kind, line, name), problem
    if valid is not None:
        assert problem.valid == valid, problem
    # The rendered form an author sees names the file and the line.
    assert str(problem).startswith(f"{problem.file}:{line}: [{kind}]")
