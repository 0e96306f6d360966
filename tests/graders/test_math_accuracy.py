import random
import threading
from decimal import Decimal

import pytest
from math_verify import parse, verify

from openrft.graders import GradeResult, Sample, grade, grade_batch, load_grader
from openrft.graders.math_accuracy import (
    candidates,
    fast_verdict,
    plain_number,
    symbolic_verdict,
    verdict,
)

SPEC = load_grader({"type": "math_accuracy"})

# Numbers as references and answers are written: signs, decimals, thousands separators, leading
# zeros, \boxed{} and $…$ wrappers, near-equal decimals, percentages, units, text around numbers,
# fractions and LaTeX (the last ones must go to math-verify, never the fast path).
TABLE = [
    "28", "-3", "27", "29", "-28", "2.8", "280", "0.28", "5", "0", "-0", "0.0", "-0.0", "007",
    "00.5", "0.5", "12.5", "12.50", "-12.5", "28.0", "28.00", "28.000001", "28.0000001",
    "28.000002", "28.0000021", "0.333333", "0.3333333", "3.1415926", "3.1415927", "1.414214",
    "1.4142135", "1,000", "1000", "1,234", "1234", "-1,234", "1,234.5", "1234.5", "123,456",
    "123456", "1,234,567", "1234567", "999999999999", "999999999998", "123456789012",
    "123456789012.5", "\\boxed{28}", "\\boxed{ 28 }", "\\boxed{-3}", "$28$", "$ 28 $", "$-3$",
    "12,5", "1,00", "0,123", "28.", "+5", "1e3", "10%", "0.1", "28\\%", "\\$5", "5 dollars",
    "28 apples", "The answer is 28", "x=5", "1/2", "\\frac{1}{2}", "\\frac12", "\\dfrac{3}{4}",
    "0.75", "2^{10}", "1024", "\\sqrt{2}", "1/3",
]  # fmt: skip


def math_verify_alone(reference: str, answer: str) -> bool:
    return bool(verify(parse(reference), parse(answer)))


def test_fast_path_agrees_with_math_verify_on_the_whole_table() -> None:
    decided = 0
    for reference in TABLE:
        for answer in TABLE:
            fast = fast_verdict(reference, answer)
            if fast is None:
                continue
            decided += 1
            assert fast == symbolic_verdict(reference, answer), (reference, answer)
            assert fast[1] == math_verify_alone(reference, answer), (reference, answer)
    assert decided > 2000  # the fast path covers most plain-number pairs


def test_fast_path_agrees_on_random_numbers_near_and_far() -> None:
    rng = random.Random(7)
    for _ in range(300):
        value = Decimal(rng.randint(-(10**6), 10**6)) / Decimal(10 ** rng.randint(0, 6))
        delta = rng.choice(["0", "0.0000001", "0.0000005", "0.000001", "0.000003", "0.01", "1"])
        other = value + Decimal(delta) * rng.choice([1, -1])
        reference, answer = f"{value}", f"{other}"
        fast = fast_verdict(reference, answer)
        if fast is not None:
            assert fast[1] == math_verify_alone(reference, answer), (reference, answer)


@pytest.mark.parametrize(
    "text",
    ["1/2", "\\frac{1}{2}", "10%", "28 apples", "+5", "1e3", "12,5", "0,123", "28.", ".5",
     "1234567890123", "\\boxed{\\frac{1}{2}}", "", "x"],
)  # fmt: skip
def test_non_plain_numbers_leave_the_fast_path(text: str) -> None:
    assert plain_number(text) is None


@pytest.mark.parametrize(
    ("reference", "answer", "reward"),
    [
        ("28", "28", 1.0),
        ("28", "\\boxed{28}", 1.0),
        ("28", "The answer is 28.", 1.0),
        ("28", "28 apples", 1.0),
        ("1000", "1,000", 1.0),
        ("0.5", "\\frac{1}{2}", 1.0),
        ("\\frac{1}{2}", "0.5", 1.0),
        ("\\dfrac{3}{4}", "3/4", 1.0),
        ("2^{10}", "1024", 1.0),
        ("\\sqrt{2}", "1.414214", 1.0),
        ("1/3", "0.333333", 1.0),
        ("10%", "0.1", 1.0),
        ("5", "x = 5", 1.0),
        ("-3", "-3", 1.0),
        ("28", "27", 0.0),
        ("28", "-28", 0.0),
        ("28", "28.5", 0.0),
        ("28", "twenty-eight", 0.0),
        ("28", "", 0.0),
        ("\\frac{1}{2}", "\\frac{1}{3}", 0.0),
    ],
)
def test_grades_the_answer_tag_against_the_reference(
    reference: str, answer: str, reward: float
) -> None:
    result = grade(
        SPEC, f"<think>work</think><answer>{answer}</answer>", {"reference_answer": reference}
    )
    assert result.reward == reward
    assert not result.errors.any()


def test_whole_output_is_the_answer_without_tags() -> None:
    assert grade(SPEC, "I computed it: \\boxed{28}", {"reference_answer": "28"}).reward == 1.0


def test_numeric_reference_in_the_dataset_row_works() -> None:
    assert grade(SPEC, "<answer>28</answer>", {"reference_answer": 28}).reward == 1.0


def test_reference_without_math_is_flagged() -> None:
    result = grade(SPEC, "<answer>Paris</answer>", {"reference_answer": "Paris"})
    assert result.reward == 0.0
    assert result.errors.other_error
    assert "string_check" in (result.errors.other_error_details or "")


def test_missing_reference_field_is_flagged_not_raised() -> None:
    result = grade(SPEC, "<answer>28</answer>", {"answer": "28"})
    assert result.reward == 0.0
    assert result.errors.invalid_variable_error


def test_custom_templates() -> None:
    spec = load_grader(
        {"type": "math_accuracy", "name": "m", "input": "{{ sample.output_text }}",
         "reference": "{{ item.solution.value }}"}
    )  # fmt: skip
    assert grade(spec, "$\\frac{6}{8}$", {"solution": {"value": "0.75"}}).reward == 1.0


def test_batch_shares_the_parsed_reference() -> None:
    candidates.cache_clear()
    answers = ["\\frac{1}{2}", "0.5", "1/2", "\\frac{2}{4}", "0.6"]
    results = grade_batch(SPEC, answers, [{"reference_answer": "\\dfrac{1}{2}"}] * len(answers))
    assert [r.reward for r in results] == [1.0, 1.0, 1.0, 1.0, 0.0]
    info = candidates.cache_info()
    assert info.misses <= len(answers) + 1  # the reference was parsed once


def test_off_main_thread_the_helper_process_decides_and_bounds_time() -> None:
    found: list[tuple[object, ...]] = []

    def run() -> None:
        found.append((verdict("\\dfrac{3}{4}", "0.75"), verdict("\\sqrt{2}", "1.5")))
        # sympy would compute 10^(10^10) forever; math-verify's 5 s alarm works in the helper
        found.append((verdict("10^{10^{10}}", "5"),))
        results: list[GradeResult] = grade_batch(
            SPEC, [Sample.from_text("<answer>3/4</answer>")], [{"reference_answer": "0.75"}]
        )
        found.append((results[0].reward,))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert found == [((True, True), (True, False)), ((True, False),), (1.0,)]
