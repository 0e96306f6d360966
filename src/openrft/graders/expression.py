"""Safe arithmetic for `multi.calculate_output`: parsed with `ast`, checked against an allow-list,
and evaluated by walking the tree. Nothing is ever passed to `eval`/`exec`.

Allowed: numbers, the sub-graders' names, `+ - * /`, `^` and `**` (power), unary `+`/`-`,
parentheses, and calls to `min max abs floor ceil exp sqrt log`. Anything else — attributes,
subscripts, comparisons, other names, keyword arguments — is a `FormulaError` at parse time.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from openrft.errors import FormulaError

FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_ARITY = {"abs": (1, 1), "floor": (1, 1), "ceil": (1, 1), "exp": (1, 1), "sqrt": (1, 1),
          "log": (1, 2), "min": (1, 64), "max": (1, 64)}  # fmt: skip

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.BitXor: operator.pow,  # `^` is power in grader formulas, as in OpenAI's docs
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_MAX_LENGTH = 2000


@dataclass(frozen=True)
class Formula:
    """A checked formula, ready to evaluate many times."""

    source: str
    tree: ast.expr
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, float]) -> float:
        """Evaluate with the sub-graders' rewards; raise `FormulaError` on a math error."""
        try:
            result = float(_eval(self.tree, values))
        except (ZeroDivisionError, ValueError, OverflowError, TypeError) as exc:
            raise FormulaError(f"{self.source!r} could not be evaluated: {exc}") from None
        if not math.isfinite(result):
            raise FormulaError(f"{self.source!r} evaluated to {result}")
        return result


def parse(source: str, names: set[str] | frozenset[str]) -> Formula:
    """Parse and check `source`; `names` are the variables it may use."""
    return _parse(source, frozenset(names))


@lru_cache(maxsize=256)
def _parse(source: str, names: frozenset[str]) -> Formula:
    if len(source) > _MAX_LENGTH:
        raise FormulaError(f"formula is {len(source)} characters; the limit is {_MAX_LENGTH}")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(
            f"calculate_output {source!r} does not parse (column {exc.offset}): write arithmetic "
            "over the sub-graders' names, e.g. `0.5 * a + 0.5 * b`"
        ) from None
    _check(tree, names, source)
    return Formula(source, tree, names)


def _check(node: ast.AST, names: frozenset[str], source: str) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise FormulaError(f"{source!r}: only numbers are allowed as constants")
    elif isinstance(node, ast.Name):
        if node.id not in names:
            known = ", ".join(sorted(names)) or "none"
            raise FormulaError(
                f"{source!r} uses {node.id!r}, which is not a sub-grader; the names are: {known}"
            )
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, names, source)
        _check(node.right, names, source)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, names, source)
    elif isinstance(node, ast.Call):
        _check_call(node, names, source)
    else:
        raise FormulaError(
            f"{source!r}: {ast.unparse(node)!r} is not allowed; use numbers, sub-grader names, "
            f"+ - * / ^, parentheses and {', '.join(FUNCTIONS)}"
        )


def _check_call(node: ast.Call, names: frozenset[str], source: str) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
        raise FormulaError(
            f"{source!r}: {ast.unparse(node.func)!r} is not an allowed function; "
            f"use one of {', '.join(FUNCTIONS)}"
        )
    low, high = _ARITY[node.func.id]
    if not low <= len(node.args) <= high:
        raise FormulaError(f"{source!r}: {node.func.id}() takes {low}–{high} arguments")
    for arg in node.args:
        _check(arg, names, source)


def _eval(node: ast.expr, values: Mapping[str, float]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if type(node.op) in (ast.Pow, ast.BitXor) and abs(right) > 1000:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return FUNCTIONS[node.func.id](*(_eval(arg, values) for arg in node.args))
    raise FormulaError(f"unexpected node {ast.dump(node)}")  # unreachable after _check
