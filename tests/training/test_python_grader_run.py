"""A GRPO run whose reward is a user python grader running in the sandbox."""

from pathlib import Path
from typing import Any

from openrft.training.grpo import run

SOURCE = """
def grade(sample, item):
    text = sample["output_text"]
    return min(1.0, len(set(text)) / 10)
"""


def test_grpo_with_a_python_grader(make_config: Any, read_lines: Any, tmp_path: Path) -> None:
    grader = {"type": "python", "name": "variety", "source": SOURCE}
    result = run(make_config(max_steps=2, grader=grader), tmp_path)
    assert result.steps == 2
    lines = read_lines(tmp_path)
    assert all(line["errors"] == {} for line in lines)
    assert 0.0 < lines[1]["scores"]["train_reward_mean"] <= 1.0
