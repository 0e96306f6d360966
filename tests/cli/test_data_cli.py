import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openrft.cli.data import app

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"
runner = CliRunner()


def test_clean_file_exits_0_with_statistics() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLES / "arithmetic.jsonl")])
    assert result.exit_code == 0, result.output
    assert "11 of 11" in result.stdout
    assert "prompt characters (min / median / max)" in result.stdout
    assert "No problems found." in result.stdout


def test_broken_file_prints_every_problem_and_exits_2() -> None:
    path = EXAMPLES / "broken.jsonl"
    result = runner.invoke(app, ["validate", str(path), "--grader", str(EXAMPLES / "grader.yaml")])
    assert result.exit_code == 2
    lines = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert [line.split(":")[1] for line in lines] == [str(n) for n in (*range(2, 10), 11)]
    assert f"{path}:9: grader 'correct' reads `item.reference_answer`" in result.stdout
    assert f"warning: {path}: 1 of 3 rows repeats an earlier row (line 10 repeats" in result.stdout
    assert "9 problem(s)." in result.stdout


def test_json_report() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLES / "broken.jsonl"), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert (report["rows"], report["lines"]) == (3, 11)
    assert len(report["problems"]) == 8  # no --grader: the missing-field check is off
    assert report["duplicate_rows"] == 1  # line 10 repeats line 1: a warning
    assert report["prompt_length"]["unit"] == "characters"


def test_bad_grader_spec_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "g.json"
    spec.write_text(json.dumps({"type": "string_check", "name": "x"}))
    result = runner.invoke(
        app, ["validate", str(EXAMPLES / "arithmetic.jsonl"), "--grader", str(spec)]
    )
    assert result.exit_code == 2
    assert "required key 'input' is missing" in result.stderr


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from openrft.training.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_model_counts_tokens_and_flags_long_prompts(tiny_model: Path) -> None:
    args = ["validate", str(EXAMPLES / "arithmetic.jsonl"), "--model", str(tiny_model)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output  # context 512: every prompt fits
    assert "prompt tokens (min / median / max)" in result.stdout
    limited = runner.invoke(app, [*args, "--max-prompt-tokens", "60", "--json"])
    assert limited.exit_code == 2
    (problem,) = json.loads(limited.stdout)["problems"]
    assert problem["where"].endswith("arithmetic.jsonl:11")  # the multi-turn row
    assert "over the model's limit of 60" in problem["message"]
