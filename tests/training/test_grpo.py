"""GRPO runs on a tiny random-weight Llama: weights move, metrics, evaluation, checkpoints,
budget pause and resume, export."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from openrft.errors import GradingError
from openrft.training.callbacks import checkpoint_steps, list_checkpoints
from openrft.training.export import merge
from openrft.training.grpo import find_resume_point, run
from openrft.training.models import known_deprecations_silenced

LINE_KEYS = {
    "step",
    "total_steps",
    "scores",
    "usage",
    "errors",
    "timing",
    "trl",
    "tools",
    "warnings",
    "events",
}


def adapter_b_norm(checkpoint: Path) -> float:
    weights = load_file(checkpoint / "adapter_model.safetensors")
    return sum(float(t.abs().sum()) for k, t in weights.items() if "lora_B" in k)


def test_grpo_steps_with_lora_change_the_adapter(make_config: Any, tmp_path: Path) -> None:
    result = run(make_config(max_steps=3), tmp_path)
    assert result.steps == 3
    [checkpoint] = result.checkpoints
    # peft initialises lora_B to zeros: any non-zero entry was put there by training
    assert adapter_b_norm(checkpoint) > 0
    assert (tmp_path / "report.md").exists()
    for plot in ("reward.png", "graders.png", "completion_length.png"):
        assert (tmp_path / plot).stat().st_size > 1000


def test_metrics_lines_have_the_documented_shape(
    make_config: Any, read_lines: Any, tmp_path: Path
) -> None:
    run(make_config(max_steps=2), tmp_path)
    lines = read_lines(tmp_path)
    assert [line["step"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert set(line) == LINE_KEYS
        assert line["total_steps"] == 2
        assert {"train_reward_mean", "valid_reward_mean"} <= set(line["scores"])
    step = lines[1]
    assert 0.0 <= step["scores"]["train_reward_mean"] <= 1.0
    assert set(step["scores"]["train_graders"]) == {"has_one", "has_e"}
    assert step["usage"]["completion_tokens_mean"] > 0
    assert {"sampling", "grading", "training", "eval", "step"} <= set(step["timing"])
    assert {"entropy", "frac_reward_zero_std", "clip_ratio/region_mean"} <= set(step["trl"])
    assert lines[0]["scores"]["valid_graders"].keys() == {"has_one", "has_e"}


def test_eval_runs_at_baseline_every_interval_and_the_end(
    make_config: Any, read_lines: Any, tmp_path: Path
) -> None:
    run(make_config(max_steps=5, eval_interval=2), tmp_path)
    evaluated = [
        x["step"] for x in read_lines(tmp_path) if x["scores"]["valid_reward_mean"] is not None
    ]
    assert evaluated == [0, 2, 4, 5]
    assert sorted(p.name for p in (tmp_path / "evals").iterdir()) == [
        "step-0.jsonl",
        "step-2.jsonl",
        "step-4.jsonl",
        "step-5.jsonl",
    ]


def test_budget_pause_leaves_a_loadable_checkpoint_and_resume_continues(
    make_config: Any, read_lines: Any, tmp_path: Path
) -> None:
    from peft import PeftModel

    config = make_config(max_steps=4, budget={"max_steps": 2})
    paused = run(config, tmp_path)
    assert paused.paused
    assert paused.steps == 2
    checkpoint = find_resume_point(tmp_path)
    assert checkpoint.name == "checkpoint-2"
    base = AutoModelForCausalLM.from_pretrained(config.model)
    with known_deprecations_silenced():
        PeftModel.from_pretrained(base, str(checkpoint))  # loads: a real HF-format adapter

    resumed = run(
        config.model_copy(update={"budget": config.budget.model_copy(update={"max_steps": None})}),
        tmp_path,
        resume=tmp_path,
    )
    assert not resumed.paused
    assert resumed.steps == 4
    steps = [x["step"] for x in read_lines(tmp_path)]
    assert steps == [0, 1, 2, 3, 4]  # no second baseline; the count continues


def test_best_k_and_last_checkpoints_are_kept(make_config: Any, tmp_path: Path) -> None:
    result = run(make_config(max_steps=4, n_checkpoints=4, keep_best_k=1), tmp_path)
    kept = list_checkpoints(tmp_path / "checkpoints")
    assert len(kept) == 2
    assert kept[-1].name == "checkpoint-4"
    info = [json.loads((p / "openrft_checkpoint.json").read_text()) for p in kept]
    assert all(i["valid_reward_mean"] is not None for i in info)
    assert result.best_checkpoint in kept


def test_checkpoint_steps_are_spread_and_include_the_last() -> None:
    assert checkpoint_steps(10, 3) == {3, 7, 10}
    assert checkpoint_steps(2, 5) == {1, 2}


def test_export_merge_loads_in_plain_transformers(make_config: Any, tmp_path: Path) -> None:
    result = run(make_config(max_steps=2), tmp_path / "run")
    merged = merge(result.checkpoints[-1], tmp_path / "merged")
    assert not (merged / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(merged)
    base = AutoModelForCausalLM.from_pretrained(make_config().model)
    name = "model.layers.0.self_attn.q_proj.weight"
    # the adapter was folded into the base weights
    assert not torch.equal(model.state_dict()[name], base.state_dict()[name])


@pytest.mark.parametrize("lora", [None])
def test_full_fine_tune_without_lora(make_config: Any, tmp_path: Path, lora: Any) -> None:
    result = run(make_config(max_steps=1, lora=lora), tmp_path)
    assert (result.checkpoints[-1] / "model.safetensors").exists()


def test_zero_variance_steps_carry_a_warning(
    make_config: Any, read_lines: Any, tmp_path: Path
) -> None:
    always = {
        "type": "string_check",
        "name": "always",
        "input": "{{ sample.output_text }}",
        "reference": "never said",
        "operation": "ne",
    }
    run(make_config(max_steps=1, grader=always), tmp_path)
    [step] = [x for x in read_lines(tmp_path) if x["step"] == 1]
    assert step["trl"]["frac_reward_zero_std"] == 1.0
    assert "no learning signal" in step["warnings"][0]


def test_a_grader_failing_on_most_samples_fails_the_job(make_config: Any, tmp_path: Path) -> None:
    broken = {
        "type": "python",
        "name": "broken",
        "source": "def grade(sample, item):\n    raise ValueError('boom')\n",
    }
    with pytest.raises(GradingError, match="boom"):
        run(make_config(max_steps=2, grader=broken), tmp_path)
