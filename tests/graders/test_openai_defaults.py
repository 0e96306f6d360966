"""What OpenAI accepted and OpenRFT used to refuse: graders without `name`, and `invalid_grade` /
`pass_threshold` on `multi` (its typos are still refused, with a hint)."""

from __future__ import annotations

from typing import Any

import pytest

from openrft.errors import SpecError
from openrft.graders import grade_batch, load_grader
from openrft.graders.spec import MultiGrader

EXACT = {"type": "string_check", "input": "{{ sample.output_text }}",
         "reference": "{{ item.answer }}", "operation": "eq"}  # fmt: skip


def multi(formula: str = "exact", **extra: Any) -> MultiGrader:
    spec = load_grader(
        {"type": "multi", "graders": {"exact": EXACT}, "calculate_output": formula, **extra}
    )
    assert isinstance(spec, MultiGrader)
    return spec


def problems(data: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_grader(data)
    return [str(p) for p in info.value.problems]


def test_a_grader_without_name_is_named_after_its_type() -> None:
    assert load_grader(EXACT).name == "string_check"
    assert load_grader({"type": "python", "source": "def grade(s, i):\n    return 1\n"}).name == (
        "python"
    )
    assert multi().name == "multi"


def test_a_sub_grader_without_name_is_named_after_its_key() -> None:
    loose = {**EXACT, "name": "contains", "operation": "like"}
    spec = multi(graders={"exact": EXACT, "loose": loose}, calculate_output="exact + loose")
    assert {key: sub.name for key, sub in spec.graders.items()} == {
        "exact": "exact",
        "loose": "contains",  # a name given is kept; the formula still uses the key
    }
    result = grade_batch(spec, ["it is 42"], [{"answer": "42"}])[0]
    assert result.sub_rewards == {"exact": 0.0, "loose": 1.0}


def test_the_sdk_single_grader_form_without_name_is_keyed_by_type() -> None:
    spec = load_grader({"type": "multi", "graders": EXACT, "calculate_output": "string_check"})
    assert isinstance(spec, MultiGrader)
    assert list(spec.graders) == ["string_check"]


def test_invalid_grade_replaces_a_failed_formula() -> None:
    spec = multi("log(exact)", invalid_grade=-1)
    results = grade_batch(spec, ["1", "42"], [{"answer": "42"}] * 2)
    assert results.rewards == [-1.0, 0.0]  # log(0) failed; log(1) is 0
    assert results[0].errors.formula_parse_error
    assert not results[1].errors.any()


def test_invalid_grade_replaces_a_failed_sub_grader() -> None:
    spec = multi("exact + 0.5", invalid_grade=0.25)
    results = grade_batch(spec, ["42", "42"], [{"answer": "42"}, {"nope": 1}])
    assert results.rewards == [1.5, 0.25]
    assert [r.reward for r in results] == [1.5, 0.25]
    assert results[1].errors.invalid_variable_error


def test_without_invalid_grade_failures_score_as_before() -> None:
    results = grade_batch(multi("exact + 0.5"), ["42"], [{"nope": 1}])
    assert results.rewards == [0.5]  # the failed sub-grader counts 0 in the formula


def test_pass_threshold_sets_passed_on_the_final_reward() -> None:
    spec = multi("exact", pass_threshold=1, invalid_grade=0)
    results = grade_batch(spec, ["42", "41", "42"], [{"answer": "42"}] * 2 + [{"nope": 1}])
    assert [r.metadata.scores["passed"] for r in results] == [True, False, False]
    assert results[0].metadata.scores["exact"] == {}
    assert "passed" not in grade_batch(multi(), ["42"], [{"answer": "42"}])[0].metadata.scores


def test_typos_of_the_new_keys_are_still_refused_with_a_hint() -> None:
    found = problems({"type": "multi", "graders": {"exact": EXACT}, "calculate_output": "exact",
                      "invalid_grades": 0, "pass_treshold": 1})  # fmt: skip
    assert any("'invalid_grades'" in p and "did you mean 'invalid_grade'" in p for p in found)
    assert any("'pass_treshold'" in p and "did you mean 'pass_threshold'" in p for p in found)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1e7])
def test_invalid_grade_must_be_a_usable_reward(bad: float) -> None:
    assert problems({"type": "multi", "graders": {"exact": EXACT}, "calculate_output": "exact",
                     "invalid_grade": bad})  # fmt: skip


def test_a_sub_grader_keyed_passed_clashes_with_pass_threshold() -> None:
    found = problems({"type": "multi", "graders": {"passed": EXACT}, "calculate_output": "passed",
                      "pass_threshold": 1})  # fmt: skip
    assert any("clashes with pass_threshold" in p for p in found)
