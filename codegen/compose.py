"""The composed model: one runtime x N inputs x the lanes, explored exhaustively.

Theory of operation: ``spec/composed.yaml`` names the runtime machine, the
input machine and its instances, the lanes, and the driver operations
(``actions``) that synchronise them: each action binds its variables, needs
its ``when``, and applies its steps to the machines (stepped by
``codegen.checker.step``, the interpreter the checker uses) and to the lanes.
An action happens whole or not at all: one refused step disables it, as the
drivers check before they change anything (decision 6).

A composed state is (runtime configuration, per input: its configuration or
None before admission and the lane it was admitted to, the lanes as tuples of
input indexes). Exploration is breadth-first, so the first violation of an
invariant, and the first reach of each goal, come with a shortest trace.
Expressions are the spec's expression language; ``runtime.phase``,
``a.last_run_id`` and the like are single names (see ``step_expr``).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from codegen import expr as ex
from codegen.checker import Config, step
from codegen.errors import Problems, SpecError
from codegen.model import Machine, Spec
from codegen.properties import step_expr
from codegen.yamlsrc import Node, load

COMPOSED = Path("spec/composed.yaml")
MAX_STATES = 400_000
LANE_STEPS = ("push", "remove")
REQUEUE = ("front", "back")

Slot = tuple[Config | None, str | None]  # an input's configuration and lane
State = tuple[Config, tuple[Slot, ...], tuple[tuple[int, ...], ...]]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of an action (exactly one of the kinds is set)."""

    target: str  # "runtime" | "input" | "each" | "lane" | "lanes"
    call: ex.Expr | None = None  # the machine input, ``Name(arg=...)``
    where: ex.Expr | None = None  # for "each": over the input's own fields
    op: str = ""  # lane op, "admit", or the requeue end of "each"


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    binds: tuple[str, ...]  # of "input", "lane", "run"
    when: ex.Expr | None
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Composed:
    runtime: Machine
    input: Machine
    names: tuple[str, ...]  # the input instances
    lanes: tuple[str, ...]
    runs: tuple[str, ...]
    actions: tuple[Action, ...]
    invariants: tuple[tuple[str, ex.Expr], ...]
    goals: tuple[tuple[str, ex.Expr], ...]


# --------------------------------------------------------------------------
# loading


def load_composed(path: Path, spec: Spec, display: str | None = None) -> Composed:
    file = display or str(path)
    problems = Problems(file)
    top = _mapping(load(path, file))
    machines = {m.name: m for m in spec.machines}

    def machine(node: Node | None, what: str) -> Machine:
        name = str(node.value) if node is not None else ""
        if name not in machines:
            line = node.line if node is not None else 1
            problems.add(
                line, "unknown-machine", name, f"{what}: unknown machine", machines
            )
            return spec.machines[0]
        return machines[name]

    inputs = _mapping(top.get("inputs"))
    names = tuple(str(n.value) for n in _list(inputs.get("names")))
    reader = _Reader(problems, names)
    composed = Composed(
        runtime=machine(top.get("runtime"), "runtime"),
        input=machine(inputs.get("machine"), "inputs.machine"),
        names=names,
        lanes=tuple(str(n.value) for n in _list(top.get("lanes"))),
        runs=tuple(str(n.value) for n in _list(top.get("runs"))),
        actions=tuple(
            reader.action(k, v) for k, v in _mapping(top.get("actions")).items()
        ),
        invariants=tuple(
            (k, reader.expr(v)) for k, v in _mapping(top.get("invariants")).items()
        ),
        goals=tuple((k, reader.expr(v)) for k, v in _mapping(top.get("goals")).items()),
    )
    if not problems:
        _check_names(composed, problems)
    if problems:
        raise SpecError(problems.items)
    return composed


def _mapping(node: Node | None) -> dict[str, Node]:
    return node.value if node is not None and isinstance(node.value, dict) else {}


def _list(node: Node | None) -> list[Node]:
    if node is None:
        return []
    return node.value if isinstance(node.value, list) else [node]


