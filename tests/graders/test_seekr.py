import re
from pathlib import Path
from typing import Any

import pytest

from openrft.errors import SpecError
from openrft.graders import grade, grade_batch, load_grader, load_grader_file
from openrft.graders.spec import (
    FormatCheckGrader,
    MathAccuracyGrader,
    MultiGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "graders"
M = {"type": "math_accuracy"}
S = {"type": "string_check", "operation": "equals"}
T = {"type": "text_similarity", "operation": "bleu"}
L = {"type": "llm"}


def w(grader: dict[str, Any], weight: float) -> dict[str, Any]:
    return {**grader, "weight": weight}


def compile_(components: dict[str, Any]) -> MultiGrader:
    spec = load_grader({"reward_components": components})
    assert isinstance(spec, MultiGrader)
    return spec


def weights(spec: MultiGrader) -> tuple[float, list[float]]:
    terms = [float(x) for x in re.findall(r"(\S+) \* \w+", spec.calculate_output)]
    return terms[0], terms[1:]


def problems(components: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_grader({"reward_components": components})
    return [str(p) for p in info.value.problems]


# Expected weights computed by seekrai 0.35.1's own `RewardComponents` on the same input.
SEEKRAI = [
    ({"graders": [M]}, 0.1, [0.9]),
    ({"graders": [M, S, T]}, 0.1, [0.3, 0.3, 0.3]),
    ({"graders": [M, S, T, L]}, 0.1, [0.225, 0.225, 0.225, 0.225]),
    ({"format_reward_weight": 0.2, "graders": [M, S]}, 0.2, [0.4, 0.4]),
    ({"format_reward_weight": 1 / 3, "graders": [M, S, T]}, 1 / 3, [0.22222222222222224] * 3),
    ({"format_reward_weight": 1.0, "graders": [M, S]}, 1.0, [0.0, 0.0]),
    ({"graders": [w(M, 1.0)]}, 0.1, [0.9]),
    ({"graders": [w(M, 0.5), w(S, 0.5)]}, 0.1, [0.45, 0.45]),
    ({"graders": [w(M, 0.6), w(S, 0.3)]}, 0.1, [0.6, 0.3]),
    ({"graders": [w(M, 0.7), w(S, 0.1), w(T, 0.1)]}, 0.1, [0.7, 0.1, 0.1]),
    (
        {"graders": [w(M, 0.3), w(S, 0.2), w(T, 0.05)]},
        0.1,
        [0.49090909090909085, 0.32727272727272727, 0.08181818181818182],
    ),
    ({"format_reward_weight": 0.1, "graders": [w(M, 0.6), w(S, 0.3)]}, 0.1, [0.6, 0.3]),
    ({"format_reward_weight": 0.2, "graders": [w(M, 0.5), w(S, 0.2), w(T, 0.1)]}, 0.2,
     [0.5, 0.2, 0.1]),
    ({"format_reward_weight": 0.1, "graders": [w(M, 0.1), w(S, 0.2), w(T, 0.3), w(L, 0.3)]}, 0.1,
     [0.1, 0.2, 0.3, 0.3]),
]  # fmt: skip


@pytest.mark.parametrize(("components", "format_weight", "grader_weights"), SEEKRAI)
def test_weights_match_seekrai_bit_for_bit(
    components: dict[str, Any], format_weight: float, grader_weights: list[float]
) -> None:
    assert weights(compile_(components)) == (format_weight, grader_weights)


def test_default_format_weight_is_a_tenth_and_no_weights_split_equally() -> None:
    spec = compile_({"graders": [M, S]})
    assert (
        spec.calculate_output == "0.1 * format + 0.45 * math_accuracy + 0.45 * string_check_equals"
    )


def test_explicit_weights_without_format_weight_are_rescaled_to_fill_the_rest() -> None:
    assert weights(compile_({"graders": [w(M, 0.8), w(S, 0.8)]})) == (0.1, [0.45, 0.45])


def test_explicit_weights_with_explicit_format_weight_are_kept() -> None:
    spec = compile_({"format_reward_weight": 0.3, "graders": [w(M, 0.5), w(S, 0.2)]})
    assert weights(spec) == (0.3, [0.5, 0.2])


def test_explicit_weights_that_do_not_sum_to_one_are_an_error() -> None:
    found = problems({"format_reward_weight": 0.2, "graders": [w(M, 0.5), w(S, 0.5)]})
    assert found == [
        "$.reward_components: format_reward_weight 0.2 + grader weights 0.5 + 0.5 = 1.2, but "
        "with every weight given they must sum to 1.0; fix the weights, or drop "
        "format_reward_weight to have the grader weights rescaled to fill 0.9"
    ]


def test_an_explicit_default_format_weight_still_counts_as_given() -> None:
    # seekrai checks whether the field was set, not whether it differs from 0.1
    assert problems({"format_reward_weight": 0.1, "graders": [w(M, 0.5), w(S, 0.5)]})


def test_some_but_not_all_weights_is_an_error() -> None:
    found = problems({"graders": [w(M, 0.5), S, T]})
    assert found == [
        "$.reward_components.graders: only some graders have a weight (graders[1], graders[2] "
        "have none); give every grader a weight, or none to split the reward equally"
    ]


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.5, "zero", None, True])
def test_format_weight_must_be_in_zero_one(value: Any) -> None:
    found = problems({"format_reward_weight": value, "graders": [M]})
    assert len(found) == 1
    assert found[0].startswith("$.reward_components.format_reward_weight: must be")


