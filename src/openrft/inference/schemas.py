"""Wire shapes of the chat completions API (the subset `serve-model` understands).

Requests keep unknown fields (OpenAI clients send many we do not use, such as `user` or
`logprobs`: they are accepted and ignored); responses are built as plain dicts in `app.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")

    role: str
    """`system`, `developer`, `user`, `assistant` or `tool`."""
    content: str | list[dict[str, Any]] | None = None
    """Text, or content parts (only `text` parts are read; images are dropped)."""

    def text(self) -> str:
        """The message's text, content parts joined."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(part.get("text", "")) for part in self.content)


class ChatRequest(BaseModel):
    """A `POST /v1/chat/completions` body."""

    model_config = ConfigDict(extra="allow")

    model: str
    """Any name: the server answers with its one model and reports the served name."""
    messages: list[ChatMessage] = Field(min_length=1)
    """The conversation so far."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """0 means greedy decoding; absent means 1 (OpenAI's default)."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    """Nucleus sampling mass."""
    n: int = Field(default=1, ge=1, le=16)
    """How many choices to return."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Most tokens to generate per choice (legacy name)."""
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """Most tokens to generate per choice."""
    seed: int | None = None
    """Sampling seed; the same seed and request give the same answer."""
    stop: str | list[str] | None = None
    """Text at which a choice is cut off."""
    response_format: dict[str, Any] | None = None
    """`{"type": "json_schema", "json_schema": {...}}` or `{"type": "json_object"}`: the model is
    asked for JSON (by prompting; decoding is not constrained)."""
    stream: bool = False
    """`serve-model` does not stream (`true` is answered with HTTP 400); `openrft serve` sends
    the finished completion as Server-Sent Events."""
    adapter: str | None = None
    """OpenRFT extension: the directory of a LoRA checkpoint trained over the served model, to
    answer with (only on servers started with adapters enabled, as `openrft serve` starts them;
    elsewhere HTTP 400)."""

    def token_limit(self, default: int) -> int:
        """The generation limit for this request."""
        return self.max_completion_tokens or self.max_tokens or default

    def stops(self) -> list[str]:
        """The stop strings as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def plain_messages(self) -> list[dict[str, str]]:
        """Messages as `{role, content: str}`, with a JSON instruction when `response_format`
        asks for JSON (prepended to the system message, or as a new one)."""
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]
        instruction = json_instruction(self.response_format)
        if instruction:
            if messages[0]["role"] == "system":
                messages[0]["content"] = instruction + "\n\n" + messages[0]["content"]
            else:
                messages.insert(0, {"role": "system", "content": instruction})
        return messages


def json_instruction(response_format: dict[str, Any] | None) -> str:
    """The prompt text that asks for `response_format` (empty when plain text is fine)."""
    if not response_format or response_format.get("type") == "text":
        return ""
    schema = (response_format.get("json_schema") or {}).get("schema")
    if schema is None:
        return "Answer with one JSON object and nothing else."
    return (
        "Answer with one JSON object that matches this JSON schema, and nothing else:\n"
        + json.dumps(schema, separators=(",", ":"))
    )


@dataclass
class Choice:
    """One generated answer."""

    text: str | None
    """The answer text (`None` for a refusal)."""
    finish_reason: str = "stop"
    """`stop` (end of answer or a stop string) or `length` (hit the token limit)."""
    refusal: str | None = None
    """Why the model declined, when it did."""


@dataclass
class Completion:
    """What a backend produced for one request (or the HTTP error a scripted backend plays)."""

    choices: list[Choice] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 200
    """HTTP status to answer with; not 200 only for scripted failures."""
    error: str | None = None
    """The error message sent with a non-200 status."""
    retry_after: float | None = None
    """`Retry-After` seconds sent with a non-200 status."""