class _Reader:
    def __init__(self, problems: Problems, names: tuple[str, ...]) -> None:
        self.p = problems
        self.prefixes = ("runtime", "input", *names)

    def expr(self, node: Node) -> ex.Expr:
        parsed = ex.parse(node.value, node.line, self.p)
        if parsed is None:
            return ex.Expr("False", ast.Constant(False), node.line)
        return step_expr(parsed, self.prefixes)

    def action(self, name: str, node: Node) -> Action:
        body = _mapping(node)
        binds = tuple(str(b.value) for b in _list(body.get("for")))
        for b in binds:
            if b not in ("input", "lane", "run"):
                self.p.add(
                    node.line,
                    "unknown-name",
                    b,
                    f"action {name}: cannot bind {b!r}",
                    ("input", "lane", "run"),
                )
        when = self.expr(body["when"]) if "when" in body else None
        return Action(
            name, binds, when, tuple(self.step(name, s) for s in _list(body.get("do")))
        )

    def step(self, action: str, node: Node) -> Step:
        body = _mapping(node)
        if "each" in body:
            requeue = str(body["requeue"].value) if "requeue" in body else ""
            if requeue and requeue not in REQUEUE:
                self.p.add(
                    node.line, "shape", requeue, f"action {action}: requeue", REQUEUE
                )
            return Step(
                "each",
                self._call(body.get("apply"), node),
                self.expr(body["each"]),
                requeue,
            )
        if len(body) != 1:
            self.p.add(
                node.line, "shape", action, f"action {action}: a step has one key"
            )
            return Step("lanes", op="clear")
        target, value = next(iter(body.items()))
        if target in ("lane", "lanes"):
            valid = LANE_STEPS if target == "lane" else ("clear",)
            if value.value not in valid:
                self.p.add(
                    value.line,
                    "shape",
                    str(value.value),
                    f"action {action}: {target} step",
                    valid,
                )
            return Step(target, op=str(value.value))
        if target == "input" and value.value == "admit":
            return Step("input", op="admit")
        if target not in ("runtime", "input"):
            self.p.add(
                node.line,
                "unknown-name",
                target,
                f"action {action}: unknown step",
                ("runtime", "input", "each", "lane", "lanes"),
            )
        return Step(target, self._call(value, node))

    def _call(self, node: Node | None, parent: Node) -> ex.Expr:
        parsed = self.expr(node if node is not None else Node("", parent.line))
        if not (
            isinstance(parsed.tree, ast.Call) and isinstance(parsed.tree.func, ast.Name)
        ):
            self.p.add(
                parsed.line, "shape", parsed.text, "a step applies `Input(arg=...)`"
            )
        return parsed


def _check_names(c: Composed, problems: Problems) -> None:
    """Every name an expression reads exists; every input applied is declared
    with exactly the arguments given."""
    start = _start(c)
    known = set(_env(c, start)) | set(_input_env(c, start, 0, "input"))
    known |= {"action", "lane", "run"}
    own = {
        "phase",
        *(f.name for f in c.input.fields),
        *(k for k, _ in c.input.constants),
    }
    exprs = [e for _, e in (*c.invariants, *c.goals)]
    for action in c.actions:
        exprs += [action.when] if action.when is not None else []
        for s in action.steps:
            if s.call is not None:
                m = c.runtime if s.target == "runtime" else c.input
                _check_call(m, s.call, problems)
                exprs.append(s.call)
            if s.where is not None:
                for name in ex.names_used(s.where) - own - known:
                    problems.add(
                        s.where.line,
                        "unknown-name",
                        name,
                        f"unknown name {name!r} in `{s.where.text}`",
                    )
    for e in exprs:
        for name in ex.names_used(e) - known:
            problems.add(
                e.line,
                "unknown-name",
                name,
                f"unknown name {name!r} in `{e.text}`",
                sorted(known),
            )


def _check_call(m: Machine, call: ex.Expr, problems: Problems) -> None:
    tree = call.tree
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        return
    declared = {i.name: {p.name for p in i.params} for i in m.inputs}
    name = tree.func.id
    if name not in declared:
        problems.add(
            call.line,
            "unknown-input",
            name,
            f"{m.name} has no input {name!r}",
            declared,
        )
        return
    given = {str(k.arg) for k in tree.keywords}
    if given != declared[name]:
        problems.add(
            call.line,
            "shape",
            call.text,
            f"{name} takes {sorted(declared[name])}, given {sorted(given)}",
        )


# --------------------------------------------------------------------------
# exploring


def _start(c: Composed) -> State:
    no_inputs = tuple((None, None) for _ in c.names)
    return (_initial(c.runtime), no_inputs, tuple(() for _ in c.lanes))


def _initial(m: Machine) -> Config:
    return (m.initial, *(f.initial for f in m.fields))


def _env(c: Composed, state: State) -> dict[str, object]:
    runtime, slots, lanes = state
    env: dict[str, object] = {**dict(c.runtime.constants), **dict(c.input.constants)}
    env["runtime.phase"] = runtime[0]
    env.update(
        {
            f"runtime.{f.name}": v
            for f, v in zip(c.runtime.fields, runtime[1:], strict=True)
        }
    )
    phases = [slot[0][0] if slot[0] is not None else None for slot in slots]
    for index, name in enumerate(c.names):
        env.update(_input_env(c, state, index, name))
    for lane, members in zip(c.lanes, lanes, strict=True):
        env[f"{lane}_length"] = len(members)
    for phase in ("staged", "applied"):
        env[f"{phase}_count"] = phases.count(phase)
    env["pending_count"] = phases.count("applied_pending_consumption")
    return env


