"""An explicit-state model checker for spec machines.

Theory of operation: a configuration is the phase plus the value of every
field. Starting from the initial configuration we explore breadth-first: for
each configuration, every input with every parameter binding from the finite
domains is tried; the one enabled transition (the validator proved there is
at most one) gives the next configuration. Breadth-first order means the first
violation found has a shortest trace, which is what an author wants to read.

Checked at every configuration: each invariant, and that int fields stay in
their declared range. Reported at the end: phases never reached and
transitions never fired (each is a failure: dead spec is a bug). Then the
storage declarations: a phase's ``stored_as`` must give, in every reachable
configuration, a phase that is stored as itself; a ``restore`` list must be
accepted somewhere and, wherever it is accepted in full, end in its state.

Given the machine's declared ``properties`` (``codegen.properties``), the
explored graph is kept (every enabled step, also those that lead to a
configuration seen before) and the temporal and step properties are checked
over it once exploration is over: deadlock, progress, bounded cycles, action
properties, the inputs that must stay enabled, and the effects each step
emits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from codegen import expr as ex
from codegen.domains import param_bindings
from codegen.model import Machine, Transition

if TYPE_CHECKING:
    from codegen.properties import Properties

Config = tuple[object, ...]  # (phase, *field values in declaration order)
MAX_CONFIGS = 2_000_000


@dataclass(frozen=True, slots=True)
class Step:
    """How a configuration was first reached: from ``parent`` by ``label``."""

    parent: Config | None
    label: str
    transition: str


@dataclass(frozen=True, slots=True)
class Edge:
    """One enabled step of the explored graph."""

    source: Config
    label: str
    transition: Transition
    params: Mapping[str, object]
    target: Config


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one declared property: proved, or refuted with a trace."""

    name: str
    kind: str  # deadlock | progress | cycles | action | enabled | effects
    failure: str | None = None
    trace: tuple[str, ...] = ()


@dataclass(slots=True)
class Result:
    machine: Machine
    configs: int = 0
    edges: int = 0
    phases_reached: set[str] = field(default_factory=set)
    fired: set[str] = field(default_factory=set)
    failure: str | None = None
    trace: list[str] = field(default_factory=list)
    parents: dict[Config, Step] = field(default_factory=dict)
    graph: list[Edge] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def refuted(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failure is not None]

    @property
    def unreached(self) -> list[str]:
        return [s for s in self.machine.states if s not in self.phases_reached]

    @property
    def never_fired(self) -> list[str]:
        return [t.name for t in self.machine.transitions if t.name not in self.fired]

    @property
    def ok(self) -> bool:
        return (
            self.failure is None
            and not self.unreached
            and not self.never_fired
            and not self.refuted
        )

    def env(self, config: Config) -> dict[str, object]:
        env: dict[str, object] = dict(self.machine.constants)
        env["phase"] = config[0]
        names = [f.name for f in self.machine.fields]
        env.update(zip(names, config[1:], strict=True))
        return env

    def trace_to(self, config: Config) -> list[str]:
        """The shortest path from the initial configuration, one line a step."""
        chain: list[tuple[Config, Step]] = []
        current: Config | None = config
        while current is not None:
            step = self.parents[current]
            chain.append((current, step))
            current = step.parent
        chain.reverse()
        lines = []
        for index, (cfg, step) in enumerate(chain):
            shown = self.show(cfg)
            if step.parent is None:
                lines.append(f"0. initial: {shown}")
            else:
                lines.append(f"{index}. {step.label} [{step.transition}] -> {shown}")
        return lines

    def show(self, config: Config) -> str:
        names = [f.name for f in self.machine.fields]
        parts = [f"phase={config[0]}"]
        parts += [f"{n}={_fmt(v)}" for n, v in zip(names, config[1:], strict=True)]
        return " ".join(parts)

    def report(self) -> str:
        m = self.machine
        lines = [
            f"{m.name}: {self.configs} states, {self.edges} transitions explored, "
            f"{len(self.phases_reached)}/{len(m.states)} phases reached, "
            f"{len(self.fired)}/{len(m.transitions)} transitions fired, "
            f"{len(m.invariants)} invariants checked"
        ]
        if self.failure is not None:
            lines.append(f"  FAILED: {self.failure}")
            lines.append(f"  shortest trace ({len(self.trace) - 1} steps):")
            lines.extend(f"    {line}" for line in self.trace)
        if self.unreached:
            lines.append(f"  FAILED: phases never reached: {', '.join(self.unreached)}")
        if self.never_fired:
            lines.append(
                f"  FAILED: transitions never fired: {', '.join(self.never_fired)}"
            )
        for verdict in self.verdicts:
            if verdict.failure is None:
                lines.append(f"  proved {verdict.kind}: {verdict.name}")
                continue
            lines.append(f"  FAILED {verdict.kind} {verdict.name}: {verdict.failure}")
            lines.append(f"  counterexample ({len(verdict.trace) - 1} steps):")
            lines.extend(f"    {line}" for line in verdict.trace)
        return "\n".join(lines)


