"""Safe arithmetic for `multi.calculate_output`: parsed with `ast`, checked against an allow-list,
and evaluated by walking the tree. Nothing is ever passed to `eval`/`exec`.

Allowed: numbers, the sub-graders' names, `+ - * /`, `^` and `**` (power), unary `+`/`-`,
parentheses, and calls to `min max abs floor ceil exp sqrt log`. Anything else — attributes,
subscripts, comparisons, other names, keyword arguments — is a `FormulaError` at parse time.

Precedence is the usual one (Python's): `^` is spelled `**` before parsing, so it binds tighter
than `*` and than a unary minus on its left, and groups right to left: `2 * 3 ^ 2` is 18,
`-2 ^ 2` is -4, `2 ^ 3 ^ 2` is 512.

Every value is a float — constants are converted when parsed, `floor`/`ceil` results too — so a
step costs the same whatever the numbers: a power that overflows is an error, never an exact
integer with millions of digits. Formulas are bounded in length and nesting depth, so neither
parsing nor evaluating can exhaust the stack. This module does not bound how often a formula is
evaluated; that is the caller's business (one evaluation per sample).
"""

from __future__ import annotations

import ast
import io
import math
import operator
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from openrft.errors import FormulaError
from openrft.graders.result import MAX_ABS_REWARD


def _floor(x: float) -> float:
    return float(math.floor(x))


def _ceil(x: float) -> float:
    return float(math.ceil(x))


FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": _floor,
    "ceil": _ceil,
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
    # math.pow, not `**`: it raises on overflow and on a negative base with a fractional
    # exponent, where float `**` would return a complex number
    ast.Pow: math.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_MAX_LENGTH = 2000
_MAX_DEPTH = 64
_MAX_EXPONENT = 1000.0


@dataclass(frozen=True)
class Formula:
    """A checked formula, ready to evaluate many times."""

    source: str
    tree: ast.expr
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, float]) -> float:
        """Evaluate with the sub-graders' rewards; raise `FormulaError` on a math error."""
        try:
            result = _eval(self.tree, values)
        except OverflowError as exc:
            raise FormulaError(
                f"{self.source!r} could not be evaluated: a step is too large for a float ({exc})"
            ) from None
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise FormulaError(f"{self.source!r} could not be evaluated: {exc}") from None
        except KeyError as exc:
            raise FormulaError(f"{self.source!r} has no value for {exc}") from None
        if not math.isfinite(result):
            raise FormulaError(f"{self.source!r} evaluated to {result}")
        if abs(result) > MAX_ABS_REWARD:  # a reward; a step's statistics sum them
            raise FormulaError(
                f"{self.source!r} evaluated to {result:g}, beyond the ±{MAX_ABS_REWARD:g} a "
                "reward may take"
            )
        return result


def parse(source: str, names: set[str] | frozenset[str]) -> Formula:
    """Parse and check `source`; `names` are the variables it may use."""
    return _parse(source, frozenset(names))


@lru_cache(maxsize=256)
def _parse(source: str, names: frozenset[str]) -> Formula:
    if len(source) > _MAX_LENGTH:
        raise FormulaError(f"formula is {len(source)} characters; the limit is {_MAX_LENGTH}")
    try:
        tree = ast.parse(_power_operators(source.strip()), mode="eval").body
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL byte
        column = getattr(exc, "offset", None)
        raise FormulaError(
            f"calculate_output {source!r} does not parse (column {column}): write arithmetic "
            "over the sub-graders' names, e.g. `0.5 * a + 0.5 * b`"
        ) from None
    except (RecursionError, MemoryError):  # the parser's own stack limits
        raise FormulaError(_too_deep(source)) from None
    if _depth(tree) > _MAX_DEPTH:
        raise FormulaError(_too_deep(source))
    _check(tree, names, source)
    return Formula(source, tree, names)


def _power_operators(source: str) -> str:
    """`source` with each `^` operator token spelled `**`, so that Python's grammar gives it
    power's precedence and right associativity instead of XOR's. Only operator tokens change;
    a source that does not tokenize is returned as is for `ast.parse` to report."""
    lines = io.StringIO(source).readlines()  # split exactly as tokenize's readline splits
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    # right to left, so an edit does not move the columns of the `^`s still to do
    for token in reversed(tokens):
        if token.type == tokenize.OP and token.string == "^":
            row, col = token.start
            line = lines[row - 1]
            lines[row - 1] = line[:col] + "**" + line[col + 1 :]
    return "".join(lines)


def _depth(tree: ast.expr) -> int:
    """Nesting depth of the expression nodes, counted without recursion (the tree may be deep)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= _MAX_DEPTH:  # past the limit the answer is known; stop descending
            children = (c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr))
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(source: str) -> str:
    return (
        f"calculate_output {source[:60]!r}… nests more than {_MAX_DEPTH} levels deep (each "
        "operator and call is a level, and so is each link of a chain like `a + b + c`); "
        "flatten it, e.g. split a long sum into parenthesized halves"
    )


def _check(node: ast.AST, names: frozenset[str], source: str) -> None:
    if isinstance(node, ast.Constant):
        _check_constant(node, source)
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


def _check_constant(node: ast.Constant, source: str) -> None:
    """Check a literal and make it a float in place, so evaluation never sees an int."""
    if isinstance(node.value, bool) or not isinstance(node.value, int | float):
        raise FormulaError(f"{source!r}: only numbers are allowed as constants")
    try:
        value = float(node.value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise FormulaError(
            f"{source!r}: a number is too large to be a float (the largest is about 1.8e308)"
        )
    node.value = value


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


def _eval(node: ast.expr, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return cast(float, node.value)  # made a float by `_check_constant`
    if isinstance(node, ast.Name):
        return float(values[node.id])
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        # floats already make `^` cheap; the cap stays because a reward formula raising to a
        # power past 1000 is a mistake, better reported than silently scored 0 or 1
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponent {right} is larger than {_MAX_EXPONENT:g}")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return float(FUNCTIONS[node.func.id](*(_eval(arg, values) for arg in node.args)))
    raise FormulaError(f"unexpected node {ast.dump(node)}")  # unreachable after _check
