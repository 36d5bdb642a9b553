"""Errors in a spec's names, types and expressions are reported all at once,
each located (file, line, name and what would be valid).
"""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

import codegen.validate  # noqa: F401 - imported before eval/exec are patched
from codegen.expr import ALLOWED_SYNTAX
from tests.codegen.problems import assert_problem, line_of
from tests.codegen.specs import (
    COLORS,
    FIELDS,
    GUARDS_ANCHOR,
    INPUTS,
    OPEN_SCOPE,
    STATES,
    TERMINAL,
    load_ok,
    one_problem,
    problems,
    spec_text,
)

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
