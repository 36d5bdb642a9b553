"""A minimal valid spec the spec error tests change one thing in.

``spec_text()`` renders a minimal valid machine into ``tmp_path``; each test
changes one thing, then asserts the problem's exact ``kind``, the ``line`` it
points at, the offending ``name`` and, where the loader knows it, the
``valid`` alternatives. Line numbers are computed from the text under test
(``line_of``) so that they stay exact when the base spec grows.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path

import codegen.validate  # noqa: F401 - imported before eval/exec are patched
from codegen.errors import SpecProblem
from codegen.loader import load_spec
from codegen.model import Spec
from tests.codegen import problems as shared
from tests.codegen.problems import only

REPO = Path(__file__).resolve().parents[2]
FILE = "lifecycle.yaml"

STATES = ("closed", "gone", "open", "scrapped")  # sorted, as `valid` is
TERMINAL = ("gone", "scrapped")
INPUTS = ("Close", "Open", "Paint", "Remove", "Scrap")
FIELDS = ("color", "count", "note")
COLORS = ("blue", "green", "red")
# Names an expression in a transition on `Open` (no parameters) may use.
OPEN_SCOPE = ("color", "count", "limit", "note", "phase")

BASE = """\
version: 1
types:
  Color: {kind: enum, members: [red, green, blue]}
machines:
  door:
    doc: A door that can be opened, painted and finally removed.
    state_type: DoorState
    states:
      closed: Shut.
      open: Open.
      gone: Removed; no more work.
      scrapped: Destroyed; no more work.
    initial: closed
    terminal: [gone, scrapped]
    constants:
      limit: 2
    fields:
      count: {type: int, initial: 0, range: [0, 3]}
      color: {type: Color, initial: red}
      note: {type: "optional[int]", initial: null}
    inputs:
      Open: {}
      Close: {}
      Paint: {shade: Color}
      Remove: {}
      Scrap: {}
    effects:
      Opened: {count: int}
    guards:
      below_limit: count < limit
    transitions:
      - name: open_door
        from: closed
        on: Open
        guards: [below_limit]
        set:
          count: count + 1
        emits: [Opened(count=count)]
        to: open
      - name: close_door
        from: open
        on: Close
        to: closed
      - name: paint
        from: [closed, open]
        on: Paint
        set:
          color: shade
        to: same
      - name: remove
        from: [closed, open]
        on: Remove
        to: gone
      - name: scrap
        from: [closed, open]
        on: Scrap
        to: scrapped
"""

GUARDS_ANCHOR = "      below_limit: count < limit\n"


def spec_text(
    *,
    replace: Mapping[str, str] | None = None,
    guards: Mapping[str, str] | None = None,
    transitions: str = "",
) -> str:
    """The minimal valid spec with one thing changed.

    ``replace`` maps text of the base spec (which must occur exactly once) to
    its replacement; ``guards`` adds named guards (the expression is written as
    a quoted YAML string, so it reaches the loader verbatim); ``transitions``
    is YAML for extra transitions, appended to the machine's list.
    """
    text = BASE
    for old, new in (replace or {}).items():
        assert text.count(old) == 1, f"{old!r} must occur once in the base spec"
        text = text.replace(old, new)
    extra = "".join(
        f"      {name}: {json.dumps(expr)}\n" for name, expr in (guards or {}).items()
    )
    text = text.replace(GUARDS_ANCHOR, GUARDS_ANCHOR + extra)
    return text + textwrap.indent(textwrap.dedent(transitions), " " * 6)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    return path


def load_ok(tmp_path: Path, text: str) -> Spec:
    return load_spec(write(tmp_path, text), FILE)


def problems(tmp_path: Path, text: str) -> list[SpecProblem]:
    return shared.problems(load_spec, tmp_path, FILE, text)


def one_problem(tmp_path: Path, text: str) -> SpecProblem:
    return only(problems(tmp_path, text))
