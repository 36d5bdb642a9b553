"""Errors in ``spec/policy.yaml`` are reported all at once, each located.

Issue 2, deliverable 3: spec errors are reported all at once with file, line,
name and what would be valid. The real policy table is the base: each test
changes one thing in a copy written to ``tmp_path`` and asserts the exact
``kind``, ``line``, ``name`` and ``valid`` of what ``load_policy`` reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from codegen.errors import SpecProblem
from codegen.policy import KIND_IDS, load_policy
from tests.codegen import problems as shared
from tests.codegen.problems import assert_problem, line_of, only

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "spec" / "policy.yaml"
FILE = "policy.yaml"
REAL = POLICY.read_text(encoding="utf-8")

OPERATION_ROW = (
    "  operation:\n"
    "    {apply: ignore, wake: {idle: none, running: none}, queue: priority,\n"
    "     consume: on_accept, drain: ignore, routing: drop, transcript: false}\n"
)
ROW_KEYS = ("apply", "consume", "drain", "queue", "routing", "transcript", "wake")


def policy_text(replace: Mapping[str, str]) -> str:
    """The real policy with each key of ``replace`` (found exactly once) replaced."""
    text = REAL
    for old, new in replace.items():
        assert text.count(old) == 1, f"{old!r} must occur once in spec/policy.yaml"
        text = text.replace(old, new)
    return text


def problems(tmp_path: Path, text: str) -> list[SpecProblem]:
    return shared.problems(load_policy, tmp_path, FILE, text)


def one_problem(tmp_path: Path, text: str) -> SpecProblem:
    return only(problems(tmp_path, text))


def test_real_policy_loads() -> None:
    policy = load_policy(POLICY, "spec/policy.yaml")
    assert policy.version == 1
    assert {kind for kind, _ in policy.kinds} == set(KIND_IDS)
    assert dict(policy.enums)["queue_mode"] == (
        "none",
        "fifo",
        "coalesce",
        "supersede",
        "priority",
    )


def test_copy_of_real_policy_loads(tmp_path: Path) -> None:
    """The helpers' baseline: an unmodified copy loads from ``tmp_path``."""
    path = tmp_path / FILE
    path.write_text(policy_text({}), encoding="utf-8")
    assert load_policy(path, FILE).exempt_kinds == ("peer_response_progress",)


@pytest.mark.parametrize(
    ("old", "new", "bad", "valid"),
    [
        pytest.param(
            "queue: priority",
            "queue: lifo",
            "lifo",
            ("coalesce", "fifo", "none", "priority", "supersede"),
            id="queue_mode",
        ),
        pytest.param(
            "routing: drop",
            "routing: discard",
            "discard",
            ("drop", "immediate", "queue", "steer"),
            id="routing_disposition",
        ),
        pytest.param(
            "apply: ignore",
            "apply: skip",
            "skip",
            ("ignore", "inject_now", "stage_run_boundary", "stage_run_start"),
            id="apply_mode",
        ),
    ],
)
def test_unknown_enum_value(
    tmp_path: Path, old: str, new: str, bad: str, valid: tuple[str, ...]
) -> None:
    """A value outside its enum lists the values the enum allows."""
    text = policy_text({old: new})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-value",
        line=line_of(text, new),
        name=bad,
        valid=valid,
    )


def test_missing_kind_row(tmp_path: Path) -> None:
    """T-3: every kind id needs a row; the problem lists the nine kind ids.

    It is located at the `kinds:` key.
    """
    text = policy_text({OPERATION_ROW: ""})
    assert_problem(
        one_problem(tmp_path, text),
        kind="missing-kind",
        line=line_of(text, "^kinds:"),
        name="operation",
        valid=tuple(sorted(KIND_IDS)),
    )


def test_unknown_kind_row(tmp_path: Path) -> None:
    """A misspelt kind id is unknown, and the real one is then missing."""
    text = policy_text({"  operation:\n": "  operations:\n"})
    found = problems(tmp_path, text)
    assert len(found) == 2, "\n".join(map(str, found))
    missing, unknown = found
    assert_problem(
        missing,
        kind="missing-kind",
        line=line_of(text, "^kinds:"),
        name="operation",
        valid=tuple(sorted(KIND_IDS)),
    )
    # Located at the row, which starts on the line after the key.
    assert_problem(
        unknown,
        kind="unknown-kind",
        line=line_of(text, "operations:") + 1,
        name="operations",
        valid=tuple(sorted(KIND_IDS)),
    )


