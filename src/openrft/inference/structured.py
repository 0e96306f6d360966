"""Structured output for chat completions: prompts with tools, constrained decoding for JSON
`response_format`s and forced tool calls, and tool calls read back from generated text.

`prepare(request, tokenizer)` gives a `Prepared`: the prompt text, the decoding `Constraint`
(`None`: decoding is free) and `choice(text, finish_reason)`, which makes the finished `Choice`.
A backend starts one `RowState` per generated row (`constraint.start()`) and passes the batch's
states to `ConstrainedLogits` (a transformers `LogitsProcessor`, see `constrained.py`).

- `response_format` `json_schema` / `json_object`: decoding is constrained to the schema
  through outlines_core's schema-to-regex compiler, and the prompt still asks for JSON
  (`schemas.json_instruction`; small models need it). `json_object` allows any JSON object whose
  values are scalars or arrays/objects of scalars (`{"a": {"b": 1}, "c": [1, "x"]}`): deeper
  nesting makes the index take tens of seconds to build, as free-form `{"type": "object"}` parts
  of a schema do (once; indexes are cached). Keywords the compiler ignores (`minimum`,
  `pattern` on keys, ...) are not enforced. A schema it cannot compile (`not`, unknown
  `format`s, a bad `$ref`) is refused with `StructuredOutputError`.
- `tools`: offered through the chat template when it takes tools (it renders differently with
  them), else in a system-message section asking for `<tool_call>` blocks (`tool_calls.py`).
  History with assistant `tool_calls` and `tool` messages renders natively when the template
  shows them, else as text. `tool_choice` `none` offers no tools; `auto` decodes freely (with a
  JSON `response_format`: constrained to that JSON or one call) and reads calls from the text;
  `required` or a named function constrains decoding to exactly one call object
  `{"name": ..., "arguments": ...}` of an offered (or the named) function whose arguments match
  its `parameters`, whatever `parallel_tool_calls` says (only `auto` answers may hold several
  calls; `parallel_tool_calls: false` keeps the first). A forced call is the whole answer:
  `response_format` then neither constrains nor prompts.

`StructuredOutputError` is an `InvalidRequestError` (HTTP 400, `invalid_request_error`, with
`param`), so the servers' error handlers answer it without catching it; `check(request)` runs
the same validation without a tokenizer and returns the `Plan` (its `regex` is what a vLLM
engine hands to vLLM's own structured outputs). Nothing here streams or parses partial calls.
"""

from __future__ import annotations

import difflib
import json
import re
import weakref
from dataclasses import dataclass, field
from typing import Any

from openrft.api_errors import InvalidRequestError
from openrft.inference import constrained
from openrft.inference.constrained import ConstrainedLogits, Constraint, RowState
from openrft.inference.schemas import ChatRequest, Choice, Tool, json_instruction
from openrft.inference.tool_calls import (
    native_message,
    parse_calls,
    textual_messages,
    tool_dicts,
    tools_section,
)

__all__ = [
    "ConstrainedLogits",
    "Constraint",
    "Plan",
    "Prepared",
    "RowState",
    "StructuredOutputError",
    "check",
    "prepare",
    "render_prompt",
]

NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}
"""The arguments schema of a function without `parameters`."""


class StructuredOutputError(InvalidRequestError):
    """`response_format`, `tools` or `tool_choice` cannot be served as asked (HTTP 400)."""

    def __init__(self, where: str, message: str, code: str = "invalid_value") -> None:
        super().__init__(f"{where}: {message}", param=where, code=code)


@dataclass(frozen=True)
class Plan:
    """What a request asks of the prompt and of decoding (no tokenizer needed)."""

    tools: list[Tool] = field(default_factory=list)
    """The functions offered to the model: none for `tool_choice: none`, only the named one for
    a named `tool_choice`."""
    forced: bool = False
    """Decoding must produce one call of `tools` (`required` or a named function)."""
    regex: str | None = None
    """The language decoding is constrained to; `None`: free."""
    single_call: bool = False
    """At most one call per answer (`parallel_tool_calls: false`, or a forced call)."""


