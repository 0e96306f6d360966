"""Tool calls as text: describing tools to a model whose chat template does not take them,
writing tool-call history as text, and reading calls back out of generated text.

The text form is Hermes-style, as Qwen and SmolLM-style templates use it: calls are
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, tool results are user turns
wrapped in `<tool_response>...</tool_response>`. `parse_calls` also reads a bare JSON call object
(or a list of them) naming an offered function, which is what constrained decoding produces. It
does not read other families' formats (Llama 3's `<|python_tag|>`, Mistral's `[TOOL_CALLS]`), and
calls whose markers are special tokens stripped on decoding are not seen.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from openrft.inference.schemas import ChatMessage, Tool

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.S)
"""A call block; an unclosed last block (the model stopped at eos) counts too."""


def tool_dicts(tools: list[Tool]) -> list[dict[str, Any]]:
    """Tools in OpenAI's (and the Hugging Face chat templates') shape, without `None` fields."""
    return [tool.model_dump(exclude_none=True) for tool in tools]


def tools_section(tools: list[Tool]) -> str:
    """The system-prompt text offering `tools`, for templates that do not take them."""
    listed = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tool_dicts(tools))
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{listed}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def arguments_value(arguments: str) -> Any:
    """A call's JSON-string arguments as a value (templates print them with `tojson`); text
    that is not JSON is kept as it is."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def native_message(message: ChatMessage) -> dict[str, Any]:
    """A message as Hugging Face chat templates take it (call arguments as objects)."""
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": message.text()}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": arguments_value(call.function.arguments),
                },
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def textual_messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Messages as `{role, content}` text: calls as `<tool_call>` blocks after the assistant's
    text, tool results as one user turn of `<tool_response>` blocks per run of tool messages."""
    out: list[dict[str, str]] = []
    after_tool = False  # consecutive tool results share one user turn
    for message in messages:
        role = "system" if message.role == "developer" else message.role
        text = message.text()
        if role == "tool":
            block = f"<tool_response>\n{text}\n</tool_response>"
            if after_tool:
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block})
            after_tool = True
            continue
        after_tool = False
        calls = [
            _call_block(call.function.name, call.function.arguments)
            for call in message.tool_calls or []
        ]
        out.append({"role": role, "content": "\n".join([text, *calls] if text else calls)})
    return out


def _call_block(name: str, arguments: str) -> str:
    call = {"name": name, "arguments": arguments_value(arguments)}
    return f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"


def parse_calls(text: str, names: set[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """`(content, calls)` read from generated `text`: every `<tool_call>` block that holds a call
    of one of `names` (blocks that do not stay in the content), or else the whole text when it is
    a bare call object or list of them. Content is `None` when nothing but calls is left."""
    blocks = list(TOOL_CALL.finditer(text))
    if not blocks:
        found = _calls(text, names)
        return (None, found) if found else (text, [])
    calls: list[dict[str, Any]] = []
    kept, at = [], 0
    for block in blocks:
        found = _calls(block[1], names)
        if found:
            kept.append(text[at : block.start()])
            at = block.end()
            calls += found
    kept.append(text[at:])
    content = "".join(kept).strip()
    return (content or None, calls) if calls else (text, [])


def _calls(text: str, names: set[str]) -> list[dict[str, Any]]:
    """The calls in one JSON text (an object or a list of objects); none unless every one names
    an offered function."""
    try:
        value = json.loads(text.strip())
    except ValueError:
        return []
    items = value if isinstance(value, list) else [value]
    calls = [_call(item, names) for item in items]
    return [c for c in calls if c is not None] if items and None not in calls else []


def _call(item: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict) or item.get("name") not in names:
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = arguments_value(arguments)
    if not isinstance(arguments, dict):
        return None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": item["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
    }
