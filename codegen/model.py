"""The loaded spec: plain, immutable data that every codegen stage reads.

Theory of operation: ``loader`` turns YAML into these objects (reporting every
problem it finds); ``validate`` checks whole-machine properties; ``checker``
explores them; ``render`` and ``diagrams`` print them. Nothing here knows YAML.
"""

from __future__ import annotations

from dataclasses import dataclass

from codegen.expr import Expr, Scope
from codegen.types import EnumT, Type, UnionT


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Type


@dataclass(frozen=True, slots=True)
class InputDef:
    name: str
    params: tuple[Param, ...]
    line: int

    @property
    def snake(self) -> str:
        return snake_case(self.name)


@dataclass(frozen=True, slots=True)
class EffectDef:
    name: str
    params: tuple[Param, ...]
    line: int


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: Type
    initial: object  # interpreter value
    range: tuple[int, int] | None
    line: int


@dataclass(frozen=True, slots=True)
class Named:
    """A named guard or invariant."""

    name: str
    expr: Expr


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    sources: tuple[str, ...]
    on: str
    guards: tuple[str, ...]
    sets: tuple[tuple[str, Expr], ...]
    emits: tuple[Expr, ...]
    target: str | None  # None: stays in the state it fired from ("same")
    line: int

    def target_from(self, source: str) -> str:
        return source if self.target is None else self.target


@dataclass(frozen=True, slots=True)
class Machine:
    name: str
    doc: str
    file: str
    line: int
    state_type: EnumT
    state_docs: tuple[tuple[str, str], ...]
    state_lines: tuple[tuple[str, int], ...]
    initial: str
    terminal: tuple[str, ...]
    constants: tuple[tuple[str, int], ...]
    fields: tuple[FieldDef, ...]
    inputs: tuple[InputDef, ...]
    effects: tuple[EffectDef, ...]
    guards: tuple[Named, ...]
    invariants: tuple[Named, ...]
    transitions: tuple[Transition, ...]
    domains: tuple[tuple[str, tuple[object, ...]], ...]
    predicates: tuple[
        tuple[str, tuple[str, ...]], ...
    ]  # phase predicates, e.g. can_accept_input
    scope: Scope  # names visible to expressions without parameters
    # Per state, how a store keeps it (an expression of the state type) and
    # the inputs that bring a recovered runtime back to it (D-3, D-11).
    stored_as: tuple[tuple[str, Expr], ...] = ()
    restore: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def states(self) -> tuple[str, ...]:
        return self.state_type.members

    @property
    def prefix(self) -> str:
        """``RuntimeState`` -> ``RuntimeControl`` style prefix of class names."""
        return camel_case(self.name)

    def input(self, name: str) -> InputDef:
        return next(i for i in self.inputs if i.name == name)

    def guard(self, name: str) -> Named:
        return next(g for g in self.guards if g.name == name)

    def transitions_for(self, source: str, on: str) -> tuple[Transition, ...]:
        return tuple(t for t in self.transitions if t.on == on and source in t.sources)

    def scope_for(self, on: str) -> Scope:
        """The expression scope inside a transition triggered by input ``on``."""
        from codegen.expr import Binding

        names = dict(self.scope.names)
        for param in self.input(on).params:
            names[param.name] = Binding("param", param.type)
        return Scope(names, self.scope.types, self.scope.effects)


@dataclass(frozen=True, slots=True)
class Spec:
    file: str
    types: tuple[Type, ...]  # named enums, unions and ids, in file order
    machines: tuple[Machine, ...]

    @property
    def unions(self) -> tuple[UnionT, ...]:
        return tuple(t for t in self.types if isinstance(t, UnionT))

    @property
    def enums(self) -> tuple[EnumT, ...]:
        return tuple(t for t in self.types if isinstance(t, EnumT))


def snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))