def test_a_number_in_a_string_is_accepted_like_seekrai_does() -> None:
    assert weights(compile_({"format_reward_weight": "0.2", "graders": [M]})) == (0.2, [0.8])


def test_zero_format_weight_says_what_to_do() -> None:
    assert (
        "write an OpenAI `multi` grader" in problems({"format_reward_weight": 0, "graders": [M]})[0]
    )


@pytest.mark.parametrize("value", [0, -1, 1.01])
def test_grader_weight_must_be_in_zero_one(value: float) -> None:
    found = problems({"graders": [w(M, value)]})
    assert found == [
        f"$.reward_components.graders[0].weight: weight must be > 0 and ≤ 1 (seekrai's rule), "
        f"got {float(value)}"
    ]


def test_every_problem_is_listed_at_once() -> None:
    found = problems(
        {
            "format_reward_weight": 2,
            "grader": [],
            "graders": [
                {"type": "math_acuracy", "weight": 0.5},
                {"type": "string_check", "weight": 0.5},
                {"type": "text_similarity", "operation": "rouge2"},
                {"type": "llm", "temperature": 2, "wieght": 0.1},
            ],
        }
    )
    assert found == [
        "$.reward_components.grader: unknown key 'grader' (did you mean 'graders'?); remove it "
        "or fix its name (allowed: format_reward_weight, graders)",
        "$.reward_components.format_reward_weight: must be > 0 and ≤ 1, got 2 (seekrai rejects "
        "0: to grade without a format reward, write an OpenAI `multi` grader)",
        "$.reward_components.graders[0].type: unknown grader type 'math_acuracy' (did you mean "
        "'math_accuracy'?); use one of format_check, math_accuracy, string_check, "
        "text_similarity, llm",
        "$.reward_components.graders[1].operation: required key 'operation' is missing; add it",
        "$.reward_components.graders[2].operation: must be 'bleu' or 'rouge'",
        "$.reward_components.graders[3].wieght: unknown key 'wieght' (did you mean 'weight'?); "
        "remove it or fix its name (allowed: max_completion_tokens, model, seed, temperature, "
        "top_p, type, weight)",
        "$.reward_components.graders: only some graders have a weight (graders[2], graders[3] "
        "have none); give every grader a weight, or none to split the reward equally",
    ]


@pytest.mark.parametrize("graders", [[], None, "math_accuracy", [3]])
def test_graders_must_be_a_non_empty_list_of_objects(graders: Any) -> None:
    assert len(problems({"graders": graders})) == 1


def test_types_and_operations_ignore_case() -> None:
    spec = compile_({"graders": [{"type": "MATH_ACCURACY"},
                                 {"type": "String_Check", "operation": "CONTAINS"}]})  # fmt: skip
    assert list(spec.graders) == ["format", "math_accuracy", "string_check_contains"]


def test_legacy_operation_and_config_keys_are_ignored_like_seekrai_does() -> None:
    spec = compile_({"graders": [{"type": "math_accuracy", "operation": None},
                                 {"type": "format_check", "config": {"x": 1}}]})  # fmt: skip
    assert list(spec.graders) == ["format", "math_accuracy", "format_check"]


def test_null_reward_components_means_seekrai_default() -> None:
    spec = load_grader({"reward_components": None})
    assert isinstance(spec, MultiGrader)
    assert spec.calculate_output == "0.1 * format + 0.9 * math_accuracy"


def test_a_whole_seekrai_training_config_is_accepted() -> None:
    config = {"training_files": ["file-1"], "model": "m", "n_epochs": 1,
              "fine_tune_type": "REINFORCEMENT", "reward_components": {"graders": [M]}}  # fmt: skip
    assert load_grader(config).type == "multi"


