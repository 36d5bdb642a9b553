"""Differential test: each generated authority against a ``transitions`` oracle.

Theory of operation: the oracle is a ``transitions.Machine`` built from the
loaded spec data only. It shares no code with the generated modules and none of
the checker's firing logic: ``transitions`` matches the source state and takes
the first transition whose conditions hold, guards and ``set`` updates being
interpreted by ``codegen.expr.evaluate`` on plain values. Exploring
breadth-first with the oracle from the initial configuration, every reachable
configuration x every input x every parameter binding from the checker domains
is restored into a generated authority and applied to both sides; acceptance,
transition name, next phase, fields and the effects emitted (in order, with
their values: the oracle evaluates ``emits`` over the values after the step)
must agree, and a refusal or a ``can_accept`` probe must leave the
authority's snapshot untouched.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from transitions import Machine as StateMachine
from transitions import MachineError
from transitions.core import EventData

from codegen import expr as ex
from codegen.checker import check_machine
from codegen.domains import param_bindings
from codegen.model import InputDef, Machine, Spec, Transition
from codegen.types import EnumT, IdT, Opt, Type, UnionT
from meerkat_runtime.generated import spec_types
from tests.conftest import machine

Config = tuple[object, ...]  # (phase, *field values), as codegen.checker has it
Case = tuple[Config, InputDef, dict[str, object]]


class Oracle:
    """A ``transitions`` model: ``state`` is the phase, ``fields`` the rest."""

    trigger: Callable[..., bool]  # added to the model by transitions.Machine

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.names = [f.name for f in m.fields]
        self.fields: dict[str, object] = {}
        self.fired = ""
        self.effects: tuple[ex.UnionVal, ...] = ()
        self.state = m.initial
        specs = [self._edge(t, s) for t in m.transitions for s in t.sources]
        self.machine = StateMachine(
            model=self,
            states=list(m.states),
            transitions=specs,
            initial=m.initial,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            send_event=True,  # callbacks get EventData; trigger kwargs in .kwargs
        )

    def _edge(self, t: Transition, source: str) -> dict[str, Any]:
        def holds(event: EventData) -> bool:
            env = self._env(event.kwargs)
            return all(ex.evaluate(self.m.guard(g).expr, env) for g in t.guards)

        def update(event: EventData) -> None:
            # `before` runs while the model is still in the source state, so
            # every right-hand side (and `phase`) reads the old values.
            env = self._env(event.kwargs)
            new = {name: ex.evaluate(value, env) for name, value in t.sets}
            self.fields = {**self.fields, **new}
            self.fired = t.name
            # `emits` reads the values after the step.
            after = {**env, **new, "phase": t.target_from(self.state)}
            self.effects = tuple(_record(ex.evaluate(e, after)) for e in t.emits)

        return {
            "trigger": t.on,
            "source": source,
            "dest": t.target_from(source),
            "conditions": [holds],
            "before": [update],
        }

    def _env(self, params: Mapping[str, object]) -> dict[str, object]:
        return {**dict(self.m.constants), "phase": self.state, **self.fields, **params}

    def step(
        self, config: Config, inp: str, params: Mapping[str, object]
    ) -> Config | None:
        """The next configuration, or None when the oracle refuses."""
        self.machine.set_state(str(config[0]), model=self)
        self.fields = dict(zip(self.names, config[1:], strict=True))
        self.fired = ""
        self.effects = ()
        try:
            fired = self.trigger(inp, **params)
        except MachineError:  # no transition for this trigger from this state
            return None
        # transitions reports a failed condition by returning False, silently.
        if not fired:
            return None
        return (self.state, *(self.fields[n] for n in self.names))


def _record(value: object) -> ex.UnionVal:
    assert isinstance(value, ex.UnionVal)
    return value


class Generated:
    """The generated module of one machine and plain -> Python value conversion."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.module = importlib.import_module(f"meerkat_runtime.generated.{m.name}")
        self.authority: Any = getattr(self.module, f"{m.prefix}Authority")
        self.error: type[Exception] = getattr(self.module, f"{m.prefix}Error")

    def cls(self, name: str) -> Any:
        return getattr(spec_types, name, None) or getattr(self.module, name)

    def value(self, v: object, t: Type) -> object:
        if v is None:
            return None
        if isinstance(t, Opt):
            return self.value(v, t.inner)
        if isinstance(t, IdT):
            return getattr(importlib.import_module(t.module), t.name)(v)
        if isinstance(t, EnumT):
            return self.cls(t.name)(v)
        if isinstance(t, UnionT):
            assert isinstance(v, ex.UnionVal)
            variant = t.variant(v.variant)
            assert variant is not None
            types = dict(variant.fields)
            args = {k: self.value(x, types[k]) for k, x in v.fields}
            return getattr(self.cls(t.name), v.variant)(**args)
        return v  # bool, int, str

    def snapshot(self, config: Config) -> Any:
        values = {
            f.name: self.value(v, f.type)
            for f, v in zip(self.m.fields, config[1:], strict=True)
        }
        phase = self.cls(self.m.state_type.name)(config[0])
        return getattr(self.module, f"{self.m.prefix}Snapshot")(phase=phase, **values)

    def effect(self, emitted: ex.UnionVal) -> Any:
        declared = next(e for e in self.m.effects if e.name == emitted.variant)
        types = {p.name: p.type for p in declared.params}
        args = {k: self.value(v, types[k]) for k, v in emitted.fields}
        return getattr(self.module, emitted.variant)(**args)

    def input(self, inp: InputDef, params: Mapping[str, object]) -> Any:
        args = {p.name: self.value(params[p.name], p.type) for p in inp.params}
        return getattr(self.module, inp.name)(**args)


