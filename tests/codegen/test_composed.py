"""The composed model (issue 14): runtime control x two inputs x the lanes.

Exploring it takes seconds, so the shipped model is explored once per module;
the mutations use a smaller model (one input) that still shows the bug.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.compose import COMPOSED, Report, explore, load_composed
from codegen.errors import SpecError
from codegen.loader import load_spec
from codegen.model import Spec
from tests.conftest import ROOT

TEXT = (ROOT / COMPOSED).read_text(encoding="utf-8")
SCENARIOS = [f"Z-{n}" for n in range(1, 11)]


@pytest.fixture(scope="module")
def shipped(spec: Spec) -> Report:
    return explore(load_composed(ROOT / COMPOSED, spec, str(COMPOSED)))


def _explore(tmp_path: Path, spec: Spec, text: str) -> Report:
    path = tmp_path / "composed.yaml"
    path.write_text(text, encoding="utf-8")
    return explore(load_composed(path, spec, "composed.yaml"))


def test_ingress_invariants_hold_in_every_composed_state(shipped: Report) -> None:
    """Lanes vs phases, in-run inputs vs the current run, and no live input in
    a stopped or destroyed runtime hold in every reachable composed state."""
    assert shipped.failure is None, shipped.report()
    assert shipped.states > 10_000
    assert [name for name, _ in shipped.composed.invariants] == [
        "in_a_lane_iff_queued",
        "in_run_inputs_belong_to_the_current_run",
        "stopped_or_destroyed_holds_no_live_input",
    ]


def test_every_reference_scenario_has_a_shortest_witness(shipped: Report) -> None:
    """Z-1 .. Z-10 are each reached; the witness printed is the shortest
    (breadth-first), e.g. Z-1 is exactly accept, run, stage, apply, commit,
    complete after the runtime starts."""
    assert shipped.ok, shipped.report()
    found = [w for w in shipped.witnesses if w in SCENARIOS]
    assert sorted(found, key=SCENARIOS.index) == SCENARIOS
    assert shipped.witnesses["Z-1"] == [
        "initialize()",
        "accept(a, queue)",
        "begin_run(run_1)",
        "stage(a)",
        "apply(a)",
        "commit_boundary(a)",
        "complete_run()",
    ]
    assert shipped.witnesses["Z-2"][-1] == "fail_run()"
    assert "witness Z-8 (9 steps)" in shipped.report()


def _one_input(text: str) -> str:
    """The model with input a only (its goals about b, and the accept beside a
    run, which needs a second input, left out)."""
    text = text[: text.index("  # A-10 beside a run")]
    return (
        text.replace("names: [a, b]", "names: [a]")
        .replace("and b.position == 1", "")
        .replace("and b.phase == InputLifecycleState.consumed", "")
    )


def test_a_failed_run_that_forgets_the_lane_breaks_an_invariant(
    tmp_path: Path, spec: Spec
) -> None:
    """Decision 2 as the model sees it: without the requeue the rolled-back
    input is queued in no lane, and the trace shows how."""
    text = _one_input(TEXT).replace("        requeue: front\n", "", 1)
    report = _explore(tmp_path, spec, text)
    assert report.failure is not None
    assert report.failure.startswith("invariant in_a_lane_iff_queued violated")
    assert report.trace[-1].endswith("fail_run()")


def test_stop_that_keeps_inputs_breaks_an_invariant(tmp_path: Path, spec: Spec) -> None:
    """C-11: a stop that abandons nothing (and leaves the lanes alone) keeps
    a live input in a stopped runtime."""
    stop = (
        "      - {runtime: StopRequested()}\n"
        "      - {<<: *abandon_live, apply: "
        "Abandon(reason=InputAbandonReason.Destroyed())}\n"
        "      - {lanes: clear}\n  destroy:"
    )
    assert stop in TEXT
    text = _one_input(TEXT).replace(
        stop, "      - {runtime: StopRequested()}\n  destroy:"
    )
    report = _explore(tmp_path, spec, text)
    assert report.failure is not None
    assert "stopped_or_destroyed_holds_no_live_input" in report.failure


def test_an_unreachable_scenario_is_a_failure(tmp_path: Path, spec: Spec) -> None:
    text = _one_input(TEXT).replace(
        'Z-6: action == "accept" and a.lane == HandlingMode.steer',
        'Z-6: action == "accept" and a.lane == HandlingMode.steer'
        " and a.attempt_count == 3",
    )
    report = _explore(tmp_path, spec, text)
    assert report.missing == ["Z-6"]
    assert not report.ok
    assert "FAILED: no witness for Z-6" in report.report()


def test_unknown_names_are_reported_with_their_line(tmp_path: Path, spec: Spec) -> None:
    text = TEXT.replace(
        "queue_length == 0\n    and a.terminal_outcome",
        "queue_len == 0\n    and a.terminal_outcome",
        1,
    )
    path = tmp_path / "composed.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_composed(path, spec, "composed.yaml")
    (problem,) = caught.value.problems
    assert (problem.kind, problem.name) == ("unknown-name", "queue_len")
    assert problem.line == next(
        n for n, line in enumerate(text.splitlines(), 1) if line.startswith("  Z-4:")
    )


def test_accept_happens_only_where_the_runtime_hears_of_it(
    tmp_path: Path, shipped: Report
) -> None:
    """PD-24: accept tells the runtime (AdmissionAccepted), so a runtime that
    refused queued admissions while running would leave a queued accept
    disabled there: the shipped model reaches one, the refusing one never."""
    assert "accepted_during_a_run" in shipped.witnesses
    quiet = (
        "      - name: admission_queue_quiet\n        from: [idle, attached, running]"
    )
    wake = "      - name: admission_queue_wake\n        from: [idle, attached, running]"
    lifecycle = (ROOT / "spec" / "lifecycle.yaml").read_text(encoding="utf-8")
    assert lifecycle.count(quiet) == lifecycle.count(wake) == 1
    refusing = lifecycle.replace(quiet, quiet.replace(", running]", "]")).replace(
        wake, wake.replace(", running]", "]")
    )
    path = tmp_path / "lifecycle.yaml"
    path.write_text(refusing, encoding="utf-8")
    report = _explore(tmp_path, load_spec(path, "lifecycle.yaml"), TEXT)
    assert report.failure is None
    assert report.missing == ["accepted_during_a_run"]
