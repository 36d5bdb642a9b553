"""The spec's type system.

Fields, input parameters and effect arguments are typed so that expressions can
be checked before anything is generated, and so the generated module carries
precise annotations. Types are few on purpose: ``bool``, ``int``, ``str``,
opaque ids (wrappers imported from ``meerkat_runtime.ids``), enums, tagged unions
of records, and ``optional[T]``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prim:
    name: str  # "bool" | "int" | "str"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class NoneT:
    def __str__(self) -> str:
        return "None"


@dataclass(frozen=True, slots=True)
class Opt:
    inner: Type

    def __str__(self) -> str:
        return f"optional[{self.inner}]"


@dataclass(frozen=True, slots=True)
class IdT:
    name: str
    module: str  # where the Python class lives

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class EnumT:
    name: str
    members: tuple[str, ...]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    tag: str
    fields: tuple[tuple[str, Type], ...]

    def field_type(self, name: str) -> Type | None:
        return dict(self.fields).get(name)


@dataclass(frozen=True, slots=True)
class UnionT:
    name: str
    tag_field: str
    variants: tuple[Variant, ...]
    # Written as serde's externally tagged enum ("reset", {"variant": {...}});
    # tag_field is then only read, from records of an earlier format.
    external: bool = False

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class UnknownT:
    """Stands in for a type name that did not resolve (already reported), so
    the mistake does not cascade into type errors wherever the field is used."""

    name: str

    def __str__(self) -> str:
        return self.name


Type = Prim | NoneT | Opt | IdT | EnumT | UnionT | UnknownT

BOOL = Prim("bool")
INT = Prim("int")
STR = Prim("str")
NONE = NoneT()
PRIMITIVES: dict[str, Type] = {"bool": BOOL, "int": INT, "str": STR}


def strip_optional(t: Type) -> Type:
    return t.inner if isinstance(t, Opt) else t


def assignable(source: Type, target: Type) -> bool:
    """Whether a value of type ``source`` may be stored where ``target`` is expected."""
    if source == target or isinstance(source, UnknownT) or isinstance(target, UnknownT):
        return True
    if isinstance(target, Opt):
        return isinstance(source, NoneT) or assignable(source, target.inner)
    return False


def comparable(a: Type, b: Type) -> bool:
    """Whether ``a == b`` is meaningful (same type, modulo optional/None)."""
    a_inner, b_inner = strip_optional(a), strip_optional(b)
    if isinstance(a_inner, UnknownT) or isinstance(b_inner, UnknownT):
        return True
    if isinstance(a_inner, NoneT) or isinstance(b_inner, NoneT):
        return isinstance(a, Opt | NoneT) or isinstance(b, Opt | NoneT)
    return a_inner == b_inner


def python_annotation(t: Type) -> str:
    """The annotation text used in generated code."""
    if isinstance(t, Opt):
        return f"{python_annotation(t.inner)} | None"
    if isinstance(t, NoneT):
        return "None"
    if isinstance(t, UnionT):
        # msgspec decodes a tagged union only when given its variants, so
        # annotations use the generated alias ``AnyX = VariantA | VariantB``;
        # an externally tagged union is one custom type the codec decodes.
        return t.name if t.external else f"Any{t.name}"
    return t.name
