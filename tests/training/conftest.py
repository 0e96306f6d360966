"""Shared fixtures for training tests: a tiny random-weight Llama and a small a+b dataset."""

import json
from pathlib import Path
from typing import Any

import pytest

from openrft.training.config import TrainingConfig
from openrft.training.dialects import load
from openrft.training.models import build_tiny_model

# A reward with variance even for a random model: partial credit for common characters.
GRADER = {
    "type": "multi",
    "name": "total",
    "calculate_output": "0.5 * has_one + 0.5 * has_e",
    "graders": {
        "has_one": {
            "type": "string_check",
            "name": "has_one",
            "input": "{{ sample.output_text }}",
            "reference": "1",
            "operation": "like",
        },
        "has_e": {
            "type": "string_check",
            "name": "has_e",
            "input": "{{ sample.output_text }}",
            "reference": "e",
            "operation": "like",
        },
    },
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def sums_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [
        {
            "messages": [{"role": "user", "content": f"What is {a} + {b}?"}],
            "reference_answer": str(a + b),
        }
        for a in range(1, 7)
        for b in range(1, 7)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def make_config(tiny_model: Path, sums_file: Path) -> Any:
    def make(**overrides: Any) -> TrainingConfig:
        data: dict[str, Any] = {
            "model": str(tiny_model),
            "training_file": str(sums_file),
            "grader": GRADER,
            "max_steps": 2,
            "batch_size": 2,
            "num_generations": 4,
            "max_completion_length": 8,
            "learning_rate": 1e-2,
            "eval_interval": None,
            "eval_samples": 4,
            "n_checkpoints": 1,
            # some tests train on graders without variance on purpose; the pre-flight that
            # would refuse them is tested on its own (test_preflight.py)
            "preflight": {"enabled": False},
        }
        data.update(overrides)
        return load(data, dialect="native")

    return make


@pytest.fixture
def read_lines() -> Any:
    def read(out: Path) -> list[dict[str, Any]]:
        text = (out / "metrics.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    return read
