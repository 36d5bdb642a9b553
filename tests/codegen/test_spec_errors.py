"""Errors in ``spec/lifecycle.yaml`` are reported all at once, each located.

Issue 2, deliverable 3: spec errors are reported all at once with file, line,
name and what would be valid. Every test here writes a small self-contained
spec into ``tmp_path``: ``spec_text()`` renders a minimal valid machine and
each test changes one thing, then asserts the problem's exact ``kind``, the
``line`` it points at, the offending ``name`` and, where the loader knows it,
the ``valid`` alternatives. Line numbers are computed from the text under test
(``line_of``) so that they stay exact when the base spec grows.
"""

from __future__ import annotations

import builtins
import json
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

import codegen.validate  # noqa: F401 - imported before eval/exec are patched
from codegen.__main__ import main
from codegen.errors import SpecError, SpecProblem
from codegen.expr import ALLOWED_SYNTAX
from codegen.loader import TRANSITION_KEYS, load_spec
from codegen.model import Spec
from tests.codegen import problems as shared
from tests.codegen.problems import assert_problem, line_of, lines_of, only

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


# --------------------------------------------------------------------------
# the baseline


def test_minimal_spec_loads_cleanly(tmp_path: Path) -> None:
    """The base every other test mutates is itself valid."""
    spec = load_ok(tmp_path, spec_text())
    (door,) = spec.machines
    assert door.name == "door"
    assert door.states == ("closed", "open", "gone", "scrapped")
    assert door.terminal == TERMINAL
    assert [t.name for t in door.transitions] == [
        "open_door",
        "close_door",
        "paint",
        "remove",
        "scrap",
    ]


# --------------------------------------------------------------------------
# unknown names, each with what would have been valid


@pytest.mark.parametrize(
    ("old", "new", "bad"),
    [
        pytest.param("initial: closed", "initial: shut", "shut", id="initial"),
        pytest.param(
            "terminal: [gone, scrapped]",
            "terminal: [gone, scraped]",
            "scraped",
            id="terminal",
        ),
        # `closed` stays valid so that the transition keeps a source.
        pytest.param(
            "from: [closed, open]\n        on: Paint",
            "from: [closed, opne]\n        on: Paint",
            "opne",
            id="from",
        ),
        pytest.param("to: gone", "to: gnoe", "gnoe", id="to"),
    ],
)
def test_unknown_state(tmp_path: Path, old: str, new: str, bad: str) -> None:
    """An unknown state in initial/terminal/from/to lists the declared states."""
    text = spec_text(replace={old: new})
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem, kind="unknown-state", line=line_of(text, bad), name=bad, valid=STATES
    )


