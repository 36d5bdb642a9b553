"""``external: true`` on a spec union (L-12's abandon reasons): the loader
reads it, and refuses anything but a boolean."""

from __future__ import annotations

from pathlib import Path

from codegen.loader import load_spec
from codegen.types import UnionT
from tests.codegen.problems import assert_problem, line_of, only, problems

REPO = Path(__file__).resolve().parents[2]
SPEC = (REPO / "spec" / "lifecycle.yaml").read_text(encoding="utf-8")


def test_the_abandon_reason_union_is_external() -> None:
    spec = load_spec(REPO / "spec" / "lifecycle.yaml")
    unions = {u.name: u for u in spec.types if isinstance(u, UnionT)}
    assert unions["InputAbandonReason"].external
    assert not unions["InputTerminalOutcome"].external


def test_external_must_be_a_boolean(tmp_path: Path) -> None:
    text = SPEC.replace("external: true", "external: sometimes")
    problem = only(problems(load_spec, tmp_path, "lifecycle.yaml", text))
    assert_problem(
        problem,
        kind="shape",
        line=line_of(text, "external: sometimes"),
        name="InputAbandonReason.external",
    )