def _input_env(c: Composed, state: State, index: int, prefix: str) -> dict[str, object]:
    config, _ = state[1][index]
    env: dict[str, object] = {f"{prefix}.phase": None if config is None else config[0]}
    for pos, f in enumerate(c.input.fields, 1):
        env[f"{prefix}.{f.name}"] = None if config is None else config[pos]
    env[f"{prefix}.lane"] = env[f"{prefix}.position"] = None
    for lane, members in zip(c.lanes, state[2], strict=True):
        if index in members:
            env[f"{prefix}.lane"], env[f"{prefix}.position"] = (
                lane,
                members.index(index),
            )
    return env


def _call(call: ex.Expr, env: Mapping[str, object]) -> tuple[str, dict[str, object]]:
    value = ex.evaluate(call, env)
    assert isinstance(value, ex.UnionVal)
    return value.variant, dict(value.fields)


@dataclass(slots=True)
class _Run:
    """One attempt at an action: the state being built, or None once refused."""

    c: Composed
    state: State
    bound: dict[str, object]
    index: int | None  # the bound input
    lane: str | None
    base: dict[str, object]  # _env of the state the action starts from
    start: State
    _env_of: State | None = None
    _env: dict[str, object] = field(default_factory=dict)

    def env(self) -> dict[str, object]:
        if self._env_of is not self.state:  # computed once per state reached
            fresh = self._env_of is None and self.state is self.start
            base = self.base if fresh else _env(self.c, self.state)
            self._env = {**base, **self.bound}
            if self.index is not None:
                self._env.update(_input_env(self.c, self.state, self.index, "input"))
            self._env_of = self.state
        return self._env

    def apply(self, s: Step) -> bool:
        runtime, slots, lanes = self.state
        if s.target == "runtime":
            assert s.call is not None
            moved = step(self.c.runtime, runtime, *_call(s.call, self.env()))
            if moved is None:
                return False
            self.state = (moved[1], slots, lanes)
            return True
        if s.target == "input":
            return self._input(s)
        if s.target == "each":
            return self._each(s)
        if s.target == "lanes":
            self.state = (runtime, slots, tuple(() for _ in lanes))
            return True
        return self._lane(s.op)

    def _input(self, s: Step) -> bool:
        assert self.index is not None
        runtime, slots, lanes = self.state
        config, lane = slots[self.index]
        if s.op == "admit":
            slot: Slot = (_initial(self.c.input), self.lane)
        else:
            assert s.call is not None
            if config is None:
                return False
            moved = step(self.c.input, config, *_call(s.call, self.env()))
            if moved is None:
                return False
            slot = (moved[1], lane)
        self.state = (runtime, _replace(slots, self.index, slot), lanes)
        return True

    def _each(self, s: Step) -> bool:
        assert s.call is not None
        assert s.where is not None
        requeued = []
        for index in range(len(self.c.names)):
            config, lane = self.state[1][index]
            if config is None:
                continue
            own = {
                "phase": config[0],
                **dict(
                    zip((f.name for f in self.c.input.fields), config[1:], strict=True)
                ),
            }
            if not ex.evaluate(s.where, {**self.env(), **own}):
                continue
            moved = step(self.c.input, config, *_call(s.call, self.env()))
            if moved is None:
                return False
            runtime, slots, lanes = self.state
            self.state = (runtime, _replace(slots, index, (moved[1], lane)), lanes)
            if s.op and moved[1][0] == "queued":
                requeued.append(index)
        if requeued:
            self._requeue(requeued, s.op)
        return True

    def _requeue(self, indexes: list[int], end: str) -> None:
        runtime, slots, lanes = self.state
        out = []
        for lane, members in zip(self.c.lanes, lanes, strict=True):
            block = tuple(i for i in indexes if slots[i][1] == lane)
            out.append(block + members if end == "front" else members + block)
        self.state = (runtime, slots, tuple(out))

    def _lane(self, op: str) -> bool:
        assert self.index is not None
        runtime, slots, lanes = self.state
        out = []
        for lane, members in zip(self.c.lanes, lanes, strict=True):
            if op == "remove":
                members = tuple(i for i in members if i != self.index)
            elif lane == self.lane or (
                self.lane is None and lane == slots[self.index][1]
            ):
                members = (*members, self.index)
            out.append(members)
        self.state = (runtime, slots, tuple(out))
        return True