@dataclass
class Prepared:
    """A request made ready to generate from."""

    prompt: str
    """The prompt text to generate from."""
    constraint: Constraint | None = None
    """What decoding must produce; `None`: decoding is free."""
    plan: Plan = field(default_factory=Plan)

    def choice(self, text: str, finish_reason: str) -> Choice:
        """The finished choice for one generated text: its tool calls, when it made any."""
        if not self.plan.tools:
            return Choice(text, finish_reason)
        content, calls = parse_calls(text, {tool.function.name for tool in self.plan.tools})
        if not calls:
            return Choice(text, finish_reason)
        if self.plan.single_call:
            calls = calls[:1]
        return Choice(content, "tool_calls", tool_calls=calls)


def prepare(request: ChatRequest, tokenizer: Any) -> Prepared:
    """The prompt, constraint and choice builder for `request`. Raises `StructuredOutputError`
    for what cannot be served (checked before any tokenizer work)."""
    plan = check(request)
    prompt = render_prompt(tokenizer, request, plan)
    if plan.regex is None:
        return Prepared(prompt, None, plan)
    try:
        found = constrained.constraint(tokenizer, plan.regex)
    except ValueError as exc:  # the vocabulary cannot spell the language
        param = "tool_choice" if plan.forced else "response_format"
        detail = re.sub(r" with the regex '.*'\. Found", ". Found", str(exc), flags=re.S)
        message = f"cannot constrain decoding with this model's vocabulary: {detail[:300]}"
        raise StructuredOutputError(param, message) from exc
    return Prepared(prompt, found, plan)


# --- validation and the decoding language -------------------------------------------------------


