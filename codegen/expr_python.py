"""The spec's expression language, compiled: ``to_python`` renders a checked
``Expr`` as source for the generated authority modules.

Apart from ``expr`` because it is one of the two back ends of a checked tree
(the other is ``expr_eval``) and needs nothing of the type checker.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from codegen.expr_syntax import Expr, Scope
from codegen.types import EnumT


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
