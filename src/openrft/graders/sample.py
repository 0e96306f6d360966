"""What a grader sees: the model's `sample` and the dataset row's `item`.

`Sample` follows OpenAI's grader namespace (`output_text`, `output_json`, `output_tools`) and adds
`output_answer`, the text inside the last `<answer>…</answer>` (or the whole output when there is
no answer tag), which SeekrFlow graders compare with `item.reference_answer`.
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


def extract_answer(text: str) -> str:
    """The stripped content of the last `<answer>` tag, else the whole stripped text."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else text.strip()


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
    """Tool calls the model made, OpenAI-shaped: `[{"type": "function", "function": {...}}]`."""

    @classmethod
    def from_text(cls, text: str, output_tools: list[dict[str, Any]] | None = None) -> Sample:
        """Build a sample from raw output text, parsing `output_json` when the text is JSON."""
        return cls(output_text=text, output_json=_parse_json(text), output_tools=output_tools or [])

    @property
    def output_answer(self) -> str:
        return extract_answer(self.output_text)

    def namespace(self) -> dict[str, Any]:
        """The `sample` object templates and python/endpoint graders see."""
        ns: dict[str, Any] = {
            "output_text": self.output_text,
            "output_tools": self.output_tools,
            "output_answer": self.output_answer,
        }
        if self.output_json is not None:
            ns["output_json"] = self.output_json
        return ns
