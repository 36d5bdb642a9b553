"""Declared properties of a machine, and their check over the explored graph.

Theory of operation: ``spec/lifecycle.yaml`` has a top-level ``properties``
mapping, one entry per machine. ``load_properties`` reads it (every problem
reported at once, as the loader does). ``check_properties`` takes the graph the
model checker explored (every reachable configuration and every enabled step)
and decides each property exhaustively:

* deadlock: every reachable live configuration has an enabled input, unless
  its phase is declared ``resting`` (a phase that may wait for ever);
* progress: from every reachable live configuration a terminal phase is
  reachable;
* cycles: a cycle of steps between live configurations that visits two or
  more phases must stay among the ``recurrent`` phases (a runtime serves for
  ever); any other loop must be broken by a field that grows on it. Such a
  field is declared under ``bounds`` and checked to have a range and never
  to decrease, so the finite range is what ends the loop (``attempt_count``
  ends queued -> staged -> queued);
* actions: expressions over one step, reading ``before.<field>`` and
  ``after.<field>`` (``phase`` too), that every step must satisfy;
* enabled: in every reachable configuration where ``when`` holds, each listed
  input is enabled for some binding of its parameters (for every binding
  with ``every_binding: true``: a report of a fact the driver has already
  acted on must never be refused);
* effects: every effect a step emits evaluates, carries exactly its declared
  fields with values of their declared types, and satisfies the expression
  declared for it (its fields by name, and ``before.``/``after.``).

Every refutation comes with the shortest trace the breadth-first exploration
knows to the configuration (and, for a cycle, the cycle itself).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from codegen import expr as ex
from codegen.checker import Config, Edge, Result, Verdict, label_of
from codegen.domains import param_bindings
from codegen.errors import Problems, SpecError
from codegen.model import Machine, Named, Spec
from codegen.types import BOOL, INT, IdT, NoneT, Opt, Prim, Type, UnionT
from codegen.yamlsrc import Node, load

KEYS = ("resting", "recurrent", "bounds", "actions", "enabled", "effects")
STEP_PREFIXES = ("before", "after")


@dataclass(frozen=True, slots=True)
class Enabled:
    """``inputs`` stay enabled wherever ``when`` holds."""

    name: str
    when: ex.Expr
    inputs: tuple[str, ...]
    every_binding: bool = False


@dataclass(frozen=True, slots=True)
class Properties:
    resting: tuple[str, ...] = ()
    recurrent: tuple[str, ...] = ()
    bounds: tuple[str, ...] = ()
    actions: tuple[Named, ...] = ()
    enabled: tuple[Enabled, ...] = ()
    effects: tuple[tuple[str, ex.Expr], ...] = ()  # effect name -> expression


# --------------------------------------------------------------------------
# loading


def load_properties(
    path: Path, spec: Spec, display: str | None = None
) -> dict[str, Properties]:
    """The ``properties`` of every machine of ``spec`` (empty if undeclared)."""
    file = display or str(path)
    root = load(path, file)
    problems = Problems(file)
    top = root.value if isinstance(root.value, dict) else {}
    node = top.get("properties")
    out = {m.name: Properties() for m in spec.machines}
    machines = {m.name: m for m in spec.machines}
    if node is not None and not isinstance(node.value, dict):
        problems.add(node.line, "shape", "properties", "properties must be a mapping")
    elif node is not None:
        assert isinstance(node.value, dict)
        for name, body in node.value.items():
            m = machines.get(name)
            if m is None:
                problems.add(
                    body.line,
                    "unknown-machine",
                    name,
                    f"properties of unknown machine {name!r}",
                    machines,
                )
                continue
            out[name] = _MachineProperties(m, problems).load(body)
    if problems:
        raise SpecError(problems.items)
    return out


def step_expr(parsed: ex.Expr, prefixes: Iterable[str]) -> ex.Expr:
    """``before.phase`` -> the name ``before.phase``: one name per value read,
    so the expression language needs no new syntax for the two sides."""
    wanted = set(prefixes)

    class _Rename(ast.NodeTransformer):
        def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
            if isinstance(node.value, ast.Name) and node.value.id in wanted:
                return ast.copy_location(
                    ast.Name(f"{node.value.id}.{node.attr}", ast.Load()), node
                )
            return node

    tree = _Rename().visit(parsed.tree)
    return ex.Expr(parsed.text, tree, parsed.line)


def step_scope(m: Machine, extra: Mapping[str, ex.Binding] | None = None) -> ex.Scope:
    names: dict[str, ex.Binding] = {}
    for name, binding in m.scope.names.items():
        if binding.kind == "const":
            names[name] = binding
            continue
        for prefix in STEP_PREFIXES:
            names[f"{prefix}.{name}"] = binding
    names.update(extra or {})
    return ex.Scope(names, m.scope.types, {})


class _MachineProperties:
    def __init__(self, m: Machine, problems: Problems) -> None:
        self.m = m
        self.p = problems

    def load(self, node: Node) -> Properties:
        body = self._mapping(node, f"properties of {self.m.name}")
        for key, value in body.items():
            if key not in KEYS:
                self.p.add(
                    value.line,
                    "unknown-key",
                    key,
                    f"unknown key {key!r} in properties of {self.m.name}",
                    KEYS,
                )
        live = [s for s in self.m.states if s not in self.m.terminal]
        return Properties(
            resting=self._names(body.get("resting"), live, "live phase"),
            recurrent=self._names(body.get("recurrent"), live, "live phase"),
            bounds=self._bounds(body.get("bounds")),
            actions=self._actions(body.get("actions")),
            enabled=self._enabled(body.get("enabled")),
            effects=self._effects(body.get("effects")),
        )

    def _mapping(self, node: Node | None, what: str) -> dict[str, Node]:
        if node is None or node.value is None:
            return {}
        if not isinstance(node.value, dict):
            self.p.add(node.line, "shape", what, f"{what} must be a mapping")
            return {}
        return node.value

    def _names(
        self, node: Node | None, valid: Iterable[str], what: str
    ) -> tuple[str, ...]:
        if node is None or node.value is None:
            return ()
        items = node.value if isinstance(node.value, list) else [node]
        valid = tuple(valid)
        out = []
        for item in items:
            if item.value not in valid:
                self.p.add(
                    item.line,
                    "unknown-name",
                    str(item.value),
                    f"{self.m.name}: {item.value!r} is no {what}",
                    valid,
                )
                continue
            out.append(str(item.value))
        return tuple(out)

    def _bounds(self, node: Node | None) -> tuple[str, ...]:
        ranged = [f.name for f in self.m.fields if f.range is not None]
        return self._names(node, ranged, "field with a range")

    def _expr(
        self, value: Node, scope: ex.Scope, what: str, prefixes: Iterable[str]
    ) -> ex.Expr | None:
        parsed = ex.parse(value.value, value.line, self.p)
        if parsed is None:
            return None
        renamed = step_expr(parsed, prefixes)
        result = ex.check(renamed, scope, self.p)
        if result is not None and result != BOOL:
            self.p.add(
                value.line, "type", parsed.text, f"{what} must be a bool, got {result}"
            )
        return renamed

    def _actions(self, node: Node | None) -> tuple[Named, ...]:
        scope = step_scope(self.m)
        out = []
        for name, value in self._mapping(node, "actions").items():
            parsed = self._expr(value, scope, f"action property {name}", STEP_PREFIXES)
            if parsed is not None:
                out.append(Named(name, parsed))
        return tuple(out)

    def _enabled(self, node: Node | None) -> tuple[Enabled, ...]:
        out = []
        for name, value in self._mapping(node, "enabled").items():
            body = self._mapping(value, f"enabled property {name}")
            when = body.get("when")
            if when is None:
                self.p.add(
                    value.line, "missing", name, f"enabled property {name} needs `when`"
                )
                continue
            parsed = self._expr(when, self.m.scope, f"enabled property {name}", ())
            inputs = self._names(
                body.get("inputs"), [i.name for i in self.m.inputs], "input"
            )
            every = body.get("every_binding")
            if every is not None and not isinstance(every.value, bool):
                self.p.add(
                    every.line,
                    "type",
                    name,
                    f"enabled property {name}: every_binding must be true or false",
                )
            if parsed is not None:
                out.append(
                    Enabled(
                        name, parsed, inputs, every is not None and every.value is True
                    )
                )
        return tuple(out)

    def _effects(self, node: Node | None) -> tuple[tuple[str, ex.Expr], ...]:
        declared = {e.name: e for e in self.m.effects}
        out = []
        for name, value in self._mapping(node, "effects").items():
            effect = declared.get(name)
            if effect is None:
                self.p.add(
                    value.line,
                    "unknown-effect",
                    name,
                    f"{self.m.name}: unknown effect {name!r}",
                    declared,
                )
                continue
            own = {p.name: ex.Binding("param", p.type) for p in effect.params}
            parsed = self._expr(
                value, step_scope(self.m, own), f"effect property {name}", STEP_PREFIXES
            )
            if parsed is not None:
                out.append((name, parsed))
        return tuple(out)


# --------------------------------------------------------------------------
# checking


@dataclass(slots=True)
class _Graph:
    result: Result
    live: set[str]
    out: dict[Config, list[Edge]] = field(default_factory=dict)

    @classmethod
    def of(cls, result: Result) -> _Graph:
        m = result.machine
        graph = cls(result, {s for s in m.states if s not in m.terminal})
        graph.out = {config: [] for config in result.parents}
        for edge in result.graph:
            graph.out[edge.source].append(edge)
        return graph

    def is_live(self, config: Config) -> bool:
        return str(config[0]) in self.live

    def refute(
        self, name: str, kind: str, why: str, config: Config, *then: Edge
    ) -> Verdict:
        return Verdict(name, kind, why, self.trace(config, *then))

    def trace(self, config: Config, *then: Edge) -> tuple[str, ...]:
        lines = self.result.trace_to(config)
        start = len(lines)
        for offset, edge in enumerate(then):
            lines.append(
                f"{start + offset}. {edge.label} [{edge.transition.name}] -> {self.result.show(edge.target)}"
            )
        return tuple(lines)


def check_properties(result: Result, props: Properties) -> list[Verdict]:
    graph = _Graph.of(result)
    verdicts = [_deadlock(graph, props), _progress(graph), _cycles(graph, props)]
    verdicts += [_bound(graph, name) for name in props.bounds]
    verdicts += [_action(graph, a) for a in props.actions]
    verdicts += [_enabled(graph, e) for e in props.enabled]
    verdicts.append(_effects(graph, props))
    return verdicts


def _deadlock(graph: _Graph, props: Properties) -> Verdict:
    resting = ", ".join(props.resting) or "none"
    name = f"every live configuration has an enabled input (resting phases: {resting})"
    for config, edges in graph.out.items():
        if graph.is_live(config) and not edges and str(config[0]) not in props.resting:
            why = f"no input is enabled in live phase {config[0]}"
            return graph.refute(name, "deadlock", why, config)
    return Verdict(name, "deadlock")


def _progress(graph: _Graph) -> Verdict:
    name = "a terminal phase is reachable from every live configuration"
    back: dict[Config, list[Config]] = {c: [] for c in graph.out}
    for edges in graph.out.values():
        for edge in edges:
            back[edge.target].append(edge.source)
    done = {c for c in graph.out if not graph.is_live(c)}
    queue = deque(done)
    while queue:
        for source in back[queue.popleft()]:
            if source not in done:
                done.add(source)
                queue.append(source)
    if not graph.live or len(graph.live) == len(graph.result.machine.states):
        return Verdict(name + " (no terminal phases: nothing to prove)", "progress")
    for config in graph.out:
        if config not in done:
            why = f"no terminal phase is reachable from phase {config[0]}"
            return graph.refute(name, "progress", why, config)
    return Verdict(name, "progress")


def _cycles(graph: _Graph, props: Properties) -> Verdict:
    recurrent = set(props.recurrent)
    shown = ", ".join(props.recurrent) or "none"
    bounds = ", ".join(props.bounds) or "none"
    name = f"cycles among live phases stay in recurrent phases ({shown}) or are broken by a bound ({bounds})"
    for component in _components(graph):
        phases = {str(c[0]) for c in component}
        if len(phases) > 1 and not phases <= recurrent:
            entry = min(component, key=lambda c: len(graph.result.trace_to(c)))
            cycle = _cycle_from(graph, entry, component)
            loop = ", ".join(sorted(phases - recurrent))
            return Verdict(
                name,
                "cycles",
                f"live phases {loop} lie on a cycle no declared bound breaks",
                graph.trace(entry, *cycle),
            )
    return Verdict(name, "cycles")


def _components(graph: _Graph) -> list[set[Config]]:
    """Strongly connected components of the live part (iterative Tarjan)."""
    index: dict[Config, int] = {}
    low: dict[Config, int] = {}
    stack: list[Config] = []
    on_stack: set[Config] = set()
    found: list[set[Config]] = []
    for root in graph.out:
        if root in index or not graph.is_live(root):
            continue
        work = [(root, iter(graph.out[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for edge in edges:
                nxt = edge.target
                if not graph.is_live(nxt):
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.out[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


def _cycle_from(graph: _Graph, entry: Config, component: set[Config]) -> list[Edge]:
    """The shortest cycle from ``entry`` back to itself inside ``component``
    that leaves its phase (breadth-first over the component's edges)."""
    via: dict[Config, Edge] = {}
    queue = deque([entry])
    while queue:
        config = queue.popleft()
        for edge in graph.out[config]:
            if edge.target not in component:
                continue
            if edge.target == entry and config != entry:
                path = [edge]
                while config != entry:
                    path.append(via[config])
                    config = via[config].source
                return path[::-1]
            if edge.target not in via and edge.target != entry:
                via[edge.target] = edge
                queue.append(edge.target)
    return []


def _step_env(graph: _Graph, edge: Edge) -> dict[str, object]:
    env: dict[str, object] = dict(graph.result.machine.constants)
    for prefix, config in (("before", edge.source), ("after", edge.target)):
        env.update({f"{prefix}.{k}": v for k, v in graph.result.env(config).items()})
    return env


def _first_step(
    graph: _Graph, expr: ex.Expr, extra: Mapping[str, object] | None = None
) -> Edge | None:
    for edges in graph.out.values():
        for edge in edges:
            if not ex.evaluate(expr, {**_step_env(graph, edge), **(extra or {})}):
                return edge
    return None


def _bound(graph: _Graph, field_name: str) -> Verdict:
    name = f"bound {field_name} never decreases"
    text = f"after.{field_name} >= before.{field_name}"
    expr = step_expr(ex.Expr(text, ast.parse(text, mode="eval").body, 0), STEP_PREFIXES)
    edge = _first_step(graph, expr)
    if edge is None:
        return Verdict(name, "cycles")
    return Verdict(
        name,
        "cycles",
        f"{edge.transition.name} decreases {field_name}",
        graph.trace(edge.source, edge),
    )


def _action(graph: _Graph, action: Named) -> Verdict:
    edge = _first_step(graph, action.expr)
    if edge is None:
        return Verdict(action.name, "action")
    return Verdict(
        action.name,
        "action",
        f"step {edge.transition.name} breaks `{action.expr.text}`",
        graph.trace(edge.source, edge),
    )


def _enabled(graph: _Graph, prop: Enabled) -> Verdict:
    m = graph.result.machine
    wanted = {
        i.name: [label_of(i.name, p) for p in param_bindings(i.params, m)]
        for i in m.inputs
        if i.name in prop.inputs
    }
    for config, edges in graph.out.items():
        if not ex.evaluate(prop.when, graph.result.env(config)):
            continue
        offered = {e.label for e in edges}
        missing = []
        for name in prop.inputs:
            refused = [label for label in wanted[name] if label not in offered]
            if len(refused) == len(wanted[name]):
                missing.append(name)
            elif refused and prop.every_binding:
                missing.append(refused[0])
        if missing:
            return Verdict(
                prop.name,
                "enabled",
                f"{', '.join(missing)} not enabled where `{prop.when.text}` holds",
                graph.trace(config),
            )
    return Verdict(prop.name, "enabled")


def _effects(graph: _Graph, props: Properties) -> Verdict:
    m = graph.result.machine
    checks = dict(props.effects)
    shown = ", ".join(checks) or "none declared"
    name = f"every emitted effect evaluates and fits its declared fields (constraints: {shown})"
    declared = {e.name: {p.name: p.type for p in e.params} for e in m.effects}
    for edges in graph.out.values():
        for edge in edges:
            problem = _effect_problem(graph, edge, declared, checks)
            if problem is not None:
                return Verdict(name, "effects", problem, graph.trace(edge.source, edge))
    return Verdict(name, "effects")


def _effect_problem(
    graph: _Graph,
    edge: Edge,
    declared: Mapping[str, Mapping[str, Type]],
    checks: Mapping[str, ex.Expr],
) -> str | None:
    # `emits` reads the values after the transition, and its parameters.
    env = {**graph.result.env(edge.target), **edge.params}
    where = f"step {edge.transition.name}"
    for emitted in edge.transition.emits:
        try:
            value = ex.evaluate(emitted, env)
        except (KeyError, TypeError, AssertionError) as exc:
            return f"{where}: `{emitted.text}` does not evaluate: {exc!r}"
        if not isinstance(value, ex.UnionVal) or value.variant not in declared:
            return f"{where}: `{emitted.text}` is no declared effect"
        fields = dict(value.fields)
        wanted = declared[value.variant]
        if set(fields) != set(wanted):
            return f"{where}: {value.variant} carries {sorted(fields)}, declared {sorted(wanted)}"
        for key, got in fields.items():
            if not fits(got, wanted[key], graph.result.machine):
                return (
                    f"{where}: {value.variant}.{key} = {got!r} is not a {wanted[key]}"
                )
        check = checks.get(value.variant)
        if check is not None:
            check_env = {**_step_env(graph, edge), **fields}
            if not ex.evaluate(check, check_env):
                return f"{where}: emits {value} against `{check.text}`"
    return None


def fits(value: object, t: Type, m: Machine) -> bool:
    """Whether an interpreter value is a value of type ``t``."""
    if isinstance(t, Opt):
        return value is None or fits(value, t.inner, m)
    if isinstance(t, NoneT):
        return value is None
    if isinstance(t, UnionT):
        if not isinstance(value, ex.UnionVal) or value.type_name != t.name:
            return False
        variant = t.variant(value.variant)
        return variant is not None and all(
            fits(v, dict(variant.fields)[k], m)
            for k, v in value.fields
            if k in dict(variant.fields)
        )
    if isinstance(t, Prim):
        if t == BOOL:
            return isinstance(value, bool)
        if t == INT:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, str)
    if isinstance(t, IdT):
        return isinstance(value, str)
    members = getattr(t, "members", None)
    return members is None or value in members
