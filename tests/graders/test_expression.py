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


# --- `^` is power, with power's precedence ---------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("2 * 3 ^ 2", 18.0),
        ("a + 2 ^ 2", 0.5 + 4.0),
        ("2 ^ 3 ^ 2", 512.0),  # right-associative, like `**`
        ("-2 ^ 2", -4.0),  # binds tighter than a unary minus on its left
        ("2 ^ -1", 0.5),
        ("(2 ^ 3) ^ 2", 64.0),
        ("2 ^ 3 * 2", 16.0),
    ],
)
def test_caret_is_power_with_powers_precedence(formula: str, expected: float) -> None:
    values = {"a": 0.5, "b": 1.0}
    assert parse(formula, {"a", "b"}).evaluate(values) == expected
    assert parse(formula.replace("^", "**"), {"a", "b"}).evaluate(values) == expected


def test_caret_across_lines_inside_parentheses() -> None:
    assert parse("(a\n^\n2)", {"a"}).evaluate({"a": 3.0}) == 9.0


# --- hostile formulas: errors, never a stall or a crash ---------------------------------------


@pytest.mark.parametrize(
    "formula",
    [
        "((9^999)^999)^10",
        "9 ^ 999",
        "(10 ^ 300) ^ 2",
        "10 ^ 400 / 10 ^ 399",  # exact integers made this 10
        "exp(1000)",
        "floor(exp(709) * 10)",
    ],
)
def test_overflowing_powers_are_formula_errors(formula: str) -> None:
    """Values are floats, so these overflow at once instead of building exact integers with
    millions of digits (which held the GIL for tens of seconds)."""
    checked = parse(formula, set())
    with pytest.raises(FormulaError, match=r"could not be evaluated|evaluated to"):
        checked.evaluate({})


@pytest.mark.parametrize(
    ("formula", "expected"),
    [("floor(2.5)", 2.0), ("ceil(a)", 1.0), ("abs(-2)", 2.0), ("max(1, 2)", 2.0), ("7", 7.0)],
)
def test_every_result_is_a_float(formula: str, expected: float) -> None:
    result = parse(formula, {"a"}).evaluate({"a": 0.5})
    assert type(result) is float
    assert result == expected


@pytest.mark.parametrize("formula", ["1e999", "a + 1e400", "1" * 400, "0x" + "f" * 300])
def test_constants_that_are_not_finite_floats_are_refused(formula: str) -> None:
    with pytest.raises(FormulaError, match="too large to be a float"):
        parse(formula, {"a"})


@pytest.mark.parametrize(
    "formula",
    [
        "-" * 1999 + "a",
        "-(" * 190 + "a" + ")" * 190,
        "+a" * 999,
        "2 ^ " * 400 + "2",
        "min(" * 65 + "a" + ")" * 65,
        "(" * 300 + "a" + ")" * 300,
    ],
)
def test_deep_nesting_is_a_formula_error(formula: str) -> None:
    assert len(formula) <= 2000
    with pytest.raises(FormulaError, match=r"nests more than 64 levels|does not parse"):
        parse(formula, {"a"})


def test_nesting_within_the_limit_evaluates() -> None:
    assert parse("-(" * 30 + "a" + ")" * 30, {"a"}).evaluate({"a": 1.0}) == 1.0


@pytest.mark.parametrize("formula", ["a ^", "(a", "a \x00", "2 ^^ 3", "a ^ (b"])
def test_broken_formulas_do_not_parse(formula: str) -> None:
    with pytest.raises(FormulaError, match="does not parse"):
        parse(formula, {"a", "b"})


def test_too_long_is_refused() -> None:
    with pytest.raises(FormulaError, match="the limit is 2000"):
        parse("a + " * 600 + "a", {"a"})


@pytest.mark.parametrize("formula", ["(-8) ^ (1 / 3)", "0 ^ -1", "a ^ 1001", "1e308 * 10"])
def test_float_math_errors_are_formula_errors(formula: str) -> None:
    with pytest.raises(FormulaError):
        parse(formula, {"a"}).evaluate({"a": 2.0})
