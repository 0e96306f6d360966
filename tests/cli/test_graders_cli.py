import json
from pathlib import Path

from typer.testing import CliRunner

from openrft.cli import app

EXAMPLES = Path(__file__).parents[2] / "examples" / "graders"
runner = CliRunner()


def test_validate_prints_normalized_json() -> None:
    result = runner.invoke(app, ["graders", "validate", str(EXAMPLES / "multi_answer.yaml")])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    assert spec["type"] == "multi"
    # defaults are filled in, so the normalized form says exactly what will run
    assert spec["graders"]["format"]["type"] == "format_check"
    assert spec["graders"]["format"]["input"] == "{{ sample.output_text }}"
    assert set(spec["graders"]) == {"correct", "format", "closeness"}


def test_validate_reports_every_problem_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"type": "multi", "name": "m", "calculate_output": "a + zz",
             "graders": {"a": {"type": "string_check", "name": "a", "input": "x",
                               "reference": "y", "operation": "equals"}}}
        )
    )  # fmt: skip
    result = runner.invoke(app, ["graders", "validate", str(bad)])
    assert result.exit_code == 2
    assert "$.graders.a.operation: must be 'eq', 'ne', 'like' or 'ilike'" in result.stderr


def test_validate_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: string_check\nname: [unclosed\n")
    result = runner.invoke(app, ["graders", "validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3" in result.stderr or f"{bad}:2" in result.stderr


def test_run_prints_openai_run_response() -> None:
    result = runner.invoke(
        app,
        [
            "graders", "run", str(EXAMPLES / "multi_answer.yaml"),
            "--sample", f"@{EXAMPLES / 'sample.txt'}", "--item", f"@{EXAMPLES / 'item.json'}",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)
    assert response["reward"] == 1.0
    assert response["sub_rewards"] == {"correct": 1.0, "format": 1.0, "closeness": 1.0}
    assert set(response["metadata"]) >= {"name", "type", "execution_time", "scores", "errors"}
    assert response["metadata"]["errors"]["invalid_variable_error"] is False


def test_run_with_bad_item_json_is_exit_2() -> None:
    result = runner.invoke(
        app,
        ["graders", "run", str(EXAMPLES / "contains_answer.json"), "--sample", "x", "--item", "{"],
    )
    assert result.exit_code == 2
    assert "invalid JSON" in result.stderr


def test_audit_flags_a_hackable_grader_with_exit_1() -> None:
    result = runner.invoke(
        app,
        [
            "graders", "audit", str(EXAMPLES / "contains_answer.json"),
            "--data", str(EXAMPLES / "arithmetic.jsonl"), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    flagged = {p["probe"] for p in report["probes"] if p["flagged"]}
    assert "all_references" in flagged
    assert "empty" not in flagged
    assert report["rows"] == 12


def test_audit_passes_a_sound_grader(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "graders", "audit", str(EXAMPLES / "multi_answer.yaml"),
            "--data", str(EXAMPLES / "arithmetic.jsonl"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "No probe earned a high reward." in result.stdout


def test_audit_bad_dataset_lists_lines_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    result = runner.invoke(
        app, ["graders", "audit", str(EXAMPLES / "contains_answer.json"), "--data", str(bad)]
    )
    assert result.exit_code == 2
    assert f"{bad}:1" in result.stderr
    assert f"{bad}:2" in result.stderr
