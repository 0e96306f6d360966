import pytest

from openrft.errors import SpecError
from openrft.graders import load_grader
from openrft.graders.spec import MultiGrader, StringCheckGrader

STRING = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}


def problems(data: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_grader(data)
    return [str(p) for p in info.value.problems]


def test_neq_is_accepted_as_ne() -> None:
    spec = load_grader({**STRING, "operation": "neq"})
    assert isinstance(spec, StringCheckGrader)
    assert spec.operation == "ne"


def test_multi_accepts_dict_of_graders_and_single_grader() -> None:
    documented = load_grader(
        {"type": "multi", "name": "m", "graders": {"x": STRING}, "calculate_output": "x"}
    )
    sdk = load_grader(
        {"type": "multi", "name": "m", "graders": STRING, "calculate_output": "exact"}
    )
    assert isinstance(documented, MultiGrader)
    assert isinstance(sdk, MultiGrader)
    assert list(sdk.graders) == ["exact"]


def test_job_body_grader_key_is_unwrapped() -> None:
    assert isinstance(load_grader({"grader": STRING}), StringCheckGrader)


def test_every_problem_is_reported_with_its_json_path() -> None:
    found = problems(
        {
            "type": "multi",
            "name": "m",
            "graders": {
                "a": {"type": "string_chek", "name": "a"},
                "b": {**STRING, "operaton": "eq"},
                "c": {"type": "text_similarity", "name": "c", "input": "x", "reference": "y",
                      "evaluation_metric": "rouge_9"},
            },
            "calculate_output": "a + b",
        }
    )  # fmt: skip
    assert any(p.startswith("$.graders.a:") and "did you mean 'string_check'" in p for p in found)
    assert any(
        p.startswith("$.graders.b.operaton:") and "did you mean 'operation'" in p for p in found
    )
    assert any(p.startswith("$.graders.c.evaluation_metric:") and "rouge_l" in p for p in found)


def test_formula_problems_point_at_calculate_output() -> None:
    found = problems(
        {"type": "multi", "name": "m", "graders": {"x": STRING}, "calculate_output": "x + y"}
    )
    assert found == [
        "$.calculate_output: formula_parse_error: 'x + y' uses 'y', which is not a sub-grader; "
        "the names are: x"
    ]


def test_bad_template_is_a_spec_error() -> None:
    found = problems({**STRING, "input": "{{ output_text }}"})
    assert found[0].startswith("$.input:")
    assert "only `sample` and `item`" in found[0]


def test_label_model_passing_labels_must_be_labels() -> None:
    found = problems(
        {"type": "label_model", "name": "l", "model": "judge", "labels": ["good", "bad"],
         "passing_labels": ["great"],
         "input": [{"role": "user", "content": "{{ sample.output_text }}"}]}
    )  # fmt: skip
    assert "passing_labels ['great'] are not in labels" in found[0]


def test_score_model_range_and_sampling_params() -> None:
    spec = load_grader(
        {"type": "score_model", "name": "s", "model": "judge", "range": [1, 7],
         "input": [{"role": "system", "content": [{"type": "input_text", "text": "rate"}]}],
         "sampling_params": {"max_completion_tokens": 20, "temperature": 0}}
    )  # fmt: skip
    assert spec.sampling_params is not None
    assert spec.sampling_params.max_completions_tokens == 20
    assert "min < max" in problems({**spec.model_dump(), "range": [3, 1]})[0]


def test_python_grader_source_checks() -> None:
    base = {"type": "python", "name": "p"}
    assert "must define a top-level `def grade" in problems({**base, "source": "x = 1"})[0]
    assert "line 1" in problems({**base, "source": "def grade(:"})[0]
    assert "two arguments" in problems({**base, "source": "def grade(s):\n return 1"})[0]
    assert "limit is 262144" in problems({**base, "source": "#" * 300_000})[0]
    load_grader({**base, "source": "def grade(sample, item):\n    return 1.0\n"})


def test_endpoint_url_must_be_http() -> None:
    found = problems({"type": "endpoint", "name": "e", "url": "file:///etc/passwd"})
    assert "http(s) URL" in found[0]


def test_missing_type() -> None:
    assert "every grader needs a `type`" in problems({"name": "x"})[0]
