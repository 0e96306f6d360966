"""A GRPO run whose reward is a score_model judge: `openrft serve-model`'s scripted backend,
served over real HTTP on 127.0.0.1, configured the way a deployment does (environment)."""

from pathlib import Path
from typing import Any

import pytest

from openrft.inference.app import create_app
from openrft.inference.local import serve_in_thread
from openrft.inference.scripted import Script, ScriptedBackend
from openrft.training.grpo import run

RULES = [
    # the judge sees the completion after "output:"; it pays 1 for any digit in it, else 0.25
    {"match": r"output: .*\d", "reply": '{"steps": [], "result": 1}'},
    {"match": r"output: ", "reply": '{"steps": [], "result": 0.25}'},
]
GRADER = {
    "type": "score_model",
    "name": "judge",
    "model": "local-judge",
    "input": [
        {"role": "system", "content": "Score the answer to {{ item.reference_answer }}."},
        {"role": "user", "content": "output: {{ sample.output_text }}"},
    ],
}


def test_grpo_with_a_score_model_judge(
    make_config: Any, read_lines: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ScriptedBackend(Script.model_validate({"rules": RULES}))
    with serve_in_thread(create_app(backend)) as url:
        monkeypatch.setenv("OPENRFT_JUDGE_BASE_URL", f"{url}/v1")
        result = run(make_config(max_steps=2, grader=GRADER), tmp_path)
    assert result.steps == 2
    lines = read_lines(tmp_path)
    assert all(line["errors"] == {} for line in lines[1:])
    rewards = [line["scores"]["train_reward_mean"] for line in lines[1:]]
    assert all(0.25 <= r <= 1.0 for r in rewards)
    assert len(backend.requests) >= 2 * 2 * 2  # every completion was judged over HTTP