def check(request: ChatRequest) -> Plan:
    """Validate `response_format`, `tools` and `tool_choice` together and plan the prompt and
    decoding. Raises `StructuredOutputError` naming the JSON path of the first problem."""
    tools = request.tools or []
    _check_names(tools)
    choice = request.tool_choice
    if choice is not None and not tools:
        raise StructuredOutputError("tool_choice", "is only allowed when `tools` are given")
    response = response_regex(request.response_format)
    if not tools or choice == "none":
        return Plan(regex=response)
    single = request.parallel_tool_calls is False
    if choice is None or choice == "auto":
        if response is None:
            return Plan(tools, single_call=single)
        return Plan(tools, regex=_union([response, *_call_regexes(tools)]), single_call=single)
    if choice == "required":
        return Plan(tools, forced=True, regex=_union(_call_regexes(tools)), single_call=True)
    named = [i for i, tool in enumerate(tools) if tool.function.name == choice.function.name]
    if not named:
        offered = [tool.function.name for tool in tools]
        close = difflib.get_close_matches(choice.function.name, offered, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"offered: {', '.join(offered)}"
        message = f"{choice.function.name!r} is not one of the `tools` ({hint})"
        raise StructuredOutputError("tool_choice.function.name", message)
    regex = _call_regex(tools[named[0]], named[0])
    return Plan([tools[named[0]]], forced=True, regex=regex, single_call=True)


def _check_names(tools: list[Tool]) -> None:
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.function.name in seen:
            where = f"tools[{i}].function.name"
            raise StructuredOutputError(where, f"{tool.function.name!r} is offered twice")
        seen.add(tool.function.name)
        parameters = tool.function.parameters
        if parameters is not None and parameters.get("type", "object") != "object":
            where = f"tools[{i}].function.parameters.type"
            raise StructuredOutputError(where, "the arguments must be a JSON object schema")


def response_regex(response_format: dict[str, Any] | None) -> str | None:
    """The language a `response_format` constrains decoding to (`None`: free text)."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return any_object_regex()
    if kind != "json_schema":
        message = f"{kind!r} is not one of 'text', 'json_object', 'json_schema'"
        raise StructuredOutputError("response_format.type", message)
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        message = 'must be an object such as {"name": "answer", "schema": {...}}'
        raise StructuredOutputError("response_format.json_schema", message)
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise StructuredOutputError("response_format.json_schema.schema", "must be an object")
    return _schema_regex(schema, "response_format.json_schema.schema")


def any_object_regex() -> str:
    """Any JSON object whose values are scalars, or arrays or objects of scalars. Two levels, not
    outlines_core's three for `{"type": "object"}`: its index takes tens of seconds to build."""
    from outlines_core.json_schema import BOOLEAN, NULL, NUMBER, STRING, WHITESPACE

    def members(value: str, open_: str, close: str, keyed: bool) -> str:
        member = f"{STRING}{WHITESPACE}:{WHITESPACE}({value})" if keyed else f"({value})"
        more = f"({WHITESPACE},{WHITESPACE}{member})*"
        return f"\\{open_}{WHITESPACE}({member}{more})?{WHITESPACE}\\{close}"

    scalar = f"{STRING}|{NUMBER}|{BOOLEAN}|{NULL}"
    nested = f"{scalar}|{members(scalar, '{', '}', True)}|{members(scalar, '[', ']', False)}"
    return members(nested, "{", "}", True)


def _call_regexes(tools: list[Tool]) -> list[str]:
    return [_call_regex(tool, i) for i, tool in enumerate(tools)]


def _call_regex(tool: Tool, index: int) -> str:
    """One call of `tool`: `{"name": <its name>, "arguments": <its parameters>}`."""
    parameters = dict(tool.function.parameters or NO_ARGUMENTS)
    wrapper: dict[str, Any] = {  # `$ref`s inside the parameters point at the root's `$defs`
        key: parameters.pop(key) for key in ("$defs", "definitions") if key in parameters
    }
    wrapper.update(
        type="object",
        properties={"name": {"const": tool.function.name}, "arguments": parameters},
        required=["name", "arguments"],
    )
    return _schema_regex(wrapper, f"tools[{index}].function.parameters")


def _schema_regex(schema: dict[str, Any], where: str) -> str:
    from outlines_core.json_schema import build_regex_from_schema

    try:
        return str(build_regex_from_schema(json.dumps(schema)))
    except (ValueError, TypeError) as exc:
        detail = str(exc).split("\n")[0].strip()
        message = f"this JSON schema cannot be used to constrain decoding: {detail}"
        raise StructuredOutputError(where, message, code="invalid_json_schema") from exc


def _union(regexes: list[str]) -> str:
    return regexes[0] if len(regexes) == 1 else "|".join(f"({r})" for r in regexes)


# --- the prompt -----------------------------------------------------------------------------------


def render_prompt(tokenizer: Any, request: ChatRequest, plan: Plan | None = None) -> str:
    """The prompt text for `request`: the tokenizer's chat template (with the offered tools when
    it takes them), or `role: text` lines without one; tools the template does not take, and a
    JSON `response_format`, are asked for in the system message."""
    plan = plan or check(request)
    tools = tool_dicts(plan.tools)
    template = bool(getattr(tokenizer, "chat_template", None))
    native = template and shows_tool_history(tokenizer)
    if native:
        messages = [native_message(m) for m in request.messages]
    else:
        messages = textual_messages(request.messages)
    # a forced call is decoded whatever the prompt says: do not ask for the answer's JSON too
    instruction = "" if plan.forced else json_instruction(request.response_format)
    if template and tools:
        plain = _apply(tokenizer, _instructed(messages, instruction))
        with_tools = _apply(tokenizer, _instructed(messages, instruction), tools)
        if with_tools != plain:
            return with_tools
    if tools:
        instruction = "\n\n".join(filter(None, [tools_section(plan.tools), instruction]))
    messages = _instructed(messages, instruction)
    if template:
        return _apply(tokenizer, messages)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


def _instructed(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    """`messages` with `instruction` leading the system message (a new one if there is none)."""
    if not instruction:
        return messages
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": instruction + "\n\n" + messages[0]["content"]}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _apply(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None) -> str:
    text: str = tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=True
    )
    return text


PROBE: list[dict[str, Any]] = [
    {"role": "user", "content": "probe"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_probe",
                "type": "function",
                "function": {"name": "probe_function", "arguments": {"probe": 1}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_probe", "content": "probe_result"},
]
"""A conversation with a call and its result: a template that shows both takes tool history."""
_SHOWS_HISTORY: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def shows_tool_history(tokenizer: Any) -> bool:
    """Whether the chat template renders assistant `tool_calls` and `tool` results (cached)."""
    known = _SHOWS_HISTORY.get(tokenizer)
    if known is None:
        from jinja2 import TemplateError

        try:
            text = _apply(tokenizer, PROBE)
            known = "probe_function" in text and "probe_result" in text
        except (TemplateError, ValueError, TypeError, KeyError):  # the template refuses them
            known = False
        _SHOWS_HISTORY[tokenizer] = known
    return known
