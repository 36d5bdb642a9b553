"""The spec's expression language: parse, type-check, evaluate, compile.

Guards, ``set`` updates, effect arguments and invariants are written as small
Python-syntax expressions. They are parsed with ``ast`` and accepted only if
every node is on a whitelist, so a spec can never run arbitrary code: there is
no ``eval`` anywhere. One parsed tree serves three consumers:

* ``check`` types it against the machine's fields, parameters and named types;
* ``evaluate`` interprets it over plain values (the model checker, the oracle);
* ``to_python`` renders it as source for the generated authority module.

This module holds the type checker and is the language's one import: the
syntax and parser live in ``expr_syntax``, the interpreter in ``expr_eval``
and the compiler in ``expr_python``, all re-exported here.

Allowed: literals (int, bool, str, None), names of fields/parameters/constants
and ``phase``, enum members ``Enum.member``, union records
``Union.Variant(field=...)``, effects ``Effect(arg=...)`` (in ``emits`` only),
``== != < <= > >= in / not in (tuple) is None / is not None``, ``and or not``,
``+ -`` on ints and ``a if cond else b``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from codegen.errors import Problems
from codegen.expr_eval import evaluate
from codegen.expr_python import PyNames, to_python
from codegen.expr_syntax import (
    ALLOWED_SYNTAX,
    Binding,
    Expr,
    Scope,
    UnionVal,
    describe,
    names_used,
    parse,
    type_names_used,
)
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


__all__ = [
    "ALLOWED_SYNTAX",
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
    "type_names_used",
]
