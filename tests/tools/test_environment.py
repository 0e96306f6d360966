"""Stateful environments in the sandbox: one instance per rollout, kept between calls; the
observation, the reward, and what happens when the worker holding them dies."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from openrft.graders import GradeContext
from openrft.tools.environment import EnvironmentSpec
from openrft.tools.episode import Toolbox, episode_class

SOURCE = """
class Environment:
    def reset(self, item):
        self.word, self.tries = item["word"], 0
        return " (you have 3 tries)"

    def guess(self, word):
        self.tries += 1
        if word == "hang":
            while True:
                pass
        return "yes" if word == self.word else f"no ({self.tries} so far)"

    def reward(self):
        return 1.0 / self.tries if self.tries else 0.0
"""
GUESS = {
    "name": "guess",
    "description": "Guess the word",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
}
FAST = GradeContext(options={"python_grader": {"timeout_seconds": 3}})


def toolbox() -> Toolbox:
    spec = EnvironmentSpec(source=SOURCE, tools=[GUESS])  # type: ignore[list-item]
    return Toolbox([], FAST, spec)


def start(box: Toolbox, word: str) -> tuple[object, str | None]:
    episode = episode_class(box)()
    return episode, episode.reset(openrft_item=json.dumps({"word": word}))


def test_each_rollout_keeps_its_own_state_between_calls_and_ends_with_its_reward() -> None:
    box = toolbox()
    try:
        first, observation = start(box, "apple")
        second, _ = start(box, "pear")
        assert observation == " (you have 3 tries)"
        assert first.guess(word="pear") == "no (1 so far)"  # type: ignore[attr-defined]
        assert second.guess(word="pear") == "yes"  # type: ignore[attr-defined]
        assert first.guess(word="apple") == "yes"  # type: ignore[attr-defined]
        for episode in (first, second):
            episode._finish()  # type: ignore[attr-defined]
        assert first.environment_reward == 0.5  # type: ignore[attr-defined]
        assert second.environment_reward == 1.0  # type: ignore[attr-defined]
        assert [c.output for c in first.calls] == ["no (1 so far)", "yes"]  # type: ignore[attr-defined]
        assert box.schemas()[0]["function"]["name"] == "guess"
    finally:
        box.close()


def test_a_call_that_hangs_loses_the_worker_and_drops_the_rollouts_it_held() -> None:
    box = toolbox()
    try:
        stuck, _ = start(box, "apple")
        bystander, _ = start(box, "pear")
        reply = stuck.guess(word="hang")  # type: ignore[attr-defined]
        assert stuck.dropped  # type: ignore[attr-defined]
        assert "lost" in reply
        bystander.guess(word="pear")  # type: ignore[attr-defined]
        assert bystander.dropped  # type: ignore[attr-defined]  # its state died with the worker
        fresh, _ = start(box, "plum")  # a new worker serves new rollouts
        assert fresh.guess(word="plum") == "yes"  # type: ignore[attr-defined]
        assert not fresh.dropped  # type: ignore[attr-defined]
    finally:
        box.close()


def test_an_error_in_a_method_is_the_models_to_see() -> None:
    box = toolbox()
    try:
        episode, _ = start(box, "apple")
        reply = episode.guess(wrong="x")  # type: ignore[attr-defined]
        assert reply.startswith("error: ")
        assert "unexpected keyword argument 'wrong'" in reply
        assert not episode.dropped  # type: ignore[attr-defined]
    finally:
        box.close()


@pytest.mark.parametrize(
    ("source", "tools", "message"),
    [
        ("class Other:\n    def reset(self, item): pass\n", [GUESS], "no class `Environment`"),
        ("class Environment:\n    def guess(self, word): pass\n", [GUESS], "no `reset"),
        ("class Environment:\n    def reset(self, item): pass\n", [GUESS], "no method guess"),
    ],
)
def test_an_environment_that_cannot_work_is_refused(
    source: str, tools: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        EnvironmentSpec(source=source, tools=tools)  # type: ignore[arg-type]
