"""The native `TrainingConfig` and its builders to TRL / peft configs."""

import re
from pathlib import Path
from typing import Any

import pytest

from openrft.errors import ConfigError
from openrft.training.config import (
    TrainingConfig,
    build_grpo_config,
    build_lora_config,
    build_sft_config,
    structured_output_regex,
    total_steps,
)
from openrft.training.dialects import load, load_file

GRADER = {
    "type": "string_check",
    "name": "s",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


def test_every_field_is_documented() -> None:
    undocumented = [k for k, f in TrainingConfig.model_fields.items() if not f.description]
    assert undocumented == []


def test_unknown_keys_are_errors_with_a_suggestion_at_any_depth() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "training_file": "t.jsonl",
                "grader": GRADER,
                "num_generation": 4,
                "lora": {"rank": 8},
                "budget": {"max_second": 3},
            }
        )
    text = str(caught.value)
    assert (
        "$.num_generation: unknown key 'num_generation' (did you mean 'num_generations'?)" in text
    )
    assert "$.lora.rank: unknown key 'rank'" in text
    assert "(did you mean 'max_seconds'?)" in text


def test_reinforcement_needs_a_grader_and_ranks_must_divide_the_batch() -> None:
    with pytest.raises(ConfigError, match="needs a `grader`"):
        load({"training_file": "t.jsonl"})
    with pytest.raises(ConfigError, match="must divide by num_processes"):
        load(
            {
                "training_file": "t.jsonl",
                "grader": GRADER,
                "batch_size": 1,
                "num_generations": 3,
                "num_processes": 2,
            }
        )


def test_seekr_reward_components_are_accepted_as_the_grader() -> None:
    components = {
        "reward_components": {"graders": [{"type": "string_check", "operation": "equals"}]}
    }
    config = load({"training_file": "t.jsonl", "grader": components})
    assert config.grader is not None
    assert config.grader.type == "multi"


def test_grpo_config_carries_every_knob(tmp_path: Path) -> None:
    config = load(
        {
            "training_file": "t.jsonl",
            "grader": GRADER,
            "batch_size": 2,
            "num_generations": 4,
            "n_epochs": 2,
            "beta": 0.04,
            "epsilon": 0.1,
            "epsilon_high": 0.3,
            "loss_type": "dr_grpo",
            "temperature": 0.7,
            "max_completion_length": 33,
            "learning_rate": 1e-5,
            "seed": 7,
            "num_processes": 2,
            "report_to": ["tensorboard"],
        }
    )
    args = build_grpo_config(config, tmp_path, n_rows=30)
    assert args.per_device_train_batch_size == 4  # 2 prompts x 4 completions over 2 ranks
    assert args.max_steps == total_steps(config, 30) == 30
    assert (args.beta, args.epsilon, args.epsilon_high) == (0.04, 0.1, 0.3)
    assert (args.loss_type, args.temperature, args.max_completion_length) == ("dr_grpo", 0.7, 33)
    assert args.activation_checkpointing is False
    assert args.gradient_checkpointing is False
    assert args.report_to == ["tensorboard"]
    assert args.seed == 7
    assert args.save_strategy == "no"


def test_lora_and_sft_builders(tmp_path: Path) -> None:
    config = load(
        {
            "training_file": "t.jsonl",
            "grader": GRADER,
            "lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"},
            "sft_warmup": {"n_epochs": 2, "batch_size": 5},
        }
    )
    assert config.lora is not None
    assert config.sft_warmup is not None
    lora = build_lora_config(config.lora)
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (4, 8, "all-linear")
    sft = build_sft_config(config.sft_warmup, config, tmp_path, n_rows=12)
    assert sft.max_steps == 6
    assert sft.per_device_train_batch_size == 5
    assert load({"training_file": "t", "grader": GRADER, "lora": None}).lora is None


def test_config_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("{}\n")
    path = tmp_path / "job.yaml"
    path.write_text("training_file: train.jsonl\ngrader:\n  type: format_check\n")
    assert load_file(path).training_file == str(tmp_path / "train.jsonl")


def test_response_format_constrains_vllm_generation(make_config: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    assert structured_output_regex(make_config(response_format=schema)) is None  # no vLLM
    regex = structured_output_regex(make_config(response_format=schema, use_vllm=True))
    assert regex is not None
    assert re.fullmatch(regex, '{"answer": 42}')
    assert not re.fullmatch(regex, '{"answer": "42"}')
    assert structured_output_regex(make_config(use_vllm=True)) is None  # nothing to constrain
