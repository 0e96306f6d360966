"""The pre-flight: sampled on the tiny random model with graders whose variance we control, and
judged directly on hand-written samples (the README's "1 + 5 = 6" case)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from openrft.cli import train as train_cli
from openrft.cli.exits import Group
from openrft.training.grpo import run
from openrft.training.preflight import PreflightError, Sampled, judge, summary
from openrft.training.rundir import CHECKPOINTS, METRICS, PREFLIGHT, read_error, read_preflight

NEVER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}
"""A random model never writes exactly the sum: every reward 0."""
ALWAYS = {**NEVER, "name": "always", "reference": "never said", "operation": "ne"}
"""Every reward 1."""
HAS_E = {**NEVER, "name": "has_e", "reference": "e", "operation": "like"}
"""About a quarter of random 8-token completions contain an `e`: most groups of 4 differ."""

app = typer.Typer(cls=Group)  # the CLI's entry point: errors become exit codes there
app.command()(train_cli.train)
app.command()(train_cli.export)


def small(**overrides: Any) -> dict[str, Any]:
    return {"preflight": {"enabled": True, "prompts": 8}, **overrides}


def test_a_grader_without_variance_fails_before_training_with_advice(
    make_config: Any, tmp_path: Path
) -> None:
    with pytest.raises(PreflightError) as caught:
        run(make_config(**small(grader=NEVER)), tmp_path)
    message = str(caught.value)
    assert "0 of 8 groups (0%) have rewards that differ" in message
    assert "`eq` never matches" in message
    assert "`like`" in message
    assert "sft_warmup" in message
    assert message.count("  sample: ") == 2
    assert "reference: " in message
    error = read_error(tmp_path)
    assert error is not None
    assert (error["code"], error["param"], error["type"]) == (
        "preflight_failed",
        "preflight",
        "PreflightError",
    )
    assert error["message"] == message
    report = read_preflight(tmp_path)
    assert report is not None
    assert report["passed"] is False
    assert report["zero_variance_share"] == 1.0
    assert report["samples"] == 8 * 4
    assert report["reward"]["max"] == 0.0
    # training never started
    assert not (tmp_path / METRICS).exists()
    assert not (tmp_path / CHECKPOINTS).exists()


def test_a_grader_with_variance_passes_and_the_run_trains(make_config: Any, tmp_path: Path) -> None:
    result = run(make_config(**small(grader=HAS_E, max_steps=1)), tmp_path)
    assert result.steps == 1
    report = read_preflight(tmp_path)
    assert report is not None
    assert report["passed"] is True
    assert report["forced"] is False
    assert report["signal_share"] >= report["min_signal_share"] == 0.1
    assert report["groups_with_signal"] == round(report["signal_share"] * 8)
    assert sum(b["count"] for b in report["reward"]["histogram"]) == report["samples"] == 32
    assert 0.0 < report["reward"]["mean"] < 1.0
    assert len(report["examples"]) == 2
    assert len(report["slowest"]) == 3
    # the completions were cut at max_completion_length (8 tokens of a random model)
    assert report["truncated_share"] > 0.5
    assert any("max_completion_length" in tip for tip in report["advice"])


def test_every_sample_scoring_the_top_says_the_task_is_too_easy(
    make_config: Any, tmp_path: Path
) -> None:
    with pytest.raises(PreflightError, match="too easy"):
        run(make_config(**small(grader=ALWAYS)), tmp_path)


def test_force_trains_anyway_and_keeps_the_report(make_config: Any, tmp_path: Path) -> None:
    config = make_config(preflight={"prompts": 4, "force": True}, grader=NEVER, max_steps=1)
    result = run(config, tmp_path)
    assert result.steps == 1
    report = read_preflight(tmp_path)
    assert report is not None
    assert report["passed"] is False
    assert report["forced"] is True
    assert "training anyway" in report["message"]
    assert read_error(tmp_path) is None


def test_too_few_groups_with_signal_is_a_failure_by_threshold(
    make_config: Any, tmp_path: Path
) -> None:
    config = make_config(preflight={"prompts": 8, "min_signal_share": 1.0}, grader=HAS_E)
    with pytest.raises(PreflightError) as caught:
        run(config, tmp_path)
    report = caught.value.report
    assert 0 < report.groups_with_signal < 8
    assert any("raise `num_generations`" in tip for tip in report.advice)


def test_preflight_only_stops_after_the_report(make_config: Any, tmp_path: Path) -> None:
    result = run(make_config(preflight={"prompts": 4, "only": True}, grader=HAS_E), tmp_path)
    assert (result.steps, result.total_steps) == (0, 0)
    assert (tmp_path / PREFLIGHT).exists()
    assert not (tmp_path / METRICS).exists()


def test_disabled_preflight_writes_nothing(make_config: Any, tmp_path: Path) -> None:
    run(make_config(preflight={"enabled": False}, grader=NEVER, max_steps=1), tmp_path)
    assert not (tmp_path / PREFLIGHT).exists()


def test_sampling_follows_response_format(make_config: Any, tmp_path: Path) -> None:
    answer = {"type": "string", "enum": ["yes", "no"]}
    schema = {
        "type": "object",
        "properties": {"a": answer},
        "required": ["a"],
        "additionalProperties": False,
    }
    grader = {**HAS_E, "name": "yes", "reference": "yes"}
    config = make_config(
        preflight={"prompts": 6, "only": True, "min_signal_share": 0.0},
        grader=grader,
        response_format=schema,
        max_completion_length=32,
    )
    run(config, tmp_path)
    report = read_preflight(tmp_path)
    assert report is not None
    assert report["settings"]["constrained"] is True
    # constrained decoding: every completion that ended is schema-valid JSON
    truncated = round(report["truncated_share"] * report["samples"])
    assert truncated < report["samples"] // 2
    assert report["errors"].get("sample_parse_error", 0) <= truncated
    for sample in report["examples"] + report["slowest"]:
        assert sample["truncated"] or json.loads(sample["completion"])["a"] in ("yes", "no")


# --- the verdict on hand-written samples -------------------------------------------------------


def samples(completions: list[list[str]], reference: str) -> list[Sampled]:
    return [
        Sampled(
            group=g,
            prompt=f"What is {g} + 5?",
            reference=reference,
            item={"reference_answer": reference},
            completion=text,
            tokens=8,
            truncated=False,
        )
        for g, group in enumerate(completions)
        for text in group
    ]


def test_the_readme_case_names_what_the_model_writes_and_what_to_use(make_config: Any) -> None:
    config = make_config(grader=NEVER, preflight={"prompts": 2})
    found = samples([["1 + 5 = 6", "1 + 5 = 6"], ["2 + 5 = 7", "7"]], "6")
    for s in found:
        s.reward = 0.0
    report = judge(config, found, {"sampling": 0.0, "grading": 0.0})
    assert not report.passed
    assert report.advice[0].startswith("the model writes '1 + 5 = 6'; `eq` never matches '6'")
    assert "{{ sample.output_answer }}" in report.advice[0]
    text = summary(report)
    assert "sample: '1 + 5 = 6'  reference: '6'  reward 0" in text
    assert "[0.00, 0.10)    4" in text  # the histogram, as plain text


def test_a_multi_grader_names_the_sub_graders_that_never_score(make_config: Any) -> None:
    grader = {
        "type": "multi",
        "name": "total",
        "calculate_output": "fmt + exact",
        "graders": {
            "fmt": {"type": "format_check", "name": "fmt"},
            "exact": NEVER,
        },
    }
    config = make_config(grader=grader)
    found = samples([["6", "7"]], "6")
    report = judge(config, found, {"sampling": 0.0, "grading": 0.0})
    assert any(tip.startswith("`exact`: the model writes '6'") for tip in report.advice)
    assert any(tip.startswith("`fmt`: the model writes") for tip in report.advice)


def test_the_report_is_json(make_config: Any) -> None:
    found = samples([["a", "b"], ["c", "d"]], "x")
    found[0].reward = 1.0
    report = judge(make_config(), found, {"sampling": 0.1, "grading": 0.2})
    assert report.passed
    assert report.signal_share == 0.5
    data = json.loads(json.dumps(report.to_json()))
    assert data["reward"]["quartiles"] == [0.0, 0.0, 0.25]


# --- the CLI -------------------------------------------------------------------------------------


def write(make_config: Any, path: Path, **overrides: Any) -> Path:
    config = make_config(**overrides)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    return path


def test_cli_preflight_prints_the_report_and_exits_0_when_it_passes(
    make_config: Any, tmp_path: Path
) -> None:
    config = write(make_config, tmp_path / "job.yaml", grader=HAS_E, preflight={"prompts": 4})
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", str(config), "--preflight", "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "have rewards that differ (at least 10% needed): passed" in result.output
    assert "reward histogram:" in result.output
    assert "pre-flight passed; report:" in result.output
    assert not (out / METRICS).exists()


def test_cli_preflight_exits_1_when_it_fails_and_force_trains(
    make_config: Any, tmp_path: Path
) -> None:
    config = write(make_config, tmp_path / "job.yaml", grader=NEVER, preflight={"prompts": 4})
    out = tmp_path / "run"
    args = ["train", str(config), "--output-dir", str(out)]
    failed = CliRunner().invoke(app, [*args, "--preflight"])
    assert failed.exit_code == 1, failed.output
    assert "what to change: the model writes" in failed.output
    assert "pre-flight failed; report:" in failed.output
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "training anyway" in forced.output
    assert list((out / CHECKPOINTS).glob("checkpoint-*"))


def test_samples_failing_to_grade_come_first_in_the_advice(make_config: Any) -> None:
    found = samples([["6", "7"], ["8", "9"]], "6")
    for s in found:
        s.errors = ["python_grader_runtime_error"]
    report = judge(make_config(grader=NEVER), found, {"sampling": 0.0, "grading": 0.0})
    assert report.errors == {"python_grader_runtime_error": 4}
    assert report.advice[0].startswith("4 of 4 samples hit the grader error")
