"""How spec errors are reported: all at once, each once; the CLI writes nothing
and keeps existing outputs on a broken spec; storage declarations.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import codegen.validate  # noqa: F401 - imported before eval/exec are patched
from codegen.__main__ import main
from codegen.errors import SpecError
from codegen.loader import load_spec
from tests.codegen.problems import assert_problem, line_of
from tests.codegen.specs import (
    FILE,
    REPO,
    STATES,
    load_ok,
    one_problem,
    problems,
    spec_text,
    write,
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
