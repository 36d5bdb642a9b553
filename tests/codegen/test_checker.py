"""The model checker (issue 2, deliverable 4): exhaustive, shortest traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.checker import check_machine
from codegen.loader import load_spec
from codegen.model import Spec

BROKEN = """
version: 1
machines:
  broken:
    doc: An invariant that breaks after three increments.
    state_type: BrokenState
    states: {low: Low., high: High.}
    initial: low
    terminal: []
    fields:
      x: {type: int, initial: 0, range: [0, 5]}
      flag: {type: bool, initial: false}
    inputs: {Inc: {}, Toggle: {}, Raise: {}, Lower: {}}
    invariants:
      x_below_three: x < 3
    transitions:
      - {name: inc, from: [low, high], on: Inc, to: same, set: {x: x + 1}}
      - {name: toggle, from: [low, high], on: Toggle, to: same, set: {flag: not flag}}
      - {name: raise_it, from: low, on: Raise, to: high}
      - {name: lower_it, from: high, on: Lower, to: low}
"""

BROKEN_REPORT = """\
broken: 9 states, 13 transitions explored, 2/2 phases reached, 4/4 transitions fired, 1 invariants checked
  FAILED: invariant x_below_three violated: `x < 3`
  shortest trace (3 steps):
    0. initial: phase=low x=0 flag=False
    1. Inc() [inc] -> phase=low x=1 flag=False
    2. Inc() [inc] -> phase=low x=2 flag=False
    3. Inc() [inc] -> phase=low x=3 flag=False"""

DEAD = """
version: 1
machines:
  dead:
    state_type: DeadState
    states: {a: A., b: B.}
    initial: a
    terminal: []
    fields:
      n: {type: int, initial: 0, range: [0, 1]}
    inputs: {Go: {}}
    guards:
      never: n > 1
    transitions:
      - {name: go, from: a, on: Go, guards: [never], to: b}
"""


def _load(tmp_path: Path, text: str) -> Spec:
    path = tmp_path / "lifecycle.yaml"
    path.write_text(text, encoding="utf-8")
    return load_spec(path, "lifecycle.yaml")


def test_broken_invariant_prints_the_exact_shortest_trace(tmp_path: Path) -> None:
    """Breadth-first order finds the 3-step trace, not a longer one through
    Toggle or Raise, and prints every step with its input and transition."""
    result = check_machine(_load(tmp_path, BROKEN).machines[0])
    assert not result.ok
    assert result.report() == BROKEN_REPORT


def test_guard_that_never_holds_is_reported_as_dead(tmp_path: Path) -> None:
    """A state only reachable through an impossible guard is 'never reached'
    and its transition 'never fired': both fail verification."""
    result = check_machine(_load(tmp_path, DEAD).machines[0])
    assert not result.ok
    assert result.unreached == ["b"]
    assert result.never_fired == ["go"]
    assert "phases never reached: b" in result.report()


def test_range_violation_is_a_failure(tmp_path: Path) -> None:
    text = BROKEN.replace("range: [0, 5]", "range: [0, 1]").replace(
        "x_below_three: x < 3", "x_small: x < 9"
    )
    result = check_machine(_load(tmp_path, text).machines[0])
    assert result.failure == "field x = 2 is outside its range [0, 1]"
    assert len(result.trace) == 3


@pytest.mark.parametrize("name", ["input_lifecycle", "runtime_control"])
def test_real_machines_hold_every_invariant(spec: Spec, name: str) -> None:
    """L-3 / C-3: the shipped machines pass with every phase reached and
    every transition fired (C-16: the spec invariants hold)."""
    machine = next(m for m in spec.machines if m.name == name)
    result = check_machine(machine)
    assert result.ok, result.report()
    assert result.phases_reached == set(machine.states)
    assert result.configs > 30


def test_attempts_are_bounded_by_the_max_attempts_rule(spec: Spec) -> None:
    """L-4: attempt_count never exceeds 3, so the input machine is finite
    without any artificial bound (its declared range is never hit)."""
    machine = next(m for m in spec.machines if m.name == "input_lifecycle")
    result = check_machine(machine)
    assert result.failure is None
    assert "rollback_staged_exhausted" in result.fired


STORAGE = """
version: 1
machines:
  stored:
    state_type: StoredState
    states:
      a: A.
      b: {{doc: B., stored_as: {stored}}}
      c: {{doc: C., restore: [{restore}]}}
    initial: a
    terminal: []
    inputs: {{ToB: {{}}, ToC: {{}}, Back: {{}}}}
    transitions:
      - {{name: to_b, from: a, on: ToB, to: b}}
      - {{name: to_c, from: [a, b], on: ToC, to: c}}
      - {{name: back, from: [b, c], on: Back, to: a}}
"""


def test_storage_declarations_that_hold_pass(tmp_path: Path) -> None:
    """D-3 / D-11: b is stored as a (stored as itself); ToC leads to c."""
    (m,) = _load(
        tmp_path, STORAGE.format(stored="StoredState.a", restore="ToC")
    ).machines
    assert check_machine(m).ok


def test_stored_as_a_phase_that_is_stored_otherwise_fails(tmp_path: Path) -> None:
    (m,) = _load(tmp_path, STORAGE.format(stored="phase", restore="ToC")).machines
    assert check_machine(m).ok  # b stored as itself
    text = STORAGE.format(stored="StoredState.b", restore="ToC").replace(
        "a: A.", "a: {doc: A., stored_as: StoredState.b}"
    )
    (m,) = _load(tmp_path, text).machines
    result = check_machine(m)
    assert result.failure == "a is stored as b, which is not stored as itself"


def test_restore_that_ends_elsewhere_fails(tmp_path: Path) -> None:
    (m,) = _load(tmp_path, STORAGE.format(stored="phase", restore="Back")).machines
    result = check_machine(m)
    assert result.failure == "restore of c by Back ends in a"
