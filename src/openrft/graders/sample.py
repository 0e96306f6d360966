"""What a grader sees: the model's `sample` and the dataset row's `item`.

`Sample` follows OpenAI's grader namespace (`output_text`, `output_json`, `output_tools`) and adds
`output_answer`, the text inside the last `<answer>…</answer>` (or the whole output when there is
no answer tag), which SeekrFlow graders compare with `item.reference_answer`.

A multi-turn rollout (Agent RFT) is graded on its trajectory (`Sample.from_trajectory`):
`output_text` is the final answer (the last assistant turn), `output_tools` every call the model
made, each with the `output` the tool returned, and the namespace adds `turns` (assistant turns),
`trajectory` (every message after the prompt, tool turns included) and, with a stateful
environment, `environment_reward` (its `reward()`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Item = Mapping[str, Any]
"""A dataset row minus its `messages`: `reference_answer`, `solution`, any nested fields."""

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def extract_answer(text: str) -> str:
    """The stripped content of the last `<answer>` tag, else the whole stripped text."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else text.strip()


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Tool calls written as `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (the Hermes
    convention Qwen, SmolLM3 and most open chat templates use), OpenAI-shaped:
    `[{"type": "function", "function": {"name": …, "arguments": "<JSON string>"}}]`.
    Blocks that are not such JSON objects are skipped."""
    calls = []
    for block in _TOOL_CALL.findall(text):
        try:
            call = json.loads(block)
        except ValueError:
            continue
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            continue
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(
            {"type": "function", "function": {"name": call["name"], "arguments": arguments}}
        )
    return calls


def _openai_call(call: dict[str, Any]) -> dict[str, Any]:
    """A parsed tool call (arguments as an object) in OpenAI's shape (arguments as JSON text)."""
    function = call.get("function", call)
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    out: dict[str, Any] = {"type": "function"}
    if call.get("id"):
        out["id"] = call["id"]
    return out | {"function": {"name": function.get("name"), "arguments": arguments}}


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message as JSON-able data, tool-call arguments as JSON text (OpenAI's shape)."""
    out = {k: v for k, v in message.items() if k != "tool_calls"}
    if message.get("tool_calls"):
        out["tool_calls"] = [_openai_call(c) for c in message["tool_calls"]]
    return out


def is_trajectory(completion: Any) -> bool:
    """Whether a TRL completion (a list of messages) is a multi-turn rollout with tool turns."""
    return isinstance(completion, list) and any(
        isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls")) for m in completion
    )


def _parse_json(text: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Sample:
    """One model completion, as graders see it."""

    output_text: str
    output_json: Any = None
    """The output parsed as JSON, when it parses (`None` otherwise)."""
    output_tools: list[dict[str, Any]] = field(default_factory=list)
    """Tool calls the model made, OpenAI-shaped: `[{"type": "function", "function": {...}}]`
    (in a trajectory each also has the tool's `output`)."""
    turns: int = 1
    """Assistant turns (more than one in a multi-turn rollout)."""
    trajectory: list[dict[str, Any]] | None = None
    """A multi-turn rollout's messages after the prompt; None for a single completion."""
    environment_reward: float | None = None
    """A stateful environment's `reward()` at the end of the rollout (None without one)."""

    @classmethod
    def from_text(cls, text: str, output_tools: list[dict[str, Any]] | None = None) -> Sample:
        """Build a sample from raw output text, parsing `output_json` when the text is JSON and
        `output_tools` from `<tool_call>` blocks when no tool calls are given."""
        tools = parse_tool_calls(text) if output_tools is None and "<tool_call>" in text else None
        return cls(
            output_text=text,
            output_json=_parse_json(text),
            output_tools=output_tools or tools or [],
        )

    @classmethod
    def from_trajectory(
        cls, messages: list[dict[str, Any]], environment_reward: float | None = None
    ) -> Sample:
        """A rollout's sample: the last assistant turn as the output, every call with the
        result of the tool turn answering it (in order), the turn count and the messages."""
        calls: list[dict[str, Any]] = []
        answered = 0
        answer = ""
        turns = 0
        for message in messages:
            if message.get("role") == "assistant":
                turns += 1
                answer = str(message.get("content") or "")
                for call in message.get("tool_calls") or []:
                    calls.append(_openai_call(call))
            elif message.get("role") == "tool" and answered < len(calls):
                calls[answered]["output"] = message.get("content")
                answered += 1
        base = cls.from_text(answer, output_tools=calls)
        return cls(
            output_text=base.output_text,
            output_json=base.output_json,
            output_tools=base.output_tools,
            turns=turns,
            trajectory=[_plain(m) for m in messages],
            environment_reward=environment_reward,
        )

    @property
    def output_answer(self) -> str:
        return extract_answer(self.output_text)

    def variable(self, name: str) -> Any:
        """`namespace()[name]` without building the namespace; `KeyError` if it has no `name`."""
        if name == "output_text":
            return self.output_text
        if name == "output_answer":
            return self.output_answer
        if name == "output_tools":
            return self.output_tools
        if name == "output_json" and self.output_json is not None:
            return self.output_json
        if name in ("turns", "trajectory") and self.trajectory is not None:
            return getattr(self, name)
        if name == "environment_reward" and self.environment_reward is not None:
            return self.environment_reward
        raise KeyError(name)

    def namespace(self) -> dict[str, Any]:
        """The `sample` object templates and python/endpoint graders see."""
        ns: dict[str, Any] = {
            "output_text": self.output_text,
            "output_tools": self.output_tools,
            "output_answer": self.output_answer,
        }
        if self.output_json is not None:
            ns["output_json"] = self.output_json
        if self.trajectory is not None:
            ns["turns"] = self.turns
            ns["trajectory"] = self.trajectory
        if self.environment_reward is not None:
            ns["environment_reward"] = self.environment_reward
        return ns
