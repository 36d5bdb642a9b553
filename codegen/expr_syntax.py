"""The spec's expression language, its syntax: what an expression is, the
whitelist it is parsed against, and the names it mentions.

Everything else in the language (``expr``'s type checker, ``expr_eval``'s
interpreter, ``expr_python``'s compiler) consumes the ``Expr`` trees made
here, so the whitelist sits in one place: a spec can never run code outside
it.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field

from codegen.errors import Problems
from codegen.types import (
    Type,
)

ALLOWED_SYNTAX = (
    "literals",
    "names",
    "Enum.member",
    "Union.Variant(field=...)",
    "== != < <= > >=",
    "in / not in (tuple)",
    "is None / is not None",
    "and / or / not",
    "+ - on int",
    "a if cond else b",
)


@dataclass(frozen=True, slots=True)
class Binding:
    """What a bare name in an expression refers to."""

    kind: str  # "field" | "param" | "const" | "phase"
    type: Type
    value: object = None  # for constants


@dataclass(frozen=True, slots=True)
class UnionVal:
    """A union record as the interpreter sees it (hashable, printable)."""

    type_name: str
    variant: str
    fields: tuple[tuple[str, object], ...] = ()

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_show(v)}" for k, v in self.fields)
        return f"{self.variant}({args})"


def _show(value: object) -> str:
    return "None" if value is None else str(value)


@dataclass(slots=True)
class Scope:
    """Everything a name in one expression may resolve to."""

    names: Mapping[str, Binding]
    types: Mapping[str, Type]
    effects: Mapping[str, tuple[tuple[str, Type], ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed, whitelisted expression and where it came from."""

    text: str
    tree: ast.expr
    line: int


def parse(text: object, line: int, problems: Problems) -> Expr | None:
    """Parse ``text`` and reject any syntax outside the whitelist."""
    if isinstance(text, bool | int):
        text = str(text)
    if not isinstance(text, str):
        problems.add(line, "expression", repr(text), "an expression must be text")
        return None
    try:
        # Parenthesised so that an expression folded over several YAML lines
        # parses as one expression.
        tree = ast.parse(f"({text.strip()}\n)", mode="eval").body
    except SyntaxError as exc:
        problems.add(line, "expression", text, f"cannot parse expression: {exc.msg}")
        return None
    bad = _first_disallowed(tree)
    if bad is not None:
        problems.add(
            line,
            "expression",
            text,
            f"{type(bad).__name__} is not allowed in spec expressions",
            ALLOWED_SYNTAX,
        )
        return None
    return Expr(" ".join(text.split()), tree, line)


_ALLOWED_NODES = (
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Call,
    ast.keyword,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.IfExp,
    ast.Tuple,
    ast.Load,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.Add,
    ast.Sub,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
)


def _first_disallowed(tree: ast.AST) -> ast.AST | None:
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            return node
        if isinstance(node, ast.Constant) and not isinstance(
            node.value, bool | int | str | type(None)
        ):
            return node
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            return node
        if isinstance(node, ast.Attribute) and not isinstance(node.value, ast.Name):
            return node
    return None


# --------------------------------------------------------------------------
# type checking


def names_used(expr: Expr) -> set[str]:
    """Bare names (fields, parameters, constants) the expression reads."""
    skip = {
        id(n.value) for n in ast.walk(expr.tree) if isinstance(n, ast.Attribute)
    } | {id(n.func) for n in ast.walk(expr.tree) if isinstance(n, ast.Call)}
    return {
        n.id
        for n in ast.walk(expr.tree)
        if isinstance(n, ast.Name) and id(n) not in skip
    }


def type_names_used(expr: Expr) -> set[str]:
    """Named types the expression mentions (``Enum.member``, ``Union.Variant``)."""
    return {
        n.value.id
        for n in ast.walk(expr.tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }


def describe(expr: Expr) -> str:
    """The normalised text of an expression, as diagrams print it."""
    return ast.unparse(expr.tree)