def test_unknown_kind_in_override_list(tmp_path: Path) -> None:
    text = policy_text(
        {"exempt_kinds: [peer_response_progress]": "exempt_kinds: [peer_progress]"}
    )
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-kind",
        line=line_of(text, "peer_progress"),
        name="peer_progress",
        valid=tuple(sorted(KIND_IDS)),
    )


def test_unknown_key_in_row(tmp_path: Path) -> None:
    text = policy_text(
        {
            "routing: drop, transcript: false}": "routing: drop, transcript: false, urgency: high}"
        }
    )
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem,
        kind="unknown-key",
        line=line_of(text, "urgency"),
        name="urgency",
        valid=ROW_KEYS,
    )
    assert "kind operation" in problem.message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = policy_text({"policy_version: 1": "policy_version: 1\npolicy_versoin: 2"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-key",
        line=line_of(text, "policy_versoin"),
        name="policy_versoin",
        valid=(
            "enums",
            "fallback",
            "handling_mode_override",
            "kinds",
            "policy_version",
            "version",
        ),
    )


def test_missing_field_in_row(tmp_path: Path) -> None:
    """A row without `drain` is located at the row and lists drain values."""
    text = policy_text({"consume: on_accept, drain: ignore, ": "consume: on_accept, "})
    problem = one_problem(tmp_path, text)
    assert_problem(
        problem,
        kind="missing",
        line=line_of(text, "{apply: ignore"),
        name="drain_policy",
        valid=("ignore", "immediate", "queue_next_turn", "steer_batch"),
    )
    assert "kind operation" in problem.message


def test_missing_transcript_in_row(tmp_path: Path) -> None:
    text = policy_text({"routing: drop, transcript: false}": "routing: drop}"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="shape",
        line=line_of(text, "{apply: ignore"),
        name="kind operation",
    )


def test_duplicate_key_in_row(tmp_path: Path) -> None:
    text = policy_text({"queue: priority": "queue: priority, queue: coalesce"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="duplicate-key",
        line=line_of(text, "priority, queue: coalesce"),
        name="queue",
    )


def test_all_policy_problems_are_reported_together(tmp_path: Path) -> None:
    """Four independent mistakes: one SpecError lists all four, by line."""
    text = policy_text(
        {
            "queue: priority": "queue: lifo",
            "  peer_message:\n": "  peer_mesage:\n",
            "routing: drop, transcript: false}": "routing: drop, transcript: false, x: 1}",
        }
    )
    found = problems(tmp_path, text)
    assert [(p.line, p.kind, p.name) for p in found] == [
        (line_of(text, "^kinds:"), "missing-kind", "peer_message"),
        (line_of(text, "peer_mesage:") + 1, "unknown-kind", "peer_mesage"),
        (line_of(text, "queue: lifo"), "unknown-value", "lifo"),
        (line_of(text, "x: 1}"), "unknown-key", "x"),
    ]


# --------------------------------------------------------------------------
# regressions: defects found while writing these tests, now fixed


def test_override_row_problem_is_reported_once(tmp_path: Path) -> None:
    """Regression: each handling_mode_override row is loaded twice (transcript true and false), so each of its problems is reported twice."""
    old = "drain: queue_next_turn, routing: queue}"
    text = policy_text({old: "drain: queue_next_turn, routing: quue}"})
    assert_problem(
        one_problem(tmp_path, text),
        kind="unknown-value",
        line=line_of(text, "routing: quue"),
        name="quue",
        valid=("drop", "immediate", "queue", "steer"),
    )


def test_wrong_policy_file_version_is_reported(tmp_path: Path) -> None:
    """Regression: load_policy accepts the top-level `version` key but never checks it, so `version: 7` loads silently."""
    text = policy_text({"version: 1\n": "version: 7\n"})
    problem = one_problem(tmp_path, text)
    assert (problem.kind, problem.line) == ("version", line_of(text, "^version: 7"))
