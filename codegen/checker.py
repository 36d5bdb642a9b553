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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from codegen import expr as ex
from codegen.domains import param_bindings
from codegen.model import Machine, Transition

Config = tuple[object, ...]  # (phase, *field values in declaration order)
MAX_CONFIGS = 2_000_000


@dataclass(frozen=True, slots=True)
class Step:
    """How a configuration was first reached: from ``parent`` by ``label``."""

    parent: Config | None
    label: str
    transition: str


@dataclass(slots=True)
class Result:
    machine: Machine
    configs: int = 0
    edges: int = 0
    phases_reached: set[str] = field(default_factory=set)
    fired: set[str] = field(default_factory=set)
    failure: str | None = None
    trace: list[str] = field(default_factory=list)

    @property
    def unreached(self) -> list[str]:
        return [s for s in self.machine.states if s not in self.phases_reached]

    @property
    def never_fired(self) -> list[str]:
        return [t.name for t in self.machine.transitions if t.name not in self.fired]

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.unreached and not self.never_fired

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
        return "\n".join(lines)


class _Explorer:
    def __init__(self, m: Machine) -> None:
        self.m = m
        self.field_names = [f.name for f in m.fields]
        self.constants = dict(m.constants)
        self.bindings = {i.name: list(param_bindings(i.params, m)) for i in m.inputs}
        self.result = Result(m)
        self.parents: dict[Config, Step] = {}

    def env(self, config: Config) -> dict[str, object]:
        env: dict[str, object] = dict(self.constants)
        env["phase"] = config[0]
        env.update(zip(self.field_names, config[1:], strict=True))
        return env

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
                label = _label(inp.name, params)
                if len(enabled) > 1:
                    names = ", ".join(t.name for t in enabled)
                    self._fail(config, f"{label} enables {names} at once")
                    return out
                nxt = self._fire(enabled[0], config, env)
                self.result.fired.add(enabled[0].name)
                if nxt in self.parents:
                    continue
                self.parents[nxt] = Step(config, label, enabled[0].name)
                if self._violation(nxt):
                    return out
                out.append(nxt)
        self.result.configs = len(self.parents)
        return out

    def _enabled(self, t: Transition, env: Mapping[str, object]) -> bool:
        return all(ex.evaluate(self.m.guard(g).expr, env) for g in t.guards)

    def _fire(self, t: Transition, config: Config, env: Mapping[str, object]) -> Config:
        # All updates read the values from before the transition.
        updates = {name: ex.evaluate(value, env) for name, value in t.sets}
        fields = tuple(
            updates.get(n, v) for n, v in zip(self.field_names, config[1:], strict=True)
        )
        return (t.target_from(str(config[0])), *fields)

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
        self.result.trace = self._trace(config)
        self.result.configs = len(self.parents)

    def _trace(self, config: Config) -> list[str]:
        chain: list[tuple[Config, Step]] = []
        current: Config | None = config
        while current is not None:
            step = self.parents[current]
            chain.append((current, step))
            current = step.parent
        chain.reverse()
        lines = []
        for index, (cfg, step) in enumerate(chain):
            shown = self._show(cfg)
            if step.parent is None:
                lines.append(f"0. initial: {shown}")
            else:
                lines.append(f"{index}. {step.label} [{step.transition}] -> {shown}")
        return lines

    def _show(self, config: Config) -> str:
        parts = [f"phase={config[0]}"]
        parts += [
            f"{n}={_fmt(v)}" for n, v in zip(self.field_names, config[1:], strict=True)
        ]
        return " ".join(parts)


def _fmt(value: object) -> str:
    return "None" if value is None else str(value)


def _label(name: str, params: Mapping[str, object]) -> str:
    return f"{name}({', '.join(f'{k}={_fmt(v)}' for k, v in params.items())})"


def check_machine(m: Machine) -> Result:
    """Explore every reachable configuration of ``m``."""
    return _Explorer(m).run()