class _Explorer:
    def __init__(self, m: Machine, keep_graph: bool) -> None:
        self.m = m
        self.field_names = [f.name for f in m.fields]
        self.bindings = {i.name: list(param_bindings(i.params, m)) for i in m.inputs}
        self.result = Result(m)
        self.parents = self.result.parents
        self.keep_graph = keep_graph

    def env(self, config: Config) -> dict[str, object]:
        return self.result.env(config)

    def run(self) -> Result:
        initial: Config = (self.m.initial, *(f.initial for f in self.m.fields))
        self.parents[initial] = Step(None, "initial", "")
        if self._violation(initial):
            return self.result
        queue = deque([initial])
        while queue:
            config = queue.popleft()
            self.result.phases_reached.add(str(config[0]))
            queue.extend(self._successors(config))
            if self.result.failure is not None:
                return self.result
            if len(self.parents) > MAX_CONFIGS:
                self._fail(
                    config, f"more than {MAX_CONFIGS} states: give fields a range"
                )
                return self.result
        self.result.configs = len(self.parents)
        self._check_storage()
        return self.result

    def _check_storage(self) -> None:
        stored_as = dict(self.m.stored_as)
        for config in self.parents:
            phase = str(config[0])
            if phase not in stored_as:
                continue
            stored = str(ex.evaluate(stored_as[phase], self.env(config)))
            if stored != phase and stored in stored_as:
                self._fail(
                    config,
                    f"{phase} is stored as {stored}, which is not stored as itself",
                )
                return
        for state, inputs in self.m.restore:
            ends = {self._run_inputs(config, inputs) for config in self.parents}
            ends.discard(None)
            if ends != {state}:
                found = ", ".join(sorted(str(e) for e in ends)) or "nowhere"
                self._fail(
                    next(iter(self.parents)),
                    f"restore of {state} by {', '.join(inputs)} ends in {found}",
                )
                return

    def _run_inputs(self, config: Config, inputs: tuple[str, ...]) -> str | None:
        """The phase after ``inputs`` (no parameters) from ``config``, or None
        when one of them is refused on the way."""
        for name in inputs:
            env = self.env(config)
            enabled = [
                t
                for t in self.m.transitions_for(str(config[0]), name)
                if self._enabled(t, env)
            ]
            if len(enabled) != 1:
                return None
            config = self._fire(enabled[0], config, env)
        return str(config[0])

    def _successors(self, config: Config) -> list[Config]:
        """New configurations reachable in one step (already recorded)."""
        out: list[Config] = []
        base = self.env(config)
        for inp in self.m.inputs:
            candidates = self.m.transitions_for(str(config[0]), inp.name)
            for params in self.bindings[inp.name] if candidates else ():
                env = {**base, **params}
                enabled = [t for t in candidates if self._enabled(t, env)]
                if not enabled:
                    continue
                self.result.edges += 1
                label = label_of(inp.name, params)
                if len(enabled) > 1:
                    names = ", ".join(t.name for t in enabled)
                    self._fail(config, f"{label} enables {names} at once")
                    return out
                nxt = self._fire(enabled[0], config, env)
                self.result.fired.add(enabled[0].name)
                if self.keep_graph:
                    edge = Edge(config, label, enabled[0], params, nxt)
                    self.result.graph.append(edge)
                if nxt in self.parents:
                    continue
                self.parents[nxt] = Step(config, label, enabled[0].name)
                if self._violation(nxt):
                    return out
                out.append(nxt)
        self.result.configs = len(self.parents)
        return out

    def _enabled(self, t: Transition, env: Mapping[str, object]) -> bool:
        return enabled(self.m, t, env)

    def _fire(self, t: Transition, config: Config, env: Mapping[str, object]) -> Config:
        return fire(self.m, t, config, env)

    def _violation(self, config: Config) -> bool:
        env = self.env(config)
        for f in self.m.fields:
            value = env[f.name]
            if (
                f.range is not None
                and isinstance(value, int)
                and not (f.range[0] <= value <= f.range[1])
            ):
                self._fail(
                    config,
                    f"field {f.name} = {value} is outside its range {list(f.range)}",
                )
                return True
        for inv in self.m.invariants:
            if not ex.evaluate(inv.expr, env):
                self._fail(
                    config, f"invariant {inv.name} violated: `{ex.describe(inv.expr)}`"
                )
                return True
        return False

    def _fail(self, config: Config, message: str) -> None:
        self.result.failure = message
        self.result.trace = self.result.trace_to(config)
        self.result.configs = len(self.parents)


def _fmt(value: object) -> str:
    return "None" if value is None else str(value)


def label_of(name: str, params: Mapping[str, object]) -> str:
    return f"{name}({', '.join(f'{k}={_fmt(v)}' for k, v in params.items())})"


def check_machine(m: Machine, properties: Properties | None = None) -> Result:
    """Explore every reachable configuration of ``m``; with ``properties``,
    also check them over the explored graph."""
    result = _Explorer(m, keep_graph=properties is not None).run()
    if properties is not None and result.failure is None:
        from codegen.properties import check_properties

        result.verdicts = check_properties(result, properties)
    return result


def step(
    m: Machine, config: Config, inp: str, params: Mapping[str, object]
) -> tuple[Transition, Config] | None:
    """The transition ``inp`` fires from ``config`` and the configuration it
    leads to, or None when the machine refuses it (the composed model steps
    the machines with this)."""
    env: dict[str, object] = {**dict(m.constants), "phase": config[0], **params}
    env.update(zip((f.name for f in m.fields), config[1:], strict=True))
    for t in m.transitions_for(str(config[0]), inp):
        if enabled(m, t, env):
            return t, fire(m, t, config, env)
    return None


def enabled(m: Machine, t: Transition, env: Mapping[str, object]) -> bool:
    return all(ex.evaluate(m.guard(g).expr, env) for g in t.guards)


def fire(
    m: Machine, t: Transition, config: Config, env: Mapping[str, object]
) -> Config:
    # All updates read the values from before the transition.
    updates = {name: ex.evaluate(value, env) for name, value in t.sets}
    names = (f.name for f in m.fields)
    fields = tuple(updates.get(n, v) for n, v in zip(names, config[1:], strict=True))
    return (t.target_from(str(config[0])), *fields)
