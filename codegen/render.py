"""Render the generated Python modules from a loaded spec.

Per STYLE.md 11, names, types and expression source are computed here, in
Python; the Jinja2 templates only loop and lay out text. Output is
deterministic (spec order, no timestamps) and formatted with the pinned ruff,
so ``make check-generated`` can compare it byte for byte.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from codegen import expr as ex
from codegen.model import Machine, Spec, Transition, snake_case
from codegen.types import EnumT, IdT, Opt, Type, UnionT, python_annotation

TEMPLATES = Path(__file__).parent / "templates"
GENERATED_PACKAGE = "meerkat_runtime.generated"


def header(source: str) -> str:
    return (
        f"# generated from {source} — edit the spec, not this file.\n"
        "# Regenerate with `make generate` (python -m codegen generate)."
    )


def wrap(text: str, indent: str = "") -> str:
    """Docstring text wrapped to the line length the formatter keeps."""
    return textwrap.fill(text, width=79, subsequent_indent=indent)


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def member(name: str) -> str:
    return name.upper()


def py_literal(value: object, t: Type) -> str:
    if value is None:
        return "None"
    inner = t.inner if isinstance(t, Opt) else t
    if isinstance(inner, EnumT):
        return f"{inner.name}.{member(str(value))}"
    return repr(value)


# --------------------------------------------------------------------------
# spec_types.py


def render_types(spec: Spec, env: jinja2.Environment) -> str:
    return env.get_template("spec_types.py.j2").render(
        header=header(spec.file),
        enums=[
            {"name": e.name, "members": [(member(m), m) for m in e.members]}
            for e in spec.enums
        ],
        unions=[_union_context(u) for u in spec.unions],
        any_external=any(u.external for u in spec.unions),
        id_imports=_id_imports(
            tuple(
                t
                for t in spec.types
                if isinstance(t, IdT) and any(_mentions(u, t.name) for u in spec.unions)
            )
        ),
    )


def _mentions(u: UnionT, name: str) -> bool:
    return any(
        str(ft.inner if isinstance(ft, Opt) else ft) == name
        for v in u.variants
        for _, ft in v.fields
    )


def _union_context(u: UnionT) -> dict[str, object]:
    return {
        "name": u.name,
        "tag_field": u.tag_field,
        "external": u.external,
        "variants": [
            {
                "name": v.name,
                "tag": v.tag,
                "fields": [(n, python_annotation(t)) for n, t in v.fields],
                "slots": repr(tuple(n for n, _ in v.fields)),
            }
            for v in u.variants
        ],
    }


def _id_imports(types: tuple[Type, ...]) -> list[tuple[str, str]]:
    by_module: dict[str, list[str]] = {}
    for t in types:
        if isinstance(t, IdT):
            by_module.setdefault(t.module, []).append(t.name)
    return [(mod, ", ".join(sorted(names))) for mod, names in sorted(by_module.items())]


# --------------------------------------------------------------------------
# one module per machine


@dataclass(slots=True)
class _Candidate:
    condition: str  # guard conjunction source, "" when unguarded
    body: str  # statements that fire the transition and return it


@dataclass(slots=True)
class _Group:
    condition: str  # "phase is S.X" / "phase in (...)"
    candidates: list[_Candidate]
    guards: list[tuple[str, str]]  # (name, source) for the failure report


@dataclass(slots=True)
class _Handler:
    method: str
    cls: str
    groups: list[_Group] = field(default_factory=list)


class _MachineRenderer:
    def __init__(self, m: Machine) -> None:
        self.m = m
        self.state_enum = m.state_type.name
        # Multi-phase handler conditions, one module constant per distinct set.
        self.source_sets: dict[tuple[str, ...], str] = {}

    def context(self, spec: Spec) -> dict[str, object]:
        m = self.m
        p = m.prefix
        handlers = [self._handler(i.name) for i in m.inputs]  # fills source_sets
        return {
            "machine": m,
            "prefix": p,
            "state_enum": self.state_enum,
            "doc": wrap(f"The {m.name} authority: {m.doc}"),
            "states": [(member(s), s, doc) for s, doc in m.state_docs],
            "slots": sorted(["_phase", *(f"_{f.name}" for f in m.fields)]),
            "terminal": [member(s) for s in m.terminal],
            "predicates": [
                (n, [member(s) for s in members]) for n, members in m.predicates
            ],
            "fields": [
                (f.name, python_annotation(f.type), py_literal(f.initial, f.type))
                for f in m.fields
            ],
            "inputs": [
                {
                    "name": i.name,
                    "params": [(q.name, python_annotation(q.type)) for q in i.params],
                }
                for i in m.inputs
            ],
            "effects": [
                {
                    "name": e.name,
                    "params": [(q.name, python_annotation(q.type)) for q in e.params],
                }
                for e in m.effects
            ],
            "handlers": handlers,
            "source_sets": [
                (name, [f"{self.state_enum}.{member(s)}" for s in states])
                for states, name in self.source_sets.items()
            ],
            "invariants": [
                (inv.name, self._py(inv.expr, None)) for inv in m.invariants
            ],
            "type_imports": self._type_imports(spec),
            "initial": member(m.initial),
            "stored_as": [
                (f"{self.state_enum}.{member(st)}", self._py(e, None))
                for st, e in m.stored_as
            ],
            "restore": [
                (f"{self.state_enum}.{member(st)}", list(inputs))
                for st, inputs in m.restore
            ],
            "has_storage": bool(m.stored_as or m.restore),
            "transition_count": sum(len(t.sources) for t in m.transitions),
            "transition_inputs": [(t.name, t.on) for t in m.transitions],
            "field_ranges": [(f.name, f.range) for f in m.fields if f.range],
            "consistency": [
                *(f"({self._py(inv.expr, None)})" for inv in m.invariants),
                *(
                    f"({f.range[0]} <= self._{f.name} <= {f.range[1]})"
                    for f in m.fields
                    if f.range
                ),
            ],
        }

    def _type_imports(self, spec: Spec) -> dict[str, object]:
        used = _types_used(self.m)
        ids = tuple(t for t in spec.types if isinstance(t, IdT) and t.name in used)
        named: list[EnumT | UnionT] = [*spec.enums, *spec.unions]
        generated = sorted(
            {n for t in named for n in (t.name, f"Any{t.name}") if n in used}
        )
        return {"ids": _id_imports(ids), "generated": generated}

    def _names(self, on: str | None) -> ex.PyNames:
        scope = self.m.scope_for(on) if on else self.m.scope
        return ex.PyNames(
            scope=scope,
            field=lambda n: f"self._{n}",
            param=lambda n: f"inp.{n}",
            phase="self._phase",
            enum_member=lambda e, v: f"{e.name}.{member(v)}",
        )

    def _py(self, e: ex.Expr, on: str | None) -> str:
        return ex.to_python(e, self._names(on))

    def _handler(self, on: str) -> _Handler:
        handler = _Handler(method=f"_on_{snake_case(on)}", cls=on)
        by_candidates: dict[tuple[str, ...], list[str]] = {}
        for state in self.m.states:
            names = tuple(t.name for t in self.m.transitions_for(state, on))
            if names:
                by_candidates.setdefault(names, []).append(state)
        for names, states in by_candidates.items():
            transitions = [t for t in self.m.transitions if t.name in names]
            handler.groups.append(self._group(states, transitions, on))
        return handler

    def _group(
        self, states: list[str], transitions: list[Transition], on: str
    ) -> _Group:
        enum = self.state_enum
        if len(states) == 1:
            condition = f"phase is {enum}.{member(states[0])}"
        else:
            key = tuple(states)
            name = self.source_sets.setdefault(key, f"_FROM_{len(self.source_sets)}")
            condition = f"phase in {name}"
        candidates = []
        guard_sources: dict[str, str] = {}
        for t in transitions:
            parts = [self._py(self.m.guard(g).expr, on) for g in t.guards]
            for g in t.guards:
                guard_sources[g] = self._py(self.m.guard(g).expr, on)
            candidates.append(_Candidate(" and ".join(parts), self._fire_body(t)))
        return _Group(condition, candidates, list(guard_sources.items()))

    def _fire_body(self, t: Transition) -> str:
        """Statements that apply ``t``: compute every update from the old values
        first (updates are simultaneous), assign, and build the effects from the
        new values."""
        target = (
            "phase" if t.target is None else f"{self.state_enum}.{member(t.target)}"
        )
        lines = []
        if t.sets:
            # One tuple assignment: every right side reads the old values.
            targets = ", ".join(f"self._{n}" for n, _ in t.sets)
            values = ", ".join(self._py(v, t.on) for _, v in t.sets)
            lines.append(f"{targets} = {values}")
        if t.target is not None:
            lines.append(f"self._phase = {target}")
        effects = "".join(f"{self._py(e, t.on)}, " for e in t.emits)
        lines.append(
            f'return {self.m.prefix}Transition("{t.name}", phase, {target}, ({effects}))'
        )
        return "\n".join(lines)


def _types_used(m: Machine) -> set[str]:
    """Named types the machine's module mentions (to import only those)."""
    used: set[str] = set()
    declared = [f.type for f in m.fields]
    declared += [q.type for i in m.inputs for q in i.params]
    declared += [q.type for e in m.effects for q in e.params]
    for t in declared:
        # Fields and parameters are annotated with a union's Any-alias.
        used.add(python_annotation(t.inner if isinstance(t, Opt) else t))
    exprs = [g.expr for g in m.guards] + [i.expr for i in m.invariants]
    exprs += [e for t in m.transitions for e in (*t.emits, *(v for _, v in t.sets))]
    exprs += [e for _, e in m.stored_as]
    for e in exprs:
        used |= ex.type_names_used(e)
    return used


def render_machine(spec: Spec, m: Machine, env: jinja2.Environment) -> str:
    return env.get_template("machine.py.j2").render(
        header=header(spec.file), **_MachineRenderer(m).context(spec)
    )


def render_package_init(spec: Spec, env: jinja2.Environment) -> str:
    return env.get_template("init.py.j2").render(
        header=header(spec.file),
        modules=[m.name for m in spec.machines],
    )


def format_python(source: str, name: str) -> str:
    """Format with the project's pinned ruff, so output never depends on taste."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--quiet",
            "--stdin-filename",
            name,
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ruff could not format generated {name}:\n{result.stderr}")
    return result.stdout
