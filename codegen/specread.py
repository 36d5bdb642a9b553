"""Reading the spec's YAML nodes: shape checks that report a problem instead
of raising, and the patterns names must follow.

Every section loader (``loader_types`` for ``types:``, ``loader`` for the
machines) reads its nodes through one ``Reader``, so every shape mistake is
reported the same way and collected rather than stopping at the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from codegen.errors import Problems
from codegen.yamlsrc import Node

IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")


class Reader:
    """Shape checks on YAML nodes that report instead of raising."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def mapping(self, node: Node | None, what: str) -> dict[str, Node]:
        if node is None:
            return {}
        if not isinstance(node.value, dict):
            self.problems.add(node.line, "shape", what, f"{what} must be a mapping")
            return {}
        return node.value

    def seq(self, node: Node | None, what: str) -> list[Node]:
        """A list; a single scalar counts as a list of one (``from: idle``)."""
        if node is None:
            return []
        if isinstance(node.value, list):
            return node.value
        if isinstance(node.value, dict):
            self.problems.add(node.line, "shape", what, f"{what} must be a list")
            return []
        return [node]

    def text(self, node: Node | None, what: str, line: int) -> str | None:
        if node is None:
            self.problems.add(line, "missing", what, f"{what} is required")
            return None
        if not isinstance(node.value, str):
            self.problems.add(node.line, "shape", what, f"{what} must be text")
            return None
        return node.value

    def keys(self, mapping: dict[str, Node], allowed: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for key, value in mapping.items():
            if key not in allowed:
                self.problems.add(
                    value.line,
                    "unknown-key",
                    key,
                    f"unknown key {key!r} in {what}",
                    allowed,
                )

    def name(self, name: str, line: int, pattern: re.Pattern[str], what: str) -> bool:
        if pattern.match(name):
            return True
        style = "snake_case" if pattern is SNAKE else "CamelCase"
        self.problems.add(line, "name", name, f"{what} {name!r} must be {style}")
        return False
