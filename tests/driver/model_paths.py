"""Paths through the input lifecycle, planned from the spec, for the
model-based driver tests (``test_model_paths.py``).

The spec's machine moves one abstract input by lifecycle inputs; a driver
moves it by operations, and one operation may fire several lifecycle inputs
(a boundary marks an input applied and pending consumption in one commit).
So the graph searched here has the spec's configurations as nodes (plus two
bits of driver context: is a run open, is the runtime closed) and one edge
per driver operation, labelled with the lifecycle inputs it fires. The
lifecycle inputs are stepped with the checker's own ``step``, so what the
plan expects is what the spec says, never a copy of it.

Breadth-first search from the initial configuration gives, for every
transition, a shortest sequence of operations that fires it; the plan keeps
one such path per transition not already fired by an earlier path, then one
per (operation, phase) pair no path has taken yet, so every operation is
also tried from every phase it is allowed in (destroy of a staged input,
restart of one pending consumption ...). A path that is a prefix of another
is dropped: the longer one checks the same steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from codegen.checker import Config, step
from codegen.loader import load_spec
from codegen.model import Machine

SPEC = Path(__file__).resolve().parents[2] / "spec" / "lifecycle.yaml"

# Abstract parameter values: the harness maps them to the concrete run, the
# replacing input and the abandon reason of the operation it performs.
RUN = "run"
NEWER = "newer"

LifecycleStep = tuple[str, Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class Node:
    """The abstract input's configuration plus the driver context."""

    config: Config
    run_open: bool = False  # a run was started and has not ended
    closed: bool = False  # destroyed or stopped: no operation follows

    @property
    def phase(self) -> str:
        return str(self.config[0])


@dataclass(frozen=True, slots=True)
class Move:
    """One driver operation and the transitions it fired."""

    op: str
    transitions: tuple[str, ...]
    target: Node


def _steps(node: Node, op: str) -> tuple[list[LifecycleStep], Node] | None:
    """The lifecycle inputs ``op`` fires from ``node`` and the context after
    it, or None when the driver would refuse the operation there."""
    phase, run_open = node.phase, node.run_open
    fresh = phase == "accepted"
    if node.closed or (fresh and not op.startswith("accept")):
        return None
    after = Node(node.config, run_open, node.closed)
    match op:
        case "accept_queued" | "accept_consumed" if fresh:
            name = "QueueAccepted" if op == "accept_queued" else "ConsumeOnAccept"
            return [(name, {})], after
        case "stage" if phase == "queued" and not run_open:
            return [("StageForRun", {"run_id": RUN})], Node(node.config, True)
        case "boundary" if phase == "staged" and run_open:
            pending = ("MarkAppliedPendingConsumption", {"boundary_sequence": 0})
            return [("MarkApplied", {"run_id": RUN}), pending], after
        case "run_completed" | "run_failed" if run_open:
            ends: list[LifecycleStep] = []
            if phase == "staged":  # still staged at the run's end: put back
                ends = [("RollbackStaged", {})]
            elif phase == "applied_pending_consumption" and op == "run_completed":
                ends = [("Consume", {})]
            return ends, Node(node.config, False)
        case "restart" if not run_open:
            # A new driver recovers from the store: an input pending
            # consumption whose receipt is committed is consumed (D-11).
            if phase == "applied_pending_consumption":
                return [("Consume", {})], after
            return [], after
        case "supersede" | "coalesce" if phase == "queued":
            name = "Supersede" if op == "supersede" else "Coalesce"
            param = "superseded_by" if op == "supersede" else "aggregate_id"
            return [(name, {param: NEWER})], after
        case "reset" | "abandon_pending" if not run_open:
            return _abandon(node, op), after
        case "destroy" | "stop":
            return _abandon(node, op), Node(node.config, False, True)
    return None


TERMINAL = ("consumed", "superseded", "coalesced", "abandoned")


def _abandon(node: Node, reason: str) -> list[LifecycleStep]:
    if node.phase in TERMINAL:
        return []
    return [("Abandon", {"reason": reason})]


OPERATIONS = (
    "accept_queued",
    "accept_consumed",
    "stage",
    "boundary",
    "run_completed",
    "run_failed",
    "restart",
    "supersede",
    "coalesce",
    "reset",
    "abandon_pending",
    "destroy",
    "stop",
)


def moves(machine: Machine, node: Node) -> list[Move]:
    """Every driver operation enabled at ``node``, stepped through the spec."""
    out = []
    for op in OPERATIONS:
        planned = _steps(node, op)
        if planned is None:
            continue
        lifecycle, after = planned
        config, fired = node.config, []
        for name, params in lifecycle:
            stepped = step(machine, config, name, params)
            assert stepped is not None, f"{op} at {node}: the spec refuses {name}"
            transition, config = stepped
            fired.append(transition.name)
        target = Node(config, after.run_open, after.closed)
        out.append(Move(op, tuple(fired), target))
    return out


@dataclass(frozen=True, slots=True)
class Plan:
    machine: Machine
    paths: tuple[tuple[Move, ...], ...]
    covered: frozenset[str]

    @property
    def uncovered(self) -> set[str]:
        return {t.name for t in self.machine.transitions} - self.covered


def lifecycle_machine() -> Machine:
    spec = load_spec(SPEC, "lifecycle.yaml")
    return next(m for m in spec.machines if m.name == "input_lifecycle")


def plan(machine: Machine) -> Plan:
    """Shortest operation paths that together fire every transition a driver
    operation can fire."""
    initial = Node((machine.initial, *(f.initial for f in machine.fields)))
    parents: dict[Node, tuple[Node, Move] | None] = {initial: None}
    first: dict[str, tuple[Node, Move]] = {}  # goal -> where first reached
    queue = deque([initial])
    while queue:
        node = queue.popleft()
        for move in moves(machine, node):
            for goal in (*move.transitions, f"{move.op}@{_phase_goal(node)}"):
                first.setdefault(goal, (node, move))
            if move.target not in parents:
                parents[move.target] = (node, move)
                queue.append(move.target)
    goals = [t.name for t in machine.transitions] + [
        g for g in first if "@" in g
    ]  # spec order first: a stable plan
    paths: list[tuple[Move, ...]] = []
    reached: set[str] = set()
    for goal in goals:
        if goal in reached or goal not in first:
            continue
        node, last = first[goal]
        path = [last]
        link = parents[node]
        while link is not None:
            path.append(link[1])
            link = parents[link[0]]
        path.reverse()
        paths.append(tuple(path))
        reached.update(_goals(path))
    kept = [p for p in paths if not any(q[: len(p)] == p for q in paths if q != p)]
    covered = {name for path in kept for move in path for name in move.transitions}
    return Plan(machine, tuple(kept), frozenset(covered))


def _goals(path: list[Move]) -> set[str]:
    out: set[str] = set()
    phase = "accepted"
    for move in path:
        out.update(move.transitions)
        out.add(f"{move.op}@{phase}")
        phase = _phase_goal(move.target)
    return out


def _phase_goal(node: Node) -> str:
    """Terminal phases are one goal: every operation leaves them alone."""
    return "terminal" if node.phase in TERMINAL else node.phase
