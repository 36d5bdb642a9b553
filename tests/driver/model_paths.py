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
MAX_ATTEMPTS = 3  # the lifecycle's max_stage_attempts
NEWER = "newer"

LifecycleStep = tuple[str, Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class Node:
    """The abstract input's configuration, the runtime's, and whether a run
    was started and has not ended."""

    config: Config
    runtime: Config
    run_open: bool = False

    @property
    def phase(self) -> str:
        return str(self.config[0])

    @property
    def runtime_phase(self) -> str:
        return str(self.runtime[0])


@dataclass(frozen=True, slots=True)
class Move:
    """One driver operation and the transitions it fired (runtime-control
    ones prefixed ``rc:``)."""

    op: str
    transitions: tuple[str, ...]
    target: Node


@dataclass(frozen=True, slots=True)
class Machines:
    lifecycle: Machine
    control: Machine


TERMINAL = ("consumed", "superseded", "coalesced", "abandoned")
ADMITTING = ("idle", "attached", "running")  # the phases that accept input
CLOSED = ("stopped", "destroyed")
Planned = tuple[list[LifecycleStep], list[LifecycleStep], bool]


def _steps(node: Node, op: str) -> Planned | None:
    """The lifecycle and runtime-control inputs ``op`` fires from ``node``
    and whether a run is open after it, or None when the driver would refuse
    the operation there (the runtime-control spec refusing its inputs also
    refuses the operation)."""
    phase, run_open, runtime = node.phase, node.run_open, node.runtime_phase
    fresh = phase == "accepted"
    if fresh != op.startswith("accept") or runtime in CLOSED:
        return None
    admits = op.startswith("accept") or op in ("supersede", "coalesce")
    if admits and runtime not in ADMITTING:
        return None
    match op:
        case "accept_consumed":  # consumed at once: no lane, no signal
            return [("ConsumeOnAccept", {})], [], run_open
        case "accept_queued" | "accept_steer":
            lane = "steer" if op == "accept_steer" else "queue"
            return [("QueueAccepted", {})], [_admission(node, lane)], run_open
        case "stage" if phase == "queued" and not run_open:
            run = ("BeginRun", {"run_id": RUN})
            return [("StageForRun", {"run_id": RUN})], [run], True
        case "boundary" if phase == "staged" and run_open:
            pending = ("MarkAppliedPendingConsumption", {"boundary_sequence": 0})
            return [("MarkApplied", {"run_id": RUN}), pending], [], True
        case "run_completed" | "run_failed" | "run_cancelled" if run_open:
            ends: list[LifecycleStep] = []
            if phase == "staged":  # still staged at the run's end: put back
                ends = [("RollbackStaged", {})]
            elif phase == "applied_pending_consumption" and op == "run_completed":
                ends = [("Consume", {})]
            end: list[LifecycleStep] = [(_CONTROL_INPUTS[op], {"run_id": RUN})]
            # a failed or cancelled run leaves its input waiting
            # (unless that was its last attempt).
            attempts = node.config[-1]  # attempt_count (load_machines checks)
            requeued = ends and isinstance(attempts, int) and attempts < MAX_ATTEMPTS
            if requeued and op != "run_completed" and phase == "staged":
                end.insert(0, ("WorkWaiting", {}))
            return ends, end, False
        case "restart" if not run_open and runtime in ("idle", "retired"):
            # A new driver recovers from the store: an input pending
            # consumption whose receipt is committed is consumed (D-11).
            if phase == "applied_pending_consumption":
                return [("Consume", {})], [], False
            return [], [], False
        case "supersede" | "coalesce" if phase == "queued":
            name = "Supersede" if op == "supersede" else "Coalesce"
            param = "superseded_by" if op == "supersede" else "aggregate_id"
            return [(name, {param: NEWER})], [_admission(node)], run_open
        case "abandon_pending" if not run_open:
            return _abandon(node, op), [], False
        case "reset" | "stop" | "destroy":
            return _abandon(node, op), _plain(_CONTROL_INPUTS[op]), False
        case "retire" | "attach" | "detach":
            return [], _plain(_CONTROL_INPUTS[op]), run_open
        case "recycle" if not run_open:
            waiting = ("WorkWaiting",) if phase == "queued" else ()
            return [], _plain("RecycleRequested", *waiting, "RecycleSucceeded"), False
    return None


_CONTROL_INPUTS = {
    "run_completed": "RunCompleted",
    "run_failed": "RunFailed",
    "run_cancelled": "RunCancelled",
    "reset": "ResetRequested",
    "stop": "StopRequested",
    "destroy": "DestroyRequested",
    "retire": "RetireRequested",
    "attach": "AttachExecutor",
    "detach": "DetachExecutor",
}


def _plain(*names: str) -> list[LifecycleStep]:
    """Inputs without parameters."""
    return [(name, {}) for name in names]


def _admission(node: Node, lane: str = "queue") -> LifecycleStep:
    """A prompt queued: it asks to wake an idle (or attached) runtime, not a
    running one (the policy table's wake modes for prompts)."""
    wake = node.runtime_phase in ("idle", "attached")
    return ("AdmissionAccepted", {"handling_mode": lane, "wake_if_idle": wake})


def _abandon(node: Node, reason: str) -> list[LifecycleStep]:
    if node.phase in TERMINAL:
        return []
    return [("Abandon", {"reason": reason})]


OPERATIONS = (
    "accept_queued",
    "accept_steer",
    "accept_consumed",
    "stage",
    "boundary",
    "run_completed",
    "run_failed",
    "run_cancelled",
    "restart",
    "supersede",
    "coalesce",
    "reset",
    "abandon_pending",
    "destroy",
    "stop",
    "retire",
    "attach",
    "detach",
    "recycle",
)


def moves(machines: Machines, node: Node) -> list[Move]:
    """Every driver operation enabled at ``node``, stepped through the spec."""
    out = []
    for op in OPERATIONS:
        planned = _steps(node, op)
        if planned is None:
            continue
        lifecycle, control, run_open = planned
        runtime, fired_control = _run(machines.control, node.runtime, control)
        if runtime is None:
            continue  # the runtime refuses the operation in this phase
        config, fired = _run(machines.lifecycle, node.config, lifecycle)
        assert config is not None, f"{op} at {node}: the spec refuses {lifecycle}"
        fired += [f"rc:{name}" for name in fired_control]
        out.append(Move(op, tuple(fired), Node(config, runtime, run_open)))
    return out


def _run(
    machine: Machine, config: Config, inputs: list[LifecycleStep]
) -> tuple[Config | None, list[str]]:
    fired: list[str] = []
    for name, params in inputs:
        stepped = step(machine, config, name, params)
        if stepped is None:
            return None, fired
        transition, config = stepped
        fired.append(transition.name)
    return config, fired


@dataclass(frozen=True, slots=True)
class Plan:
    machines: Machines
    paths: tuple[tuple[Move, ...], ...]
    covered: frozenset[str]

    @property
    def transitions(self) -> list[str]:
        """Every transition of both machines, runtime control's prefixed."""
        lifecycle = [t.name for t in self.machines.lifecycle.transitions]
        return lifecycle + [f"rc:{t.name}" for t in self.machines.control.transitions]

    @property
    def uncovered(self) -> set[str]:
        return set(self.transitions) - self.covered


def load_machines() -> Machines:
    spec = load_spec(SPEC, "lifecycle.yaml")
    named = {m.name: m for m in spec.machines}
    lifecycle = named["input_lifecycle"]
    assert lifecycle.fields[-1].name == "attempt_count", "_steps reads it last"
    return Machines(lifecycle, named["runtime_control"])


def plan(machines: Machines) -> Plan:
    """Shortest operation paths that together fire every transition a driver
    operation can fire."""
    control = machines.control
    started = (control.initial, *(f.initial for f in control.fields))
    runtime, _ = _run(control, started, [("Initialize", {})])  # drivers start idle
    assert runtime is not None
    lifecycle = machines.lifecycle
    initial = Node((lifecycle.initial, *(f.initial for f in lifecycle.fields)), runtime)
    parents: dict[Node, tuple[Node, Move] | None] = {initial: None}
    first: dict[str, tuple[Node, Move]] = {}  # goal -> where first reached
    queue = deque([initial])
    while queue:
        node = queue.popleft()
        for move in moves(machines, node):
            for goal in (*move.transitions, f"{move.op}@{_phase_goal(node)}"):
                first.setdefault(goal, (node, move))
            if move.target not in parents:
                parents[move.target] = (node, move)
                queue.append(move.target)
    goals = Plan(machines, (), frozenset()).transitions
    goals += [g for g in first if "@" in g]  # spec order first: a stable plan
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
    return Plan(machines, tuple(kept), frozenset(covered))


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