def _replace(slots: tuple[Slot, ...], index: int, slot: Slot) -> tuple[Slot, ...]:
    return (*slots[:index], slot, *slots[index + 1 :])


def _bindings(
    c: Composed, action: Action
) -> Iterator[tuple[dict[str, object], int | None, str | None]]:
    pools: list[list[tuple[str, object]]] = []
    for b in action.binds:
        pool: tuple[object, ...] = {
            "input": tuple(range(len(c.names))),
            "lane": c.lanes,
            "run": c.runs,
        }[b]
        pools.append([(b, v) for v in pool])
    combos: list[list[tuple[str, object]]] = [[]]
    for choices in pools:
        combos = [[*combo, item] for combo in combos for item in choices]
    for combo in combos:
        bound = dict(combo)
        index = bound.pop("input", None)
        lane = bound.get("lane")
        assert index is None or isinstance(index, int)
        yield bound, index, (str(lane) if lane is not None else None)


@dataclass(slots=True)
class Report:
    composed: Composed
    states: int = 0
    edges: int = 0
    failure: str | None = None
    trace: list[str] = field(default_factory=list)
    witnesses: dict[str, list[str]] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return [name for name, _ in self.composed.goals if name not in self.witnesses]

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.missing

    def report(self) -> str:
        c = self.composed
        lines = [
            f"composed ({c.runtime.name} x {len(c.names)} {c.input.name} x lanes "
            f"{', '.join(c.lanes)}): {self.states} states, {self.edges} steps explored, "
            f"{len(c.invariants)} invariants checked, "
            f"{len(self.witnesses)}/{len(c.goals)} scenario witnesses found"
        ]
        if self.failure is not None:
            lines.append(f"  FAILED: {self.failure}")
            lines.extend(f"    {line}" for line in self.trace)
        for name, _ in c.invariants:
            if self.failure is None:
                lines.append(f"  proved invariant: {name}")
        for name, _ in c.goals:
            if name not in self.witnesses:
                continue
            path = self.witnesses[name]
            lines.append(f"  witness {name} ({len(path)} steps): {', '.join(path)}")
        if self.missing:
            lines.append(f"  FAILED: no witness for {', '.join(self.missing)}")
        return "\n".join(lines)


def explore(c: Composed) -> Report:
    report = Report(c)
    start = _start(c)
    parents: dict[State, tuple[State | None, str]] = {start: (None, "")}
    queue = deque([start])
    while queue and report.failure is None:
        state = queue.popleft()
        for label, name, nxt in _successors(c, state):
            report.edges += 1
            _goals(c, report, parents, state, label, name, nxt)
            if nxt in parents:
                continue
            parents[nxt] = (state, label)
            broken = _violated(c, nxt)
            if broken is not None or len(parents) > MAX_STATES:
                report.failure = broken or f"more than {MAX_STATES} states"
                report.trace = _path(parents, nxt)
                break
            queue.append(nxt)
    report.states = len(parents)
    return report


def _successors(c: Composed, state: State) -> Iterator[tuple[str, str, State]]:
    base = _env(c, state)
    for action in c.actions:
        for bound, index, lane in _bindings(c, action):
            run = _Run(c, state, bound, index, lane, base, state)
            if action.when is not None and not ex.evaluate(action.when, run.env()):
                continue
            if all(run.apply(s) for s in action.steps):
                shown = [c.names[index]] if index is not None else []
                shown += [str(v) for k, v in bound.items()]
                yield f"{action.name}({', '.join(shown)})", action.name, run.state


def _violated(c: Composed, state: State) -> str | None:
    for index, name in enumerate(c.names):
        env = {**_env(c, state), **_input_env(c, state, index, "input")}
        for inv, e in c.invariants:
            if not ex.evaluate(e, env):
                return f"invariant {inv} violated for input {name}: `{e.text}`"
    return None


def _goals(
    c: Composed,
    report: Report,
    parents: Mapping[State, tuple[State | None, str]],
    state: State,
    label: str,
    action: str,
    nxt: State,
) -> None:
    for name, e in c.goals:
        if name not in report.witnesses and ex.evaluate(
            e, {**_env(c, nxt), "action": action}
        ):
            report.witnesses[name] = [*_labels(parents, state), label]


def _labels(
    parents: Mapping[State, tuple[State | None, str]], state: State
) -> list[str]:
    out = []
    current: State | None = state
    while current is not None:
        parent, label = parents[current]
        if parent is not None:
            out.append(label)
        current = parent
    return out[::-1]


def _path(parents: Mapping[State, tuple[State | None, str]], state: State) -> list[str]:
    return [f"{n}. {label}" for n, label in enumerate(_labels(parents, state), 1)]
