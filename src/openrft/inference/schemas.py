"""Wire shapes of the chat completions API (the subset `serve-model` understands).

Requests keep unknown fields (OpenAI clients send many we do not use, such as `user` or
`logprobs`: they are accepted and ignored); responses are built as plain dicts in `app.py`.
`tools`, `tool_choice` and the tool-calling fields of messages are typed here (malformed ones are
refused by request validation); what they and `response_format` do to the prompt and to decoding
is `structured.py`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
"""What OpenAI allows as a function name."""


class FunctionDefinition(BaseModel):
    """A function the model may call."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=FUNCTION_NAME)
    """The function's name: letters, digits, `_` and `-`, at most 64."""
    description: str | None = None
    """What the function does (shown to the model)."""
    parameters: dict[str, Any] | None = None
    """A JSON schema of the arguments object; absent means no arguments."""
    strict: bool | None = None
    """Accepted; calls made under `tool_choice` `required` or a named function are always
    constrained to `parameters`, and `auto` calls never are."""


class Tool(BaseModel):
    """One entry of `tools`."""

    type: Literal["function"]
    """Only function tools exist."""
    function: FunctionDefinition


class FunctionCall(BaseModel):
    """The function part of a tool call the assistant made."""

    model_config = ConfigDict(extra="allow")

    name: str
    arguments: str = "{}"
    """The arguments as a JSON string (OpenAI's shape)."""


class ToolCall(BaseModel):
    """A tool call in an assistant message of the history."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionName(BaseModel):
    """`{"name": ...}` inside a named `tool_choice`."""

    name: str


class NamedToolChoice(BaseModel):
    """`tool_choice` naming the one function to call."""

    type: Literal["function"]
    function: FunctionName


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")

    role: str
    """`system`, `developer`, `user`, `assistant` or `tool`."""
    content: str | list[dict[str, Any]] | None = None
    """Text, or content parts (only `text` parts are read; images are dropped)."""
    tool_calls: list[ToolCall] | None = None
    """The calls an assistant message made."""
    tool_call_id: str | None = None
    """For a `tool` message: the call it answers."""
    name: str | None = None
    """A participant's name (for a `tool` message in older clients: the function's)."""

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
    """`{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}` or
    `{"type": "json_object"}`: the model is asked for JSON in the prompt, and decoding is
    constrained to the schema (for `json_object`: any JSON object nesting at most two levels)
    by the model servers; a schema the constraint compiler cannot express is refused (HTTP 400,
    `param` naming the place in `response_format`). See `structured.py`.
    `{"type": "text"}` or absent: free text."""
    tools: list[Tool] | None = None
    """Functions the model may call: described in the prompt (through the chat template when it
    takes tools, else in a system message asking for `<tool_call>{...}</tool_call>`), and calls
    in the answer returned as `tool_calls`."""
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    """`none`: no tools offered; `auto` (the default with tools): the model may answer or call,
    calls parsed from its text; `required` or a named function: decoding is constrained to one
    call of an offered (or the named) function with arguments matching its `parameters`."""
    parallel_tool_calls: bool | None = None
    """`false`: at most one call per answer (`auto` keeps the first); constrained calls are
    always one."""
    stream: bool = False
    """Answer with Server-Sent Events (`chat.completion.chunk`s as tokens are generated, then
    `data: [DONE]`); with `tools`, the finished message is sent at the end."""
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
        asks for JSON (prepended to the system message, or as a new one). Tools and tool-call
        history are left out: `structured.render_prompt` renders those."""
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
    """The answer text (`None` for a refusal, or for an answer that is only tool calls)."""
    finish_reason: str = "stop"
    """`stop` (end of answer or a stop string), `length` (hit the token limit) or `tool_calls`
    (the answer called tools)."""
    refusal: str | None = None
    """Why the model declined, when it did."""
    tool_calls: list[dict[str, Any]] | None = None
    """The calls the answer made, in OpenAI's shape: `{"id": "call_...", "type": "function",
    "function": {"name": ..., "arguments": "<JSON string>"}}`."""


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


@dataclass
class Started:
    """The job's batch has begun generating (its adapter, if any, loaded fine)."""

    prompt_tokens: int = 0
    """The prompt's tokens, as `usage` counts them."""


@dataclass
class Delta:
    """New text of one choice."""

    index: int
    """The choice index."""
    text: str
    completion_tokens: int = 0
    """The job's completion tokens so far, every choice's, as `usage` counts them (a running
    count for `stream_options.continuous_usage_stats`)."""


Event = Started | Delta | Completion
"""What a streaming job's listener receives; a `Completion` is always the last one."""