def test_unknown_input(tmp_path: Path) -> None:
    """`on` must name a declared input; the inputs are listed."""
    text = spec_text(replace={"on: Close": "on: Shut"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-input",
        line=line_of(text, "on: Shut"),
        name="Shut",
        valid=INPUTS,
    )


def test_set_of_unknown_field(tmp_path: Path) -> None:
    """`set` may only assign declared fields; the fields are listed."""
    text = spec_text(replace={"color: shade": "colour: shade"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-field",
        line=line_of(text, "colour: shade"),
        name="colour",
        valid=FIELDS,
    )


def test_unknown_guard(tmp_path: Path) -> None:
    """A transition's guard must be a named guard; the guards are listed."""
    text = spec_text(replace={"guards: [below_limit]": "guards: [below_limt]"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-guard",
        line=line_of(text, "below_limt"),
        name="below_limt",
        valid=("below_limit",),
    )


@pytest.mark.parametrize(
    ("old", "new", "bad", "valid"),
    [
        pytest.param(
            "below_limit: count < limit",
            "below_limit: count < limt",
            "limt",
            OPEN_SCOPE,
            id="guard",
        ),
        pytest.param(
            "count: count + 1", "count: count + one", "one", OPEN_SCOPE, id="set"
        ),
        pytest.param(
            "emits: [Opened(count=count)]",
            "emits: [Opened(count=cnt)]",
            "cnt",
            OPEN_SCOPE,
            id="emits",
        ),
        # Inside a transition on `Paint` its parameter `shade` is in scope too.
        pytest.param(
            "color: shade",
            "color: shde",
            "shde",
            (*OPEN_SCOPE, "shade"),
            id="set-with-param",
        ),
    ],
)
def test_unknown_name_in_expression(
    tmp_path: Path, old: str, new: str, bad: str, valid: tuple[str, ...]
) -> None:
    """A bare name must be a field, parameter, constant or `phase`."""
    text = spec_text(replace={old: new})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-name",
        line=line_of(text, new),
        name=bad,
        valid=valid,
    )


@pytest.mark.parametrize(
    ("old", "new", "bad", "valid"),
    [
        pytest.param(
            "color: shade", "color: Color.purple", "Color.purple", COLORS, id="enum"
        ),
        pytest.param(
            "below_limit: count < limit",
            "below_limit: phase == DoorState.ajar",
            "DoorState.ajar",
            ("closed", "gone", "open", "scrapped"),
            id="state",
        ),
    ],
)
def test_unknown_enum_member(
    tmp_path: Path, old: str, new: str, bad: str, valid: tuple[str, ...]
) -> None:
    """`Enum.member` must name a member; the members are listed."""
    text = spec_text(replace={old: new})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-member",
        line=line_of(text, new),
        name=bad,
        valid=valid,
    )


# --------------------------------------------------------------------------
# type errors


@pytest.mark.parametrize(
    ("old", "new", "bad", "message"),
    [
        pytest.param(
            "below_limit: count < limit",
            "below_limit: count + 1",
            "count + 1",
            "must be a bool, got int",
            id="guard-not-bool",
        ),
        pytest.param(
            "color: shade",
            "color: count",
            "color",
            "color is Color, `count` is int",
            id="set-wrong-type",
        ),
        pytest.param(
            "below_limit: count < limit",
            "below_limit: count == DoorState.open",
            "count == DoorState.open",
            "cannot compare int with DoorState",
            id="int-vs-state",
        ),
        pytest.param(
            "below_limit: count < limit",
            "below_limit: color < Color.green",
            "color < Color.green",
            "ordering needs int, got Color and Color",
            id="ordering-non-int",
        ),
        pytest.param(
            "below_limit: count < limit",
            "below_limit: count is limit",
            "count is limit",
            "`is` may only compare with None",
            id="is-not-none",
        ),
        pytest.param(
            "below_limit: count < limit",
            "below_limit: count is None",
            "count is None",
            "int is never None",
            id="is-none-on-non-optional",
        ),
        pytest.param(
            "count: count + 1",
            "count: count + True",
            "True",
            "expected int, got bool",
            id="arithmetic-on-bool",
        ),
    ],
)
def test_type_error(tmp_path: Path, old: str, new: str, bad: str, message: str) -> None:
    """Expressions are type-checked against fields, parameters and types."""
    text = spec_text(replace={old: new})
    problem = one_problem(tmp_path, text)
    assert_problem(problem, kind="type", line=line_of(text, new), name=bad)
    assert message in problem.message


def test_optional_field_may_be_compared_with_none(tmp_path: Path) -> None:
    """The accepted counterpart of the `is` errors above."""
    load_ok(
        tmp_path,
        spec_text(replace={GUARDS_ANCHOR: "      below_limit: note is None\n"}),
    )


# --------------------------------------------------------------------------
# disallowed syntax: expressions are parsed and whitelisted, never evaluated


@pytest.mark.parametrize(
    ("expr", "node"),
    [
        pytest.param("__import__('os')", "Name", id="call-of-dunder"),
        pytest.param("lambda: True", "Lambda", id="lambda"),
        pytest.param("Color.red.name", "Attribute", id="attribute-of-attribute"),
        pytest.param("note[0]", "Subscript", id="subscription"),
        pytest.param("[count]", "List", id="list"),
        pytest.param("count * 2", "Mult", id="multiplication"),
    ],
)
def test_disallowed_syntax(tmp_path: Path, expr: str, node: str) -> None:
    """Syntax outside the whitelist is named and the allowed forms listed."""
    text = spec_text(guards={"bad": expr})
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem,
        kind="expression",
        line=line_of(text, "bad:"),
        name=expr,
        valid=tuple(sorted(ALLOWED_SYNTAX)),
    )
    assert f"{node} is not allowed" in problem.message


