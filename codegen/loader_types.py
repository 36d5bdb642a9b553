"""The spec's ``types:`` section: enums and unions read into ``codegen.types``,
type names resolved (``optional[T]`` included), and the check that a literal
fits a type.

Apart from ``loader`` because the named types are read before any machine
and the machines only look them up.
"""

from __future__ import annotations

import re

from codegen.specread import CAMEL, SNAKE, Reader
from codegen.types import (
    BOOL,
    INT,
    PRIMITIVES,
    EnumT,
    IdT,
    Opt,
    Type,
    UnionT,
    UnknownT,
    Variant,
)
from codegen.yamlsrc import Node


def load_types(r: Reader, node: Node | None) -> dict[str, Type]:
    types: dict[str, Type] = {}
    entries = r.mapping(node, "types")
    for name, entry in entries.items():  # enums and ids first: unions refer to them
        body = r.mapping(entry, f"type {name}")
        kind = body.get("kind")
        if not r.name(name, entry.line, CAMEL, "type"):
            continue
        if kind is None or kind.value not in ("id", "enum", "union"):
            r.problems.add(
                entry.line,
                "type-kind",
                name,
                f"type {name} needs a kind",
                ("id", "enum", "union"),
            )
            continue
        r.keys(
            body,
            ("kind", "doc", "module", "members", "tag_field", "external", "variants"),
            f"type {name}",
        )
        if kind.value == "id":
            module = r.text(body.get("module"), f"{name}.module", entry.line)
            types[name] = IdT(name, module or "meerkat_runtime.ids")
        elif kind.value == "enum":
            members = [
                str(m.value)
                for m in r.seq(body.get("members"), f"{name}.members")
                if r.name(str(m.value), m.line, SNAKE, "enum member")
            ]
            types[name] = EnumT(name, tuple(members))
    for name, entry in entries.items():
        body = r.mapping(entry, f"type {name}")
        kind = body.get("kind")
        if kind is not None and kind.value == "union":
            types[name] = _load_union(r, name, entry, body, types)
    return types


def _load_union(
    r: Reader, name: str, entry: Node, body: dict[str, Node], types: dict[str, Type]
) -> UnionT:
    tag_field = r.text(body.get("tag_field"), f"{name}.tag_field", entry.line) or "type"
    variants = []
    for vname, vnode in r.mapping(body.get("variants"), f"{name}.variants").items():
        r.name(vname, vnode.line, CAMEL, "variant")
        fields = tuple(
            (fname, resolve_type(r, fnode, types))
            for fname, fnode in r.mapping(vnode, f"variant {vname}").items()
        )
        from codegen.model import snake_case

        variants.append(Variant(vname, snake_case(vname), fields))
    external = body.get("external")
    if external is not None and not isinstance(external.value, bool):
        r.problems.add(
            external.line,
            "shape",
            f"{name}.external",
            f"{name}.external must be a boolean",
        )
    external_flag = external is not None and external.value is True
    return UnionT(name, tag_field, tuple(variants), external_flag)


_OPTIONAL = re.compile(r"^optional\[(.+)\]$")


def resolve_type(r: Reader, node: Node, types: dict[str, Type]) -> Type:
    text = str(node.value).strip()
    match = _OPTIONAL.match(text)
    if match:
        return Opt(resolve_type(r, Node(match.group(1).strip(), node.line), types))
    found = PRIMITIVES.get(text) or types.get(text)
    if found is None:
        r.problems.add(
            node.line,
            "unknown-type",
            text,
            f"unknown type {text!r}",
            [*PRIMITIVES, *types, "optional[T]"],
        )
        return UnknownT(text)
    return found


def literal_fits(value: object, t: Type) -> bool:
    if isinstance(t, UnknownT):
        return True
    if value is None:
        return isinstance(t, Opt)
    inner = t.inner if isinstance(t, Opt) else t
    if inner == BOOL:
        return isinstance(value, bool)
    if inner == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(inner, EnumT):
        return value in inner.members
    return isinstance(value, str)
