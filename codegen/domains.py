"""Finite value domains for exhaustive checks.

The model checker and the determinism check enumerate every value a field or
parameter can take. Enums, bools and unions enumerate themselves; ids, ints
and strings take the small lists a machine declares under ``checker.domains``
(two run ids are enough to tell "the current run" from "another run").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

from codegen.expr import UnionVal
from codegen.model import FieldDef, Machine, Param
from codegen.types import EnumT, IdT, NoneT, Opt, Prim, Type, UnionT

_DEFAULTS: dict[str, tuple[object, ...]] = {"int": (0, 1), "str": ("x",)}


def values(t: Type, machine: Machine) -> tuple[object, ...]:
    declared = dict(machine.domains)
    if isinstance(t, Opt):
        return (None, *values(t.inner, machine))
    if isinstance(t, NoneT):
        return (None,)
    if isinstance(t, EnumT):
        return t.members
    if isinstance(t, UnionT):
        return _union_values(t, machine)
    if isinstance(t, Prim) and t.name == "bool":
        return (False, True)
    name = t.name if isinstance(t, Prim | IdT) else str(t)
    return declared.get(name) or _DEFAULTS.get(name, (f"{name.lower()}_1",))


def _union_values(t: UnionT, machine: Machine) -> tuple[object, ...]:
    out: list[object] = []
    for variant in t.variants:
        names = [name for name, _ in variant.fields]
        pools = [values(ftype, machine) for _, ftype in variant.fields]
        for combo in itertools.product(*pools):
            out.append(
                UnionVal(
                    t.name, variant.name, tuple(sorted(zip(names, combo, strict=True)))
                )
            )
    return tuple(out)


def field_values(f: FieldDef, machine: Machine) -> tuple[object, ...]:
    if f.range is not None:
        ints = tuple(range(f.range[0], f.range[1] + 1))
        return (None, *ints) if isinstance(f.type, Opt) else ints
    return values(f.type, machine)


def param_bindings(
    params: Sequence[Param], machine: Machine
) -> Iterator[dict[str, object]]:
    """Every assignment of values to an input's parameters."""
    pools = [values(p.type, machine) for p in params]
    for combo in itertools.product(*pools):
        yield {p.name: v for p, v in zip(params, combo, strict=True)}


def assignments(
    names: Sequence[str], pools: Mapping[str, tuple[object, ...]]
) -> Iterator[dict[str, object]]:
    for combo in itertools.product(*(pools[n] for n in names)):
        yield dict(zip(names, combo, strict=True))
