"""The README's fine-tuning API example, as the service would run it, on the real SmolLM2-135M:
it passes the pre-flight and raises held-out reward in its short run. The grader source and the
`openrft` settings are read out of README.md, so the test follows the README."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from openrft.graders.sandbox import SandboxLimits, detect_layers
from openrft.training.dialects import load
from openrft.training.grpo import run
from openrft.training.rundir import read_preflight

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "examples" / "demo"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def readme_example() -> dict[str, object]:
    """The job body of the README's `client.fine_tuning.jobs.create(...)` call."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    source = re.search(r'LAST_NUMBER = ("""[\s\S]*?""")', text)
    overrides = re.search(r'extra_body=\{"openrft": (\{[^}]*\})\}', text)
    seed = re.search(r"seed=(\d+)", text)
    assert source, "the README's API example lost its LAST_NUMBER grader"
    assert overrides, "the README's API example lost its `openrft` settings"
    assert seed, "the README's API example lost its seed"
    grader = {"type": "python", "name": "last_number", "source": ast.literal_eval(source[1])}
    return {
        "model": "smollm2-135m-instruct",
        "training_file": str(DEMO / "train.jsonl"),
        "validation_file": str(DEMO / "valid.jsonl"),
        "suffix": "sums",
        "seed": int(seed[1]),
        "method": {"type": "reinforcement", "reinforcement": {"grader": grader}},
        "openrft": ast.literal_eval(overrides[1]),
    }


def test_the_readme_api_example_passes_preflight_and_learns(tmp_path: Path) -> None:
    missing = detect_layers().missing_requirements(SandboxLimits())
    if missing:
        pytest.skip(f"the python-grader sandbox cannot run here: missing {missing}")
    config = load(readme_example(), dialect="service")
    result = run(config, tmp_path)
    report = read_preflight(tmp_path)
    assert report is not None
    assert report["passed"] is True
    assert result.baseline_valid_reward is not None
    assert result.final_valid_reward is not None
    assert result.final_valid_reward > result.baseline_valid_reward
