"""The shipped demo configs (the sums demo, the agent examples) load, and run end to end (on the
tiny model, for one step)."""

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


AGENT = Path(__file__).parents[2] / "examples" / "agent"


def test_agent_example_data_is_what_the_generator_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_agent_data", AGENT / "make_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, valid = module.rows()
    for name, rows in (
        ("train.jsonl", train),
        ("valid.jsonl", valid),
        ("guess.jsonl", module.guess_rows()),
    ):
        shipped = [json.loads(x) for x in (AGENT / name).read_text().splitlines()]
        assert shipped == rows
    pairs = {(r["a"], r["b"]) for r in train}
    assert not any((r["a"], r["b"]) in pairs for r in valid)  # held out


def test_agent_example_tool_and_grader_do_what_they_say() -> None:
    from openrft.graders import GradeContext
    from openrft.tools import call

    config = load_file(AGENT / "multiply.yaml")
    [multiply] = config.tools
    outcome = call(multiply, '{"a": 964, "b": 59}', {}, GradeContext())
    assert outcome.output == "56876"
    assert config.grader is not None
    item = {"reference_answer": "56876"}
    assert grade(config.grader, "964 * 59 = 56,876", item).reward == 1.0
    assert grade(config.grader, "56876", item).reward == 1.0
    assert grade(config.grader, "about 56000", item).reward == 0.0


def test_agent_example_config_runs(tiny_model: Path, tmp_path: Path, read_lines: Any) -> None:
    config = load_file(AGENT / "multiply.yaml")
    assert config.sft_warmup is not None
    small = {
        "model": str(tiny_model),
        "max_steps": 1,
        "eval_samples": 2,
        "num_generations": 2,
        "batch_size": 2,
        "max_completion_length": 16,
        "sft_warmup": config.sft_warmup.model_copy(update={"max_steps": 1, "batch_size": 2}),
    }
    result = run(config.model_copy(update=small), tmp_path)
    assert result.steps == 1
    lines = read_lines(tmp_path)
    assert [x["step"] for x in lines] == [0, 1]
    assert lines[1]["tools"]["rollouts"] == 4  # a tiny random model rarely calls: 0 calls is fine


def test_environment_example_plays_the_game_and_rewards_with_its_own_score() -> None:
    from openrft.graders import GradeContext
    from openrft.tools.episode import Toolbox, episode_class

    config = load_file(AGENT / "guess.yaml")
    assert config.environment is not None
    assert config.grader is not None
    assert config.grader.name == "environment"  # no grader given: scored by reward()
    box = Toolbox([], GradeContext(), config.environment)
    try:
        episode: Any = episode_class(box)()
        episode.reset(openrft_item=json.dumps({"secret": 37}))
        assert [episode.guess(number=n) for n in (50, 25, 37)] == ["lower", "higher", "correct"]
        episode._finish()
        assert episode.environment_reward == 1 / 3
    finally:
        box.close()
    rows = [json.loads(x) for x in (AGENT / "guess.jsonl").read_text().splitlines()]
    assert len(rows) == 60
    assert all(1 <= row["secret"] <= 100 for row in rows)


def test_environment_example_config_runs(tiny_model: Path, tmp_path: Path, read_lines: Any) -> None:
    config = load_file(AGENT / "guess.yaml")
    assert config.sft_warmup is not None
    small = {
        "model": str(tiny_model),
        "max_steps": 1,
        "eval_samples": 2,
        "num_generations": 2,
        "batch_size": 2,
        "max_completion_length": 16,
        "sft_warmup": config.sft_warmup.model_copy(update={"max_steps": 1, "batch_size": 2}),
    }
    result = run(config.model_copy(update=small), tmp_path)
    assert result.steps == 1
    assert read_lines(tmp_path)[1]["tools"]["rollouts"] == 4
