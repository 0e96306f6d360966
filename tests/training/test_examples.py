"""The shipped demo config loads, and runs end to end (on the tiny model, for one step)."""

import json
from pathlib import Path
from typing import Any

from openrft.graders import grade
from openrft.training.config import PreflightSettings
from openrft.training.dialects import load_file
from openrft.training.grpo import run

DEMO = Path(__file__).parents[2] / "examples" / "demo"


def test_demo_data_is_what_the_generator_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", DEMO / "make_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, valid = module.rows()
    shipped = [json.loads(x) for x in (DEMO / "train.jsonl").read_text().splitlines()]
    assert shipped == train
    assert len(valid) == 50
    prompts = {json.dumps(r["messages"]) for r in train}
    assert not any(json.dumps(r["messages"]) in prompts for r in valid)  # held out


def test_demo_grader_scores_the_last_integer() -> None:
    config = load_file(DEMO / "sums.yaml")
    assert config.grader is not None
    assert config.model == "smollm2-135m-instruct"
    item = {"reference_answer": "21"}
    assert grade(config.grader, "18 + 3 = 21", item).reward == 1.0
    assert grade(config.grader, "The answer is 21.", item).reward == 1.0
    assert grade(config.grader, "21 is not 18 + 3", item).reward == 0.0
    assert grade(config.grader, "I don't know", item).reward == 0.0


def test_demo_config_runs(tiny_model: Path, tmp_path: Path, read_lines: Any) -> None:
    config = load_file(DEMO / "sums.yaml")
    small = {"model": str(tiny_model), "max_steps": 1, "eval_samples": 2, "num_generations": 2}
    small["preflight"] = PreflightSettings(enabled=False)  # a random model never writes the sum
    result = run(config.model_copy(update=small), tmp_path)
    assert result.steps == 1
    assert [x["step"] for x in read_lines(tmp_path)] == [0, 1]
