"""Mutation suite for the model checker (issue 14): each mutation of a scratch
copy of spec/lifecycle.yaml is a mistake an author could make that still
loads and type-checks; the checker must reject it with a counterexample trace,
and the property that catches it is pinned, so a weakened property shows up
here and not only in the table-snapshot test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from codegen.checker import Result, check_machine
from codegen.errors import SpecError
from codegen.loader import load_spec
from codegen.properties import load_properties
from tests.conftest import ROOT

SPEC = (ROOT / "spec" / "lifecycle.yaml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Mutation:
    name: str
    machine: str
    edits: tuple[tuple[str, str], ...]  # (old text, new text), each old text unique
    kind: str  # the verdict kind that must refute it
    property: str  # a part of the refuted property's name


MUTATIONS = [
    Mutation(
        "a live state with no exits",
        "input_lifecycle",
        (
            (
                "      abandoned: Given up",
                "      parked: Set aside, never to move again.\n      abandoned: Given up",
            ),
            ("      Consume: {}\n", "      Consume: {}\n      Park: {}\n"),
            (
                "    transitions:\n      - name: queue_accepted",
                "    transitions:\n      - {name: park, from: queued, on: Park, to: parked}\n"
                "      - name: queue_accepted",
            ),
        ),
        "deadlock",
        "every live configuration",
    ),
    Mutation(
        "a cycle applied_pending_consumption -> applied",
        "input_lifecycle",
        (
            ("      Consume: {}\n", "      Consume: {}\n      Reapply: {}\n"),
            (
                "    transitions:\n      - name: queue_accepted",
                "    transitions:\n      - {name: reapply, from: applied_pending_consumption,"
                " on: Reapply, to: applied}\n      - name: queue_accepted",
            ),
        ),
        "cycles",
        "cycles among live phases",
    ),
    Mutation(
        "Consume allowed from applied (skipping the boundary)",
        "input_lifecycle",
        (
            (
                "        from: applied_pending_consumption\n        on: Consume",
                "        from: [applied, applied_pending_consumption]\n        on: Consume",
            ),
        ),
        "action",
        "consumed_through_a_run_has_a_boundary",
    ),
    Mutation(
        "the run-end transitions from retired removed",
        "runtime_control",
        (
            (
                "      - {<<: *run_end_retired, name: run_failed_while_retired, on: RunFailed}\n",
                "",
            ),
            (
                "      - {<<: *run_end_retired, name: run_cancelled_while_retired,"
                " on: RunCancelled}\n",
                "",
            ),
            (
                "      - &run_end_retired\n        name: run_completed_while_retired\n"
                "        from: retired\n        on: RunCompleted\n"
                "        guards: [active_run_matches]\n        to: retired\n"
                "        set: *run_end_set\n",
                "",
            ),
        ),
        "enabled",
        "a_run_in_flight_can_end",
    ),
    Mutation(
        "guard dropped: BeginRun without no_active_run",
        "runtime_control",
        (
            (
                "        on: BeginRun\n        guards: [no_active_run]\n",
                "        on: BeginRun\n",
            ),
        ),
        "action",
        "a_run_is_never_replaced",
    ),
    Mutation(
        "an update that decreases attempt_count",
        "input_lifecycle",
        (
            (
                "        guards: [attempts_remain]\n        to: queued\n"
                "        emits: [InputLifecycleNotice(new_state=phase)]\n"
                "      - name: rollback_staged_exhausted",
                "        guards: [attempts_remain]\n        to: queued\n"
                "        set: {attempt_count: attempt_count - 1}\n"
                "        emits: [InputLifecycleNotice(new_state=phase)]\n"
                "      - name: rollback_staged_exhausted",
            ),
        ),
        "cycles",
        "cycles among live phases",
    ),
    Mutation(
        "terminal outcome overwritten (Abandon from consumed)",
        "input_lifecycle",
        (
            (
                "        from: [accepted, queued, staged, applied, applied_pending_consumption]\n"
                "        on: Abandon",
                "        from: [accepted, queued, staged, applied, applied_pending_consumption,"
                " consumed]\n        on: Abandon",
            ),
        ),
        "action",
        "terminal_outcome_is_final",
    ),
    Mutation(
        "an emit referencing a wrong field",
        "input_lifecycle",
        (
            (
                "          - RecordBoundarySequence(boundary_sequence=boundary_sequence)\n"
                "      - name: consume\n",
                "          - RecordBoundarySequence(boundary_sequence=attempt_count)\n"
                "      - name: consume\n",
            ),
        ),
        "effects",
        "every emitted effect",
    ),
    Mutation(
        "a run returns to the wrong phase",
        "runtime_control",
        (
            (
                "name: run_completed_to_attached, guards: [active_run_matches,"
                " pre_run_state_is_attached], to: attached}",
                "name: run_completed_to_attached, guards: [active_run_matches,"
                " pre_run_state_is_attached], to: idle}",
            ),
        ),
        "action",
        "a_run_ends_where_it_began",
    ),
    Mutation(
        "a notice naming the wrong phase",
        "input_lifecycle",
        (
            (
                "        to: queued\n        emits: [InputLifecycleNotice(new_state=phase)]\n"
                "      - name: stage_for_run",
                "        to: queued\n"
                "        emits: [InputLifecycleNotice(new_state=InputLifecycleState.accepted)]\n"
                "      - name: stage_for_run",
            ),
        ),
        "effects",
        "every emitted effect",
    ),
    Mutation(
        "a steer signal raised where nothing is accepted",
        "runtime_control",
        (
            (
                "        on: WorkWaiting\n        to: same\n        emits: [SignalWake()]",
                "        on: WorkWaiting\n        to: same\n"
                "        emits: [SignalWake(), SignalImmediateProcess()]",
            ),
        ),
        "effects",
        "every emitted effect",
    ),
    Mutation(
        "a queued admission refused while running",
        "runtime_control",
        (
            (
                "      - name: admission_queue_quiet\n        from: [idle, attached, running]",
                "      - name: admission_queue_quiet\n        from: [idle, attached]",
            ),
        ),
        "enabled",
        "an_accepting_runtime_hears_of_admissions",
    ),
    Mutation(
        "waiting work refused once the runtime is destroyed",
        "runtime_control",
        (
            (
                "        from: [idle, attached, running, recovering, retired, stopped, destroyed]\n"
                "        on: WorkWaiting",
                "        from: [idle, attached, running, recovering, retired, stopped]\n"
                "        on: WorkWaiting",
            ),
        ),
        "enabled",
        "waiting_work_is_heard_in_every_phase",
    ),
]


def _mutate(text: str, mutation: Mutation) -> str:
    for old, new in mutation.edits:
        assert text.count(old) == 1, f"{mutation.name}: {old!r} is not unique"
        text = text.replace(old, new)
    return text


def _check(tmp_path: Path, text: str, machine: str) -> Result:
    path = tmp_path / "lifecycle.yaml"
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path, "lifecycle.yaml")
    declared = load_properties(path, spec, "lifecycle.yaml")
    m = next(m for m in spec.machines if m.name == machine)
    return check_machine(m, declared[machine])


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_checker_rejects_the_mutation_with_a_trace(
    tmp_path: Path, mutation: Mutation
) -> None:
    """Issue 14: the mutated spec loads (it is well-typed and deterministic)
    but the checker refutes the named property, printing a counterexample that
    starts at the initial configuration."""
    result = _check(tmp_path, _mutate(SPEC, mutation), mutation.machine)
    assert not result.ok
    caught = [
        v
        for v in result.refuted
        if v.kind == mutation.kind and mutation.property in v.name
    ]
    assert caught, result.report()
    trace = caught[0].trace
    assert trace[0].startswith("0. initial: ")
    assert len(trace) >= 2
    assert f"FAILED {mutation.kind} " in result.report()


def test_the_unmutated_spec_proves_every_property(tmp_path: Path) -> None:
    """The baseline of the suite: the same scratch copy, unmutated, passes."""
    for machine in ("input_lifecycle", "runtime_control"):
        result = _check(tmp_path, SPEC, machine)
        assert result.ok, result.report()
        assert result.verdicts
        assert not result.refuted


def test_mutations_cover_every_property_kind() -> None:
    """Each kind of property has a mutation that only it is asked to catch."""
    kinds = {m.kind for m in MUTATIONS}
    assert kinds == {"deadlock", "cycles", "action", "enabled", "effects"}


def test_every_binding_is_what_catches_a_refused_binding(tmp_path: Path) -> None:
    """An `enabled` property holds by default when some binding is enabled;
    with `every_binding: true` a single refused binding refutes it, and the
    failure names that binding."""
    refused = next(m for m in MUTATIONS if m.name.startswith("a queued admission"))
    mutated = _mutate(SPEC, refused)
    every = "        inputs: [AdmissionAccepted]\n        every_binding: true\n"
    assert mutated.count(every) == 1
    lenient = _check(
        tmp_path,
        mutated.replace(every, "        inputs: [AdmissionAccepted]\n"),
        "runtime_control",
    )
    assert lenient.ok, lenient.report()
    strict = _check(tmp_path, mutated, "runtime_control")
    (verdict,) = strict.refuted
    assert verdict.name == "an_accepting_runtime_hears_of_admissions"
    assert verdict.failure is not None
    assert verdict.failure.startswith(
        "AdmissionAccepted(handling_mode=queue, wake_if_idle=False) not enabled"
    )
    assert verdict.trace[-1].split(" -> ")[-1].startswith("phase=running")


def test_every_binding_must_be_true_or_false(tmp_path: Path) -> None:
    every = "        every_binding: true\n"
    assert SPEC.count(every) == 1
    with pytest.raises(SpecError) as caught:
        _check(
            tmp_path,
            SPEC.replace(every, "        every_binding: yes please\n"),
            "runtime_control",
        )
    (problem,) = caught.value.problems
    assert (problem.kind, problem.name) == (
        "type",
        "an_accepting_runtime_hears_of_admissions",
    )
    assert problem.line == SPEC.splitlines().index(every.rstrip("\n")) + 1