def test_unparsable_expression(tmp_path: Path) -> None:
    text = spec_text(guards={"bad": "count <"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="expression",
        line=line_of(text, "bad:"),
        name="count <",
        valid=(),
    )


def test_expressions_are_never_evaluated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No eval: code in a spec cannot run, even while it is being rejected."""
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    calls: list[str] = []

    def forbidden(*args: object, **kwargs: object) -> None:
        calls.append(repr((args, kwargs)))
        raise AssertionError("the spec loader must not eval or exec")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    load_ok(tmp_path, spec_text())  # a valid spec needs no eval either
    text = spec_text(guards={"payload": payload, "dunder": "__import__('os')"})
    found = problems(tmp_path, text)
    assert [(p.kind, p.name) for p in found] == [
        ("expression", payload),
        ("expression", "__import__('os')"),
    ]
    assert not marker.exists()
    assert calls == []


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


# --------------------------------------------------------------------------
# all at once


def test_all_problems_in_one_file_are_reported_together(tmp_path: Path) -> None:
    """Five independent mistakes: one SpecError lists all five, by line."""
    text = spec_text(
        replace={
            "version: 1": "version: 3",
            "initial: closed": "initial: shut",
            "guards: [below_limit]": "guards: [below_limt]",
            "on: Close": "on: Shut",
            "color: shade": "colour: shade",
        }
    )
    found = problems(tmp_path, text)
    assert [(p.line, p.kind, p.name) for p in found] == [
        (1, "version", "3"),
        (line_of(text, "initial: shut"), "unknown-state", "shut"),
        (line_of(text, "below_limt"), "unknown-guard", "below_limt"),
        (line_of(text, "on: Shut"), "unknown-input", "Shut"),
        (line_of(text, "colour: shade"), "unknown-field", "colour"),
    ]
    assert len(found) == 5
    # The exception's text is the full report, one located line per problem.
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text), FILE)
    assert str(caught.value).count(f"{FILE}:") == 5


# --------------------------------------------------------------------------
# regressions: defects found while writing these tests, now fixed


def test_unknown_only_source_is_reported_once(tmp_path: Path) -> None:
    """Regression: a transition whose only `from` state is unknown is also reported as `missing` ('needs `from`') on top of the unknown-state problem."""
    text = spec_text(
        replace={"from: open\n        on: Close": "from: opne\n        on: Close"}
    )
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-state",
        line=line_of(text, "from: opne"),
        name="opne",
        valid=STATES,
    )


def test_guard_used_twice_reports_its_problem_once(tmp_path: Path) -> None:
    """Regression: a guard is type-checked once per transition using it, so one mistake in a guard used twice is reported twice."""
    text = spec_text(
        replace={
            "below_limit: count < limit": "below_limit: count < limt",
            "on: Close\n": "on: Close\n        guards: [below_limit]\n",
        }
    )
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-name",
        line=line_of(text, "count < limt"),
        name="limt",
    )


def test_unused_guard_is_still_checked(tmp_path: Path) -> None:
    """Regression: a guard no transition uses is parsed but never type-checked, so an unknown name in it is accepted."""
    text = spec_text(guards={"unused": "cout < 2"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-name",
        line=line_of(text, "unused:"),
        name="cout",
    )


def test_missing_target_is_reported_once(tmp_path: Path) -> None:
    """Regression: a transition without `to` gets the same `missing` problem twice (r.text runs once directly and once inside _state)."""
    text = spec_text(replace={"        to: closed\n": ""})
    assert_problem(
        one_problem(tmp_path, text),
        kind="missing",
        line=line_of(text, "- name: close_door"),
        name="transition close_door: to",
    )


def test_unknown_field_type_is_reported_once(tmp_path: Path) -> None:
    """Regression: a field of unknown type is treated as int afterwards, so its initial value and every `set` of it get spurious type errors."""
    text = spec_text(
        replace={"type: Color, initial: red": "type: Colour, initial: red"}
    )
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-type",
        line=line_of(text, "Colour"),
        name="Colour",
    )


# --------------------------------------------------------------------------
# the CLI: a broken spec writes nothing


def broken_root(tmp_path: Path) -> tuple[Path, str]:
    """A repository root whose lifecycle is broken and whose policy is real."""
    root = tmp_path / "repo"
    (root / "spec").mkdir(parents=True)
    text = spec_text(replace={"to: gone": "to: gnoe"})
    (root / "spec" / "lifecycle.yaml").write_text(text, encoding="utf-8")
    shutil.copy(REPO / "spec" / "policy.yaml", root / "spec" / "policy.yaml")
    return root, text


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_cli_generate_on_broken_spec_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, text = broken_root(tmp_path)
    before = snapshot(root)
    status = main(["generate", "--root", str(root)])
    assert status != 0
    assert status == 2
    assert not (root / "meerkat_runtime" / "generated").exists()
    assert not (root / "diagrams").exists()
    assert snapshot(root) == before
    err = capsys.readouterr().err
    line = line_of(text, "to: gnoe")
    assert f"spec/lifecycle.yaml:{line}: [unknown-state]" in err
    assert "'gnoe'" in err
    assert "valid: closed, gone, open, scrapped" in err
    assert "nothing written" in err


@pytest.mark.parametrize("command", ["generate", "diagrams", "check"])
def test_cli_keeps_existing_outputs_on_broken_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """All or nothing: old outputs are neither rewritten nor deleted as orphans."""
    root, _ = broken_root(tmp_path)
    old_module = root / "meerkat_runtime" / "generated" / "old.py"
    old_dot = root / "diagrams" / "old.dot"
    for path in (old_module, old_dot):
        path.parent.mkdir(parents=True)
        path.write_text("# stale\n", encoding="utf-8")
    before = snapshot(root)
    assert main([command, "--root", str(root)]) == 2
    assert snapshot(root) == before
    assert "spec/lifecycle.yaml:" in capsys.readouterr().err


def test_cli_verify_on_broken_spec_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, text = broken_root(tmp_path)
    assert main(["verify", "--root", str(root)]) != 0
    err = capsys.readouterr().err
    assert f"spec/lifecycle.yaml:{line_of(text, 'to: gnoe')}:" in err


# --------------------------------------------------------------------------
# storage declarations (stored_as, restore)

STORED_OPEN = "      open:\n        doc: Open.\n        stored_as: {stored}\n"
RESTORED_GONE = (
    "      gone:\n        doc: Removed; no more work.\n        restore: [{inputs}]\n"
)


def test_storage_declarations_load(tmp_path: Path) -> None:
    """D-3 / D-11: a state may say how it is stored and how it comes back."""
    text = spec_text(
        replace={
            "      open: Open.\n": STORED_OPEN.format(stored="DoorState.closed"),
            "      gone: Removed; no more work.\n": RESTORED_GONE.format(
                inputs="Remove"
            ),
        }
    )
    (door,) = load_ok(tmp_path, text).machines
    assert [(s, e.text) for s, e in door.stored_as] == [("open", "DoorState.closed")]
    assert door.restore == (("gone", ("Remove",)),)
    assert dict(door.state_docs)["open"] == "Open."


def test_stored_as_must_be_a_phase(tmp_path: Path) -> None:
    text = spec_text(
        replace={"      open: Open.\n": STORED_OPEN.format(stored="count - 1")}
    )
    problem = one_problem(tmp_path, text)
    assert_problem(problem, kind="type", line=line_of(text, "count - 1"), name="open")


def test_restore_names_inputs_without_parameters(tmp_path: Path) -> None:
    text = spec_text(
        replace={
            "      gone: Removed; no more work.\n": RESTORED_GONE.format(inputs="Paint")
        }
    )
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem,
        kind="unknown-input",
        line=line_of(text, "restore: [Paint]"),
        name="Paint",
        valid=("Close", "Open", "Remove", "Scrap"),
    )


def test_unknown_state_key_is_reported(tmp_path: Path) -> None:
    text = spec_text(
        replace={
            "      open: Open.\n": "      open:\n        doc: Open.\n        kept: x\n"
        }
    )
    assert problems(tmp_path, text)
