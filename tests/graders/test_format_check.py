import pytest

from openrft.graders import grade, grade_batch, load_grader
from openrft.graders.format_check import is_well_formatted

WELL_FORMED = [
    "<think>4 times 7</think><answer>28</answer>",
    "<think> reasoning process here </think><answer> answer here </answer>",
    "<think>\nstep 1\nstep 2\n</think>\n<answer>\n28\n</answer>",
    "  \n<think>a</think>   <answer>b</answer>\n\n",
    "<think></think><answer>28</answer>",  # empty reasoning is still the format
    "<think>x < y and y > z</think><answer>x<z</answer>",  # other angle brackets are fine
]

MALFORMED = [
    "28",
    "",
    "<answer>28</answer>",
    "<think>only thinking</think>",
    "<answer>28</answer><think>late</think>",
    "<think>a</think>text between<answer>28</answer>",
    "preamble <think>a</think><answer>28</answer>",
    "<think>a</think><answer>28</answer> trailing words",
    "<think>a</think><answer>   </answer>",  # blank answer
    "<think>a</think><answer>1</answer><answer>2</answer>",
    "<think>a<think>b</think></think><answer>28</answer>",
    "<think>a <answer>27</answer></think><answer>28</answer>",
    "<think>a</think><answer>28",
    "<THINK>a</THINK><ANSWER>28</ANSWER>",  # tags are case-sensitive, as the prompt writes them
    "<think>a</think><answer>28</answer></answer>",
]


@pytest.mark.parametrize("text", WELL_FORMED)
def test_well_formed_outputs_pass(text: str) -> None:
    assert is_well_formatted(text)


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_outputs_fail(text: str) -> None:
    assert not is_well_formatted(text)


def test_grader_scores_the_whole_output_by_default() -> None:
    spec = load_grader({"type": "format_check"})
    results = grade_batch(spec, [WELL_FORMED[0], MALFORMED[0]], [{}, {}])
    assert [r.reward for r in results] == [1.0, 0.0]
    assert results[0].metadata.name == "format_check"
    assert results[0].metadata.type == "format_check"
    assert not results[0].errors.any()


def test_input_template_can_point_elsewhere() -> None:
    spec = load_grader({"type": "format_check", "name": "f", "input": "{{ item.transcript }}"})
    assert grade(spec, "anything", {"transcript": WELL_FORMED[1]}).reward == 1.0


def test_missing_template_variable_is_flagged_not_raised() -> None:
    spec = load_grader({"type": "format_check", "name": "f", "input": "{{ item.transcript }}"})
    result = grade(spec, WELL_FORMED[0], {})
    assert result.reward == 0.0
    assert result.errors.invalid_variable_error