@dataclass(slots=True)
class Report:
    configs: int = 0
    cases: int = 0
    accepted: int = 0
    fired: set[str] = field(default_factory=set)
    effects: int = 0  # effects compared
    mismatches: list[str] = field(default_factory=list)


def _compare(
    gen: Generated, expected: Config | None, oracle: Oracle, case: Case
) -> str | None:
    """Why the authority disagrees with the oracle's outcome, or None."""
    config, inp_def, params = case
    fired = oracle.fired
    before = gen.snapshot(config)
    auth, inp = gen.authority.restore(before), gen.input(inp_def, params)
    label = f"{inp!r} at {before!r}"
    if auth.can_accept(inp) != (expected is not None):
        return f"{label}: can_accept disagrees with the oracle ({expected})"
    if auth.snapshot() != before:
        return f"{label}: can_accept mutated the authority to {auth.snapshot()!r}"
    try:
        result = auth.apply(inp)
    except gen.error:
        if auth.snapshot() != before:
            return f"{label}: refusal changed the authority to {auth.snapshot()!r}"
        return None if expected is None else f"{label}: refused; oracle fired {fired}"
    if expected is None:
        return f"{label}: fired {result.name}; the oracle refused"
    want = gen.snapshot(expected)
    got = (result.name, result.from_phase, result.next_phase, auth.snapshot())
    if got != (fired, before.phase, want.phase, want):
        return f"{label}: got {got!r}; oracle {(fired, want)!r}"
    effects = tuple(gen.effect(e) for e in oracle.effects)
    if tuple(result.effects) != effects:
        return f"{label}: {fired} emitted {result.effects!r}; oracle {effects!r}"
    return None


def _explore(m: Machine) -> Report:
    """Breadth-first over the oracle's configurations, comparing every case."""
    oracle, gen, report = Oracle(m), Generated(m), Report()
    initial: Config = (m.initial, *(f.initial for f in m.fields))
    seen, queue = {initial}, deque([initial])
    while queue:
        config = queue.popleft()
        for inp in m.inputs:
            for params in param_bindings(inp.params, m):
                expected = oracle.step(config, inp.name, params)
                report.cases += 1
                mismatch = _compare(gen, expected, oracle, (config, inp, params))
                if mismatch is not None:
                    report.mismatches.append(mismatch)
                if expected is None:
                    continue
                report.accepted += 1
                report.effects += len(oracle.effects)
                report.fired.add(oracle.fired)
                if expected not in seen:
                    seen.add(expected)
                    queue.append(expected)
    report.configs = len(seen)
    return report


# machine -> (rule id of its transition table, fewest cases a full run compares)
# (runtime_control lost its two signal flags and its unused upstream inputs:
# signals are effects the driver carries out, PD-24 and PD-25.)
MACHINES = {"input_lifecycle": ("L-3", 2500), "runtime_control": ("C-3", 800)}


@pytest.fixture(scope="module", params=sorted(MACHINES))
def explored(request: pytest.FixtureRequest, spec: Spec) -> tuple[Machine, Report]:
    m = machine(spec, request.param)
    return m, _explore(m)


def test_generated_authority_matches_transitions_oracle(
    explored: tuple[Machine, Report],
) -> None:
    """L-3 (input lifecycle) and C-3 (runtime control): every reachable state x
    input x binding is accepted or refused exactly as the oracle does, with the
    same transition, next phase and fields; refusals change nothing (L-3, C-3,
    STYLE 5) and ``can_accept`` probes without mutating (L-8)."""
    m, report = explored
    shown = "\n".join(report.mismatches[:10])
    assert not report.mismatches, f"{len(report.mismatches)} mismatches:\n{shown}"
    rule, fewest = MACHINES[m.name]
    assert report.cases > fewest, f"{rule}: only {report.cases} cases compared"
    assert 0 < report.accepted < report.cases
    assert report.effects > report.accepted // 2  # most steps emit something


def test_oracle_reaches_what_the_checker_reaches(
    explored: tuple[Machine, Report],
) -> None:
    """L-3, C-3: the oracle's independent exploration reaches the same number of
    configurations as codegen.checker and fires every spec transition, so the
    comparison above covers the whole table."""
    m, report = explored
    checked = check_machine(m)
    assert (report.configs, report.accepted) == (checked.configs, checked.edges)
    assert report.fired == {t.name for t in m.transitions}