def test_compiled_graders_compare_the_answer_tag_with_the_reference() -> None:
    spec = compile_({"graders": [
        M, S, T, {"type": "text_similarity", "operation": "rouge"},
        {"type": "string_check", "operation": "not_equals"},
        {"type": "string_check", "operation": "case_insensitive_contains"},
        {"type": "string_check", "operation": "equals"}, {"type": "format_check"},
    ]})  # fmt: skip
    subs = spec.graders
    assert isinstance(subs["format"], FormatCheckGrader)
    assert subs["format"].input == "{{ sample.output_text }}"
    assert isinstance(subs["math_accuracy"], MathAccuracyGrader)
    assert subs["math_accuracy"].input == "{{ sample.output_answer }}"
    assert subs["math_accuracy"].reference == "{{ item.reference_answer }}"
    ops = {k: g.operation for k, g in subs.items() if isinstance(g, StringCheckGrader)}
    assert ops == {
        "string_check_equals": "eq",
        "string_check_not_equals": "ne",
        "string_check_case_insensitive_contains": "ilike",
        "string_check_equals_2": "eq",
    }
    metrics = {
        k: g.evaluation_metric for k, g in subs.items() if isinstance(g, TextSimilarityGrader)
    }
    assert metrics == {"text_similarity_bleu": "bleu", "text_similarity_rouge": "rouge_l"}
    assert all(g.input == "{{ sample.output_answer }}" for g in subs.values()
               if isinstance(g, StringCheckGrader | TextSimilarityGrader))  # fmt: skip
    assert isinstance(subs["format_check"], FormatCheckGrader)


def test_llm_compiles_to_a_score_model_judge() -> None:
    spec = compile_({"graders": [{"type": "llm", "seed": 3, "top_p": 0.9, "temperature": 0.2,
                                  "max_completion_tokens": 64}]})  # fmt: skip
    judge = spec.graders["llm"]
    assert isinstance(judge, ScoreModelGrader)
    assert judge.model == "seekr-llm-judge"
    assert judge.range == [0.0, 1.0]
    params = judge.sampling_params
    assert params is not None
    assert (params.seed, params.top_p, params.temperature, params.max_completions_tokens) == (
        3, 0.9, 0.2, 64)  # fmt: skip
    user = judge.input[-1].content
    assert isinstance(user, str)
    assert "{{ item.reference_answer }}" in user
    assert "{{ sample.output_answer }}" in user


def test_llm_defaults_and_limits_follow_seekrai() -> None:
    judge = compile_({"graders": [L]}).graders["llm"]
    assert isinstance(judge, ScoreModelGrader)
    assert judge.sampling_params is not None
    assert judge.sampling_params.temperature == 0.0
    assert judge.sampling_params.max_completions_tokens == 512
    found = problems({"graders": [{"type": "llm", "temperature": 1.6, "seed": -1,
                                   "max_completion_tokens": 0, "model": "my-judge"}]})  # fmt: skip
    assert [p.split(":")[0] for p in found] == [
        "$.reward_components.graders[0].seed",
        "$.reward_components.graders[0].temperature",
        "$.reward_components.graders[0].max_completion_tokens",
    ]


def test_grades_end_to_end_as_a_weighted_sum() -> None:
    spec = compile_({"format_reward_weight": 0.2,
                     "graders": [w(M, 0.5), {"type": "string_check", "operation": "contains",
                                            "weight": 0.3}]})  # fmt: skip
    item = {"reference_answer": "1000"}
    outputs = [
        "<think>10^3</think><answer>1000</answer>",  # all three
        "<think>10^3</think><answer>1,000</answer>",  # math-equal, not contained
        "the answer is 1000",  # no format; whole output is the answer
        "<think>hmm</think><answer>999</answer>",  # format only
        "",
    ]
    results = grade_batch(spec, outputs, [item] * len(outputs))
    assert [r.reward for r in results] == pytest.approx([1.0, 0.7, 0.8, 0.2, 0.0])
    assert results[1].sub_rewards == {"format": 1.0, "math_accuracy": 1.0,
                                      "string_check_contains": 0.0}  # fmt: skip
    assert all(not r.errors.any() for r in results)


def test_text_similarity_grades_end_to_end() -> None:
    spec = compile_({"graders": [{"type": "text_similarity", "operation": "rouge"}]})
    result = grade(spec, "<think>x</think><answer>the cat sat</answer>",
                   {"reference_answer": "the cat sat"})  # fmt: skip
    assert result.reward == pytest.approx(1.0)


def test_example_file_loads_and_runs() -> None:
    spec = load_grader_file(EXAMPLES / "seekr_math.yaml")
    assert isinstance(spec, MultiGrader)
    assert spec.calculate_output == "0.1 * format + 0.8 * math_accuracy + 0.1 * string_check_equals"
    item = {"reference_answer": "42"}
    sample = (EXAMPLES / "sample.txt").read_text()
    assert grade(spec, sample, item).reward == pytest.approx(1.0)
    assert grade(
        spec, "<think>x</think><answer>\\boxed{42}</answer>", item
    ).reward == pytest.approx(0.9)
    assert grade(spec, "42", item).reward == pytest.approx(0.9)
    assert grade(spec, "<think>x</think><answer>41</answer>", item).reward == pytest.approx(0.1)
