import pytest

from openrft.graders import Grader, grade, grade_batch, load_grader

EXACT = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
         "reference": "{{ item.answer }}", "operation": "eq"}  # fmt: skip
CONTAINS = {**EXACT, "name": "contains", "operation": "like"}


def multi(formula: str, **graders: dict[str, object]) -> Grader:
    return load_grader(
        {"type": "multi", "name": "m", "graders": graders, "calculate_output": formula}
    )


def test_combines_sub_rewards_with_formula() -> None:
    spec = multi("0.7 * exact + 0.3 * contains", exact=EXACT, contains=CONTAINS)
    results = grade_batch(spec, ["42", "it is 42", "no"], [{"answer": "42"}] * 3)
    assert [r.reward for r in results] == pytest.approx([1.0, 0.3, 0.0])
    assert results[1].sub_rewards == {"exact": 0.0, "contains": 1.0}
    assert results[1].metadata.type == "multi"
    assert set(results[1].metadata.scores) == {"exact", "contains"}


def test_nested_multi() -> None:
    inner = {"type": "multi", "name": "inner", "graders": {"e": EXACT}, "calculate_output": "e * 2"}
    spec = multi("inner / 4 + 0.5", inner=inner)
    assert grade(spec, "42", {"answer": "42"}).reward == 1.0


def test_sub_grader_error_flags_carry_up() -> None:
    spec = multi("exact + contains", exact=EXACT, contains=CONTAINS)
    result = grade(spec, "42", {"nope": 1})
    assert result.errors.invalid_variable_error
    assert result.reward == 0.0


def test_runtime_formula_error_scores_zero_with_flag() -> None:
    spec = multi("log(exact)", exact=EXACT)
    wrong, right = grade_batch(spec, ["1", "42"], [{"answer": "42"}] * 2)
    assert wrong.reward == 0.0
    assert wrong.errors.formula_parse_error
    assert right.reward == 0.0
    assert not right.errors.any()


def test_reward_column_matches_the_built_results() -> None:
    """`rewards` is computed from the sub-graders' columns without building results; the
    failures (a missing variable, a formula error) are known without building the rest."""
    similar = {"type": "text_similarity", "name": "sim", "input": "{{ sample.output_text }}",
               "reference": "{{ item.answer }}", "evaluation_metric": "rouge_l"}  # fmt: skip
    spec = multi("log(exact + sim)", exact=EXACT, sim=similar)
    outputs = ["42", "it is 42", "no", "42 42"]
    items = [{"answer": "42"}, {"answer": "42"}, {"answer": "42"}, {"nope": 1}]
    results = grade_batch(spec, outputs, items)
    rewards = results.rewards
    assert [(i, r.errors.flags()) for i, r in results.failures()] == [
        (2, ["formula_parse_error"]),  # log(0)
        (3, ["formula_parse_error", "invalid_variable_error"]),
    ]
    assert rewards == [r.reward for r in results]
    assert rewards[0] == pytest.approx(0.6931471805599453)  # log(1 + 1)
    assert results[1].sub_rewards == {"exact": 0.0, "sim": pytest.approx(2 / 4)}


def test_a_sub_graders_error_details_name_it() -> None:
    from openrft.graders.python_grader import describe_failure

    spec = multi("exact + contains", exact=EXACT, contains=CONTAINS)
    result = grade(spec, "42", {"nope": 1})
    details = result.errors.invalid_variable_error_details
    assert details is not None
    assert details.startswith("grader `exact`: ")  # the first sub-grader that failed
    shown = describe_failure(result)
    assert shown.startswith("[m: invalid_variable_error]\ngrader `exact`: ")
