"""The supervised stage: an SFT warm-up before GRPO, and `method: supervised` on its own."""

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from openrft.errors import DatasetError
from openrft.training.grpo import run


def lora_b_norm(checkpoint: Path) -> float:
    weights = load_file(checkpoint / "adapter_model.safetensors")
    return sum(float(t.abs().sum()) for k, t in weights.items() if "lora_B" in k)


def test_sft_warmup_then_grpo(make_config: Any, read_lines: Any, tmp_path: Path) -> None:
    warmup = {"completion": "{{ item.reference_answer }}", "max_steps": 2, "batch_size": 4}
    result = run(make_config(max_steps=1, sft_warmup=warmup), tmp_path)
    assert (tmp_path / "sft").is_dir()
    assert result.steps == 1
    assert [x["step"] for x in read_lines(tmp_path)] == [0, 1]


@pytest.fixture
def answered_file(tmp_path: Path) -> Path:
    path = tmp_path / "sft.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {a} + 1?"},
                {"role": "assistant", "content": str(a + 1)},
            ],
            "reference_answer": str(a + 1),
        }
        for a in range(12)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_supervised_job(make_config: Any, answered_file: Path, tmp_path: Path) -> None:
    config = make_config(method="supervised", training_file=str(answered_file), max_steps=3)
    result = run(config, tmp_path / "out")
    assert result.steps == 3
    assert lora_b_norm(result.checkpoints[-1]) > 0
    assert result.baseline_valid_reward is not None
    assert result.final_valid_reward is not None


def test_supervised_rows_need_an_answer(make_config: Any, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="assistant message"):
        run(make_config(method="supervised", max_steps=1, grader=None), tmp_path)
