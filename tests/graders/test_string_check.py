import pytest

from openrft.graders import Grader, grade, load_grader


def check(operation: str) -> Grader:
    return load_grader(
        {
            "type": "string_check",
            "name": "s",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.reference_answer }}",
            "operation": operation,
        }
    )


@pytest.mark.parametrize(
    ("operation", "output", "reference", "reward"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "paris", "Paris", 0.0),
        ("eq", "", "", 1.0),
        ("ne", "Lyon", "Paris", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("neq", "Lyon", "Paris", 1.0),
        ("like", "The capital is Paris.", "Paris", 1.0),
        ("like", "The capital is paris.", "Paris", 0.0),
        ("ilike", "THE CAPITAL IS PARIS", "paris", 1.0),
        ("ilike", "Straße", "STRASSE", 1.0),
        # empty input or reference never passes a containment check
        ("like", "", "Paris", 0.0),
        ("like", "anything", "", 0.0),
        ("ilike", "", "", 0.0),
    ],
)
def test_operations(operation: str, output: str, reference: str, reward: float) -> None:
    result = grade(check(operation), output, {"reference_answer": reference})
    assert result.reward == reward
    assert not result.errors.any()
    assert result.metadata.type == "string_check"


def test_missing_reference_is_invalid_variable_error_not_crash() -> None:
    result = grade(check("eq"), "x", {"other": 1})
    assert result.reward == 0.0
    assert result.errors.invalid_variable_error
    assert (
        result.errors.invalid_variable_error_details
        == "`item.reference_answer` does not exist in this item"
    )
    assert result.errors.flags() == ["invalid_variable_error"]


def test_non_string_reference_renders_as_json() -> None:
    assert grade(check("eq"), "42", {"reference_answer": 42}).reward == 1.0
