"""Errors in a spec's structure: duplicates, nondeterministic or unreachable
transitions, exits from terminal states, YAML syntax, versions and keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import codegen.validate  # noqa: F401 - imported before eval/exec are patched
from codegen.loader import TRANSITION_KEYS
from tests.codegen.problems import assert_problem, line_of, lines_of
from tests.codegen.specs import (
    STATES,
    TERMINAL,
    load_ok,
    one_problem,
    spec_text,
)

# --------------------------------------------------------------------------
# duplicates


def test_duplicate_transition_name(tmp_path: Path) -> None:
    """The second definition is reported, naming the line of the first."""
    text = spec_text(
        transitions="""\
        - name: close_door
          from: open
          on: Close
          to: closed
        """
    )
    first, second = lines_of(text, "- name: close_door")
    problem = one_problem(tmp_path, text)
    assert_problem(problem, kind="duplicate-transition", line=second, name="close_door")
    assert f"already defined on line {first}" in problem.message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    """YAML would silently keep the last value; the loader refuses instead."""
    text = spec_text(
        replace={"initial: closed\n": "initial: closed\n    initial: open\n"}
    )
    assert_problem(
        one_problem(tmp_path, text),
        kind="duplicate-key",
        line=line_of(text, "initial: open"),
        name="initial",
    )


# --------------------------------------------------------------------------
# whole-machine checks (codegen.validate)


def test_unguarded_pair_is_nondeterministic(tmp_path: Path) -> None:
    """Two unguarded transitions for (open, Close): the second is reported."""
    text = spec_text(
        transitions="""\
        - name: slam
          from: open
          on: Close
          to: closed
        """
    )
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem,
        kind="nondeterministic",
        line=line_of(text, "- name: slam"),
        name="slam",
    )
    assert "enables both close_door and slam" in problem.message


OVERLAP_TRANSITIONS = """\
- name: wedge
  from: open
  on: Open
  guards: [low]
  to: same
- name: swing
  from: open
  on: Open
  guards: [other]
  to: closed
"""


def test_overlapping_guards_are_nondeterministic(tmp_path: Path) -> None:
    """`count < 2` and `count > 0` both hold at count=1: reported with it."""
    text = spec_text(
        guards={"low": "count < 2", "other": "count > 0"},
        transitions=OVERLAP_TRANSITIONS,
    )
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem,
        kind="nondeterministic",
        line=line_of(text, "- name: swing"),
        name="swing",
    )
    assert "in state 'open' input Open enables both wedge and swing" in problem.message
    assert "(e.g. count=1)" in problem.message


def test_exclusive_guards_are_accepted(tmp_path: Path) -> None:
    """`count < 2` and `count >= 2` never hold together: no problem."""
    spec = load_ok(
        tmp_path,
        spec_text(
            guards={"low": "count < 2", "other": "count >= 2"},
            transitions=OVERLAP_TRANSITIONS,
        ),
    )
    assert {"wedge", "swing"} <= {t.name for t in spec.machines[0].transitions}


def test_unreachable_state(tmp_path: Path) -> None:
    """A state no transition leads to; `valid` lists the reachable states.

    The problem is located at the state's own declaration.
    """
    text = spec_text(
        replace={
            "      scrapped: Destroyed; no more work.\n": (
                "      scrapped: Destroyed; no more work.\n      attic: Never entered.\n"
            )
        }
    )
    assert_problem(
        one_problem(tmp_path, text),
        kind="unreachable-state",
        line=line_of(text, "attic: Never"),
        name="attic",
        valid=STATES,
    )


def test_exit_from_terminal_state_to_live_state(tmp_path: Path) -> None:
    """`gone` is terminal: leaving it for `closed` is reported."""
    text = spec_text(
        transitions="""\
        - name: restore
          from: gone
          on: Open
          to: closed
        """
    )
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem,
        kind="terminal-exit",
        line=line_of(text, "- name: restore"),
        name="restore",
        valid=TERMINAL,
    )
    assert "leaves terminal state 'gone' for live state 'closed'" in problem.message


def test_terminal_to_terminal_is_accepted(tmp_path: Path) -> None:
    """`gone` -> `scrapped` stays terminal (like stopped -> destroyed)."""
    spec = load_ok(
        tmp_path,
        spec_text(
            transitions="""\
            - name: crush
              from: gone
              on: Scrap
              to: scrapped
            """
        ),
    )
    assert "crush" in {t.name for t in spec.machines[0].transitions}


# --------------------------------------------------------------------------
# file-level problems


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = spec_text(replace={"initial: closed": "initial: closed: open"})
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem, kind="yaml", line=line_of(text, "initial: closed: open"), name=""
    )
    assert "mapping values are not allowed here" in problem.message


@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        pytest.param("version: 1\n", "version: 2\n", "2", id="wrong"),
        pytest.param("version: 1\n", "", "None", id="missing"),
    ],
)
def test_version(tmp_path: Path, old: str, new: str, shown: str) -> None:
    """Only spec version 1 is read; `valid` says so."""
    text = spec_text(replace={old: new})
    assert_problem(
        one_problem(tmp_path, text), kind="version", line=1, name=shown, valid=("1",)
    )


def test_unknown_key(tmp_path: Path) -> None:
    """A misspelt key in a transition lists the keys a transition takes."""
    text = spec_text(
        replace={"to: closed": "to: closed\n        gaurds: [below_limit]"}
    )
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-key",
        line=line_of(text, "gaurds"),
        name="gaurds",
        valid=tuple(sorted(TRANSITION_KEYS)),
    )


@pytest.mark.parametrize(
    ("old", "name", "first_line"),
    [
        pytest.param(
            "        on: Close\n",
            "transition close_door: on",
            "- name: close_door",
            id="on",
        ),
        pytest.param(
            "name: close_door\n        ", "transition name", "- from: open", id="name"
        ),
    ],
)
def test_missing_transition_key(
    tmp_path: Path, old: str, name: str, first_line: str
) -> None:
    """A required key that is absent points at the transition's first line."""
    text = spec_text(replace={old: ""})
    assert_problem(
        one_problem(tmp_path, text),
        kind="missing",
        line=line_of(text, first_line),
        name=name,
    )


def test_transition_name_style(tmp_path: Path) -> None:
    text = spec_text(replace={"name: close_door": "name: CloseDoor"})
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem, kind="name", line=line_of(text, "CloseDoor"), name="CloseDoor"
    )
    assert "snake_case" in problem.message


def test_unknown_type(tmp_path: Path) -> None:
    """An unknown parameter type lists the primitive and named types."""
    text = spec_text(replace={"Opened: {count: int}": "Opened: {count: Count}"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-type",
        line=line_of(text, "Count}"),
        name="Count",
        valid=("Color", "DoorState", "bool", "int", "optional[T]", "str"),
    )


def test_unknown_effect(tmp_path: Path) -> None:
    text = spec_text(replace={"emits: [Opened(count=count)]": "emits: [Slammed]"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-effect",
        line=line_of(text, "Slammed"),
        name="Slammed",
        valid=("Opened",),
    )
