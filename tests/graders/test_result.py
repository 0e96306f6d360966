"""`GradeResults`: rewards without building results, results built once on access."""

import json

from openrft.graders import GradeResult, GradeResults, grade_batch, load_grader

SIMILARITY = {
    "type": "text_similarity",
    "name": "sim",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "evaluation_metric": "fuzzy_match",
    "pass_threshold": 0.5,
}


def lazy(rewards: list[float]) -> tuple[GradeResults, list[int]]:
    built: list[int] = []

    def make(i: int) -> GradeResult:
        built.append(i)
        return GradeResult.of("g", "string_check", rewards[i])

    failed = GradeResult.failed("g", "string_check", "invalid_variable_error", "`item.x` …")
    return GradeResults(list(rewards), make, {1: failed}), built


def test_rewards_and_failures_build_nothing() -> None:
    results, built = lazy([0.5, 0.0, 1.0])
    assert results.rewards == [0.5, 0.0, 1.0]
    assert [(i, r.errors.flags()) for i, r in results.failures()] == [
        (1, ["invalid_variable_error"])
    ]
    assert built == []


def test_results_are_built_once_and_keep_changes() -> None:
    results, built = lazy([0.5, 0.0, 1.0])
    results.set_execution_time(0.25)
    first = results[0]
    first.metadata.scores["note"] = "kept"
    assert results[0] is first
    assert results[0].metadata.scores == {"note": "kept"}
    assert results[-1].reward == 1.0
    assert results[0].metadata.execution_time == 0.25
    assert built == [0, 2]
    assert [r.reward for r in results] == [0.5, 0.0, 1.0]
    assert results[1:] == [results[1], results[2]]
    assert len(results + [first]) == 4  # noqa: RUF005  # `+` with a list, as on a list


def test_setting_a_result_replaces_its_reward() -> None:
    results, _ = lazy([0.5, 0.0, 1.0])
    results[2] = GradeResult.failed("g", "string_check", "sample_parse_error")
    assert results.rewards == [0.5, 0.0, 0.0]
    assert [i for i, _ in results.failures()] == [1, 2]


def test_of_wraps_built_results_and_equals_a_list() -> None:
    built = [GradeResult.of("g", "python", 0.25), GradeResult.of("g", "python", 0.75)]
    results = GradeResults.of(built)
    assert results == built
    assert results.rewards == [0.25, 0.75]
    assert GradeResults.of(results) is results
    assert GradeResults.of([]).rewards == []


def test_lazy_batch_serializes_like_built_results() -> None:
    """A text_similarity batch built on access dumps exactly as a result built eagerly."""
    spec = load_grader(SIMILARITY)
    items = [{"reference_answer": "the cat sat"}, {"other": 1}, {"reference_answer": "a dog"}]
    results = grade_batch(spec, ["the cat sat", "x", "the cat sat"], items)
    assert results.rewards[:2] == [1.0, 0.0]
    assert [i for i, _ in results.failures()] == [1]
    dumped = [json.loads(r.model_dump_json()) for r in results]
    assert dumped[0]["metadata"]["scores"] == {"passed": True}
    assert dumped[2]["metadata"]["scores"] == {"passed": False}
    assert dumped[1]["metadata"]["errors"]["invalid_variable_error"] is True
    assert all(d["metadata"]["execution_time"] > 0 for d in dumped)
    eager = GradeResult.of("sim", "text_similarity", 1.0, passed=True)
    eager.metadata.execution_time = results[0].metadata.execution_time
    assert results[0] == eager
