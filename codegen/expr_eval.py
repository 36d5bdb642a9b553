"""The spec's expression language, interpreted: ``evaluate`` runs a checked
``Expr`` over plain values, for the model checker and the test oracle.

Apart from ``expr`` because it is one of the two back ends of a checked tree
(the other is ``expr_python``) and needs nothing of the type checker.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

from codegen.expr_syntax import Expr, UnionVal

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
