import math

import pytest

from openrft.errors import FormulaError
from openrft.graders.expression import parse


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("0.9 * a + 0.1 * b", 0.9 * 0.5 + 0.1 * 1.0),
        ("a ^ 2", 0.25),
        ("a ** 2", 0.25),
        ("(a + b) / 2", 0.75),
        ("-a + b", 0.5),
        ("min(a, b)", 0.5),
        ("max(a, b, 0.7)", 1.0),
        ("abs(a - b)", 0.5),
        ("floor(a + b)", 1.0),
        ("ceil(a)", 1.0),
        ("exp(a)", math.exp(0.5)),
        ("sqrt(b)", 1.0),
        ("log(b)", 0.0),
        ("log(8, 2)", 3.0),
    ],
)
def test_evaluates(formula: str, expected: float) -> None:
    assert parse(formula, {"a", "b"}).evaluate({"a": 0.5, "b": 1.0}) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("a +", "does not parse"),
        ("c", "not a sub-grader"),
        ("__import__('os')", "not an allowed function"),
        ("a.real", "not allowed"),
        ("a if b else 0", "not allowed"),
        ("a < b", "not allowed"),
        ("[a][0]", "not allowed"),
        ("'x'", "only numbers"),
        ("True", "only numbers"),
        ("min(a, key=b)", "not an allowed function"),
        ("sqrt(a, b)", "takes 1–1 arguments"),
        ("(lambda: 1)()", "not an allowed function"),
    ],
)
def test_rejects(formula: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message):
        parse(formula, {"a", "b"})


@pytest.mark.parametrize("formula", ["a / b", "log(b)", "sqrt(-1 - a)", "b ^ 5000"])
def test_math_errors_raise_formula_error(formula: str) -> None:
    with pytest.raises(FormulaError):
        parse(formula, {"a", "b"}).evaluate({"a": 1.0, "b": 0.0})
