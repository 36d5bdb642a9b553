"""The spec's expression language: parse, type-check, evaluate, compile.

Guards, ``set`` updates, effect arguments and invariants are written as small
Python-syntax expressions. They are parsed with ``ast`` and accepted only if
every node is on a whitelist, so a spec can never run arbitrary code: there is
no ``eval`` anywhere. One parsed tree serves three consumers:

* ``check`` types it against the machine's fields, parameters and named types;
* ``evaluate`` interprets it over plain values (the model checker, the oracle);
* ``to_python`` renders it as source for the generated authority module.

Allowed: literals (int, bool, str, None), names of fields/parameters/constants
and ``phase``, enum members ``Enum.member``, union records
``Union.Variant(field=...)``, effects ``Effect(arg=...)`` (in ``emits`` only),
``== != < <= > >= in / not in (tuple) is None / is not None``, ``and or not``,
``+ -`` on ints and ``a if cond else b``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from codegen.errors import Problems
from codegen.types import (
    BOOL,
    INT,
    NONE,
    STR,
    EnumT,
    IdT,
    NoneT,
    Opt,
    Type,
    UnionT,
    assignable,
    comparable,
    strip_optional,
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


class _Checker:
    def __init__(self, scope: Scope, problems: Problems, expr: Expr) -> None:
        self.scope = scope
        self.problems = problems
        self.expr = expr

    def fail(
        self, kind: str, name: str, message: str, valid: tuple[str, ...] = ()
    ) -> None:
        self.problems.add(
            self.expr.line, kind, name, f"in `{self.expr.text}`: {message}", valid
        )

    def check(self, node: ast.expr) -> Type | None:
        # An explicit table, not getattr by name: the whitelist in
        # _ALLOWED_NODES and this table must name the same node types.
        handlers: dict[type[ast.AST], Callable[[Any], Type | None]] = {
            ast.Constant: self._constant,
            ast.Name: self._name,
            ast.Attribute: self._attribute,
            ast.Call: self._call,
            ast.Compare: self._compare,
            ast.BoolOp: self._bool_op,
            ast.UnaryOp: self._unary_op,
            ast.BinOp: self._bin_op,
            ast.IfExp: self._if_exp,
            ast.Tuple: self._tuple,
        }
        return handlers[type(node)](node)

    def _constant(self, node: ast.Constant) -> Type:
        if node.value is None:
            return NONE
        if isinstance(node.value, bool):
            return BOOL
        return INT if isinstance(node.value, int) else STR

    def _name(self, node: ast.Name) -> Type | None:
        binding = self.scope.names.get(node.id)
        if binding is None:
            self.fail(
                "unknown-name",
                node.id,
                f"unknown name {node.id!r}",
                tuple(self.scope.names),
            )
            return None
        return binding.type

    def _attribute(self, node: ast.Attribute) -> Type | None:
        assert isinstance(node.value, ast.Name)
        type_name = node.value.id
        named = self.scope.types.get(type_name)
        if not isinstance(named, EnumT):
            enums = tuple(
                n for n, t in self.scope.types.items() if isinstance(t, EnumT)
            )
            self.fail("unknown-type", type_name, f"{type_name!r} is not an enum", enums)
            return None
        if node.attr not in named.members:
            self.fail(
                "unknown-member",
                f"{type_name}.{node.attr}",
                f"{type_name} has no member {node.attr!r}",
                named.members,
            )
            return None
        return named

    def _call(self, node: ast.Call) -> Type | None:
        if node.args:
            self.fail("expression", ast.unparse(node), "use keyword arguments only")
            return None
        if isinstance(node.func, ast.Name):
            return self._effect_call(node.func.id, node)
        if isinstance(node.func, ast.Attribute) and isinstance(
            node.func.value, ast.Name
        ):
            return self._union_call(node.func.value.id, node.func.attr, node)
        self.fail(
            "expression", ast.unparse(node), "only records and effects may be called"
        )
        return None

    def _effect_call(self, name: str, node: ast.Call) -> Type | None:
        params = self.scope.effects.get(name)
        if params is None:
            self.fail(
                "unknown-effect",
                name,
                f"unknown effect {name!r}",
                tuple(self.scope.effects),
            )
            return None
        self._check_keywords(name, dict(params), node.keywords)
        return NONE

    def _union_call(
        self, type_name: str, variant_name: str, node: ast.Call
    ) -> Type | None:
        union = self.scope.types.get(type_name)
        if not isinstance(union, UnionT):
            unions = tuple(
                n for n, t in self.scope.types.items() if isinstance(t, UnionT)
            )
            self.fail(
                "unknown-type", type_name, f"{type_name!r} is not a union", unions
            )
            return None
        variant = union.variant(variant_name)
        if variant is None:
            self.fail(
                "unknown-member",
                f"{type_name}.{variant_name}",
                f"{type_name} has no variant {variant_name!r}",
                tuple(v.name for v in union.variants),
            )
            return None
        self._check_keywords(
            f"{type_name}.{variant_name}", dict(variant.fields), node.keywords
        )
        return union

    def _check_keywords(
        self, owner: str, params: dict[str, Type], keywords: list[ast.keyword]
    ) -> None:
        given: set[str] = set()
        for kw in keywords:
            if kw.arg is None or kw.arg not in params:
                self.fail(
                    "unknown-field",
                    str(kw.arg),
                    f"{owner} has no field {kw.arg!r}",
                    tuple(params),
                )
                continue
            given.add(kw.arg)
            value_type = self.check(kw.value)
            if value_type is not None and not assignable(value_type, params[kw.arg]):
                self.fail(
                    "type",
                    kw.arg,
                    f"{owner}.{kw.arg} expects {params[kw.arg]}, got {value_type}",
                )
        missing = sorted(set(params) - given)
        if missing:
            self.fail("missing-field", owner, f"{owner} needs {', '.join(missing)}")

    def _compare(self, node: ast.Compare) -> Type | None:
        if len(node.ops) != 1:
            self.fail(
                "expression", ast.unparse(node), "chained comparisons are not allowed"
            )
            return None
        op, right = node.ops[0], node.comparators[0]
        left_t = self.check(node.left)
        if isinstance(op, ast.Is | ast.IsNot):
            if not (isinstance(right, ast.Constant) and right.value is None):
                self.fail("type", ast.unparse(node), "`is` may only compare with None")
            elif left_t is not None and not isinstance(left_t, Opt):
                self.fail("type", ast.unparse(node), f"{left_t} is never None")
            return BOOL
        if isinstance(op, ast.In | ast.NotIn):
            return self._membership(left_t, right)
        right_t = self.check(right)
        if left_t is None or right_t is None:
            return BOOL
        if isinstance(op, ast.Eq | ast.NotEq):
            if not comparable(left_t, right_t):
                self.fail(
                    "type", ast.unparse(node), f"cannot compare {left_t} with {right_t}"
                )
        elif left_t != INT or right_t != INT:
            self.fail(
                "type",
                ast.unparse(node),
                f"ordering needs int, got {left_t} and {right_t}",
            )
        return BOOL

    def _membership(self, left_t: Type | None, right: ast.expr) -> Type:
        if not isinstance(right, ast.Tuple):
            self.fail("type", ast.unparse(right), "`in` needs a tuple written out")
            return BOOL
        for element in right.elts:
            element_t = self.check(element)
            if (
                left_t is not None
                and element_t is not None
                and not comparable(left_t, element_t)
            ):
                self.fail(
                    "type",
                    ast.unparse(element),
                    f"cannot compare {left_t} with {element_t}",
                )
        return BOOL

    def _bool_op(self, node: ast.BoolOp) -> Type:
        for value in node.values:
            self._expect(value, BOOL)
        return BOOL

    def _unary_op(self, node: ast.UnaryOp) -> Type:
        if isinstance(node.op, ast.Not):
            self._expect(node.operand, BOOL)
            return BOOL
        self._expect(node.operand, INT)
        return INT

    def _bin_op(self, node: ast.BinOp) -> Type:
        self._expect(node.left, INT)
        self._expect(node.right, INT)
        return INT

    def _if_exp(self, node: ast.IfExp) -> Type | None:
        self._expect(node.test, BOOL)
        body_t, else_t = self.check(node.body), self.check(node.orelse)
        if body_t is None or else_t is None:
            return None
        if assignable(else_t, body_t):
            return body_t
        if assignable(body_t, else_t):
            return else_t
        if isinstance(body_t, NoneT):
            return Opt(else_t)
        if isinstance(else_t, NoneT):
            return Opt(body_t)
        self.fail("type", ast.unparse(node), f"branches differ: {body_t} and {else_t}")
        return None

    def _tuple(self, node: ast.Tuple) -> None:
        self.fail("type", ast.unparse(node), "a tuple may only follow `in`")

    def _expect(self, node: ast.expr, expected: Type) -> None:
        actual = self.check(node)
        if actual is not None and actual != expected:
            self.fail("type", ast.unparse(node), f"expected {expected}, got {actual}")


def check(expr: Expr, scope: Scope, problems: Problems) -> Type | None:
    """Type of ``expr`` in ``scope``; problems are appended, never raised."""
    return _Checker(scope, problems, expr).check(expr.tree)


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


# --------------------------------------------------------------------------
# evaluation (model checker, oracle)

Env = Mapping[str, object]

_ORDER: dict[type[ast.cmpop], Callable[[int, int], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def evaluate(expr: Expr, env: Env) -> object:
    """Interpret a checked expression; names are looked up in ``env``."""
    return _eval(expr.tree, env)


def _eval(node: ast.expr, env: Env) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Attribute):
        return node.attr  # enum members are their names
    if isinstance(node, ast.Call):
        return _eval_call(node, env)
    if isinstance(node, ast.Compare):
        return _eval_compare(node, env)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, env) for v in node.values)
        return any(_eval(v, env) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, env)
        return (not operand) if isinstance(node.op, ast.Not) else -_int(operand)
    if isinstance(node, ast.BinOp):
        left, right = _int(_eval(node.left, env)), _int(_eval(node.right, env))
        return left + right if isinstance(node.op, ast.Add) else left - right
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, env) else node.orelse, env)
    raise TypeError(f"cannot evaluate {ast.dump(node)}")


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _eval_call(node: ast.Call, env: Env) -> UnionVal:
    fields = tuple(sorted((str(kw.arg), _eval(kw.value, env)) for kw in node.keywords))
    if isinstance(node.func, ast.Attribute):
        assert isinstance(node.func.value, ast.Name)
        return UnionVal(node.func.value.id, node.func.attr, fields)
    assert isinstance(node.func, ast.Name)
    return UnionVal("effect", node.func.id, fields)


def _eval_compare(node: ast.Compare, env: Env) -> bool:
    op, right = node.ops[0], node.comparators[0]
    left = _eval(node.left, env)
    if isinstance(op, ast.Is):
        return left is None
    if isinstance(op, ast.IsNot):
        return left is not None
    if isinstance(op, ast.In | ast.NotIn):
        assert isinstance(right, ast.Tuple)
        found = left in [_eval(e, env) for e in right.elts]
        return found if isinstance(op, ast.In) else not found
    right_v = _eval(right, env)
    if isinstance(op, ast.Eq):
        return left == right_v
    if isinstance(op, ast.NotEq):
        return left != right_v
    return _ORDER[type(op)](_int(left), _int(right_v))


# --------------------------------------------------------------------------
# compilation to Python source (generated modules)


@dataclass(frozen=True, slots=True)
class PyNames:
    """How names render in generated code."""

    scope: Scope
    field: Callable[[str], str]  # field name -> source
    param: Callable[[str], str]
    phase: str
    enum_member: Callable[[EnumT, str], str]


def to_python(expr: Expr, names: PyNames) -> str:
    return _py(expr.tree, names)


def _py(node: ast.expr, n: PyNames) -> str:
    if isinstance(node, ast.Constant):
        return repr(node.value)
    if isinstance(node, ast.Name):
        return _py_name(node.id, n)
    if isinstance(node, ast.Attribute):
        assert isinstance(node.value, ast.Name)
        enum = n.scope.types[node.value.id]
        assert isinstance(enum, EnumT)
        return n.enum_member(enum, node.attr)
    if isinstance(node, ast.Call):
        args = ", ".join(f"{kw.arg}={_py(kw.value, n)}" for kw in node.keywords)
        if isinstance(node.func, ast.Attribute):
            assert isinstance(node.func.value, ast.Name)
            return f"{node.func.value.id}.{node.func.attr}({args})"
        assert isinstance(node.func, ast.Name)
        return f"{node.func.id}({args})"
    if isinstance(node, ast.Compare):
        return _py_compare(node, n)
    if isinstance(node, ast.BoolOp):
        joiner = " and " if isinstance(node.op, ast.And) else " or "
        return "(" + joiner.join(_py(v, n) for v in node.values) + ")"
    if isinstance(node, ast.UnaryOp):
        prefix = "not " if isinstance(node.op, ast.Not) else "-"
        return f"({prefix}{_py(node.operand, n)})"
    if isinstance(node, ast.BinOp):
        sign = "+" if isinstance(node.op, ast.Add) else "-"
        return f"({_py(node.left, n)} {sign} {_py(node.right, n)})"
    if isinstance(node, ast.IfExp):
        return (
            f"({_py(node.body, n)} if {_py(node.test, n)} else {_py(node.orelse, n)})"
        )
    raise TypeError(f"cannot compile {ast.dump(node)}")


def _py_name(name: str, n: PyNames) -> str:
    binding = n.scope.names[name]
    if binding.kind == "field":
        return n.field(name)
    if binding.kind == "param":
        return n.param(name)
    if binding.kind == "phase":
        return n.phase
    return repr(binding.value)


_PY_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


def _py_compare(node: ast.Compare, n: PyNames) -> str:
    op, right = node.ops[0], node.comparators[0]
    text = _PY_OPS[type(op)]
    # Enum members and None are singletons: identity is exact and cheaper.
    if isinstance(op, ast.Eq | ast.NotEq) and (
        _is_singleton(node.left, n) or _is_singleton(right, n)
    ):
        text = "is" if isinstance(op, ast.Eq) else "is not"
    if isinstance(right, ast.Tuple):
        inner = ", ".join(_py(e, n) for e in right.elts)
        rendered = f"({inner},)" if len(right.elts) == 1 else f"({inner})"
        return f"({_py(node.left, n)} {text} {rendered})"
    return f"({_py(node.left, n)} {text} {_py(right, n)})"


def _is_singleton(node: ast.expr, n: PyNames) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Attribute):
        return True
    if isinstance(node, ast.Name):
        binding = n.scope.names.get(node.id)
        return binding is not None and binding.kind == "phase"
    return False


def describe(expr: Expr) -> str:
    """The normalised text of an expression, as diagrams print it."""
    return ast.unparse(expr.tree)


__all__ = [
    "Binding",
    "Expr",
    "IdT",
    "PyNames",
    "Scope",
    "UnionVal",
    "check",
    "describe",
    "evaluate",
    "names_used",
    "parse",
    "strip_optional",
    "to_python",
]
