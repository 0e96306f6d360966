"""One dataset row: reading chat-format JSONL lines and checking each line on its own.

A row is a JSON object with `messages` (the prompt: chat turns ending with the user's; for
supervised jobs, OpenAI's SFT rows, ending with the assistant's answer: `LastRole`), an
optional `tools` list (OpenAI function tools), and any other keys, which graders see as `item`
(`reference_answer`, `solution`, nested objects…). Each check here looks at one line only and
returns every problem it finds as text that says what to do; checks across rows (duplicates,
grader fields, prompt length) live in `validate.py`. Nothing here tokenizes or grades.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

ROLES = ("system", "developer", "user", "assistant", "tool")
"""Roles a prompt message may have (`tool` carries a tool result in a multi-turn prompt)."""

LastRole = Literal["user", "assistant"] | None
"""Whose turn ends a row: `user` for prompts (reinforcement), `assistant` for supervised rows
(OpenAI's SFT format: the answer is the target), `None` for either (an `sft_warmup` with a
`completion` template)."""

TEXT_PART_TYPES = ("text", "input_text", "output_text")
"""Content-part types whose `text` is prompt text (other parts, e.g. images, pass through)."""


@dataclass(frozen=True, slots=True)
class Row:
    """A valid dataset row, split into what the model sees and what graders see."""

    messages: list[dict[str, Any]]
    """The prompt: chat messages, the last one from the user (a supervised row's: the answer)."""
    tools: list[dict[str, Any]] | None = None
    """OpenAI function tools offered to the model, when the row has any."""
    item: dict[str, Any] = field(default_factory=dict)
    """Every other key of the row: what `{{ item.* }}` templates and graders see."""
    line: int = 0
    """1-based line number in the file it came from (0 when built in code)."""


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line of a JSONL file, decoded, or the reason it could not be."""

    number: int
    """1-based line number."""
    text: str | None
    """The decoded text; `None` when the bytes are not UTF-8."""
    problem: str | None = None
    """Why `text` is `None`."""


MAX_LINE_BYTES = 32 * 1024 * 1024
"""Longest line read; a longer one is a problem (and skipped), so memory stays bounded."""


def read_lines(path: Path) -> Iterator[Line]:
    """Yield every non-blank line of `path`; undecodable or overlong lines carry a problem
    instead of text. Raises `OSError` for a path that is not a regular file (a device, a FIFO:
    `/dev/zero` would never end).

    Reads bytes and decodes line by line, so one bad byte costs one line, not the file."""
    offset = 0
    with path.open("rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        for number, raw in enumerate(bounded_lines(handle), start=1):
            if raw is None:
                yield Line(number, None, f"the line is longer than {MAX_LINE_BYTES} bytes")
                continue
            start, offset = offset, offset + len(raw)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM is not content
                raw, start = raw[3:], start + 3
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Line(number, None, _not_utf8(raw, exc, start))
                continue
            if text.strip():
                yield Line(number, text)


def bounded_lines(handle: BinaryIO) -> Iterator[bytes | None]:
    """Lines of at most `MAX_LINE_BYTES`; None for each longer one (read past, not kept)."""
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield raw
            continue
        while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass
        yield None


def _not_utf8(raw: bytes, exc: UnicodeDecodeError, line_start: int) -> str:
    bad = raw[exc.start : exc.start + 1].hex()
    return (
        f"not valid UTF-8: byte 0x{bad} at byte {exc.start} of the line "
        f"(byte {line_start + exc.start} of the file); re-save the file as UTF-8 "
        "(e.g. `iconv -f latin1 -t utf-8`)"
    )


def unreadable_json(exc: ValueError | RecursionError) -> str:
    """Why `json.loads` refused a line that is not a syntax error (`JSONDecodeError` is one):
    nesting past the recursion limit, or an integer past Python's digit limit."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "digits" in str(exc):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return f"unreadable JSON: {exc}"[:300]


def parse_line(
    text: str, number: int, last_role: LastRole = "user"
) -> tuple[Row | None, list[str]]:
    """Parse and check one JSONL line: the row when it is valid, and every problem found.
    `last_role`: whose turn must end `messages` (`LastRole`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [
            f"invalid JSON at column {exc.colno}: {exc.msg}; each line must be one JSON object "
            "(no trailing commas, strings in double quotes, no line breaks inside)"
        ]
    except (ValueError, RecursionError) as exc:
        return None, [unreadable_json(exc)]
    if not isinstance(data, dict):
        return None, [
            f"the line is a JSON {_kind(data)}, not an object; write "
            '{"messages": [...], ...} on each line'
        ]
    problems = check_messages(data.get("messages", _MISSING), last_role)
    problems += check_tools(data.get("tools"))
    if problems:
        return None, problems
    item = {key: value for key, value in data.items() if key not in ("messages", "tools")}
    return Row(data["messages"], data.get("tools"), item, number), []


_MISSING: Any = object()


def check_messages(messages: Any, last_role: LastRole = "user") -> list[str]:
    """Every problem with a row's `messages`, which must end with `last_role`'s turn."""
    if messages is _MISSING:
        return ['no `messages`: add "messages": [{"role": "user", "content": "…"}]']
    if not isinstance(messages, list):
        return [f"`messages` is a {_kind(messages)}; it must be a list of chat messages"]
    if not messages:
        return ["`messages` is empty; add at least the user's message"]
    problems = []
    for index, message in enumerate(messages):
        problems += check_message(message, f"messages[{index}]")
    last = messages[-1]
    role = last.get("role") if isinstance(last, dict) else None
    if last_role is None or role not in ROLES or role == last_role:
        return problems
    if last_role == "user":
        problems.append(
            f"the last message is from {role!r}, not 'user': the prompt must end with the "
            "user's turn (the model writes the next one); drop trailing answers or move them "
            "into an item field such as `reference_answer`"
        )
    else:
        problems.append(
            f"the last message is from {role!r}, not 'assistant': a supervised row ends with "
            "the assistant's answer, the text the model learns to write; add it (or, for an "
            "`sft_warmup`, set `completion`)"
        )
    return problems


def check_message(message: Any, where: str) -> list[str]:
    """Every problem with one chat message."""
    if not isinstance(message, dict):
        return [f"{where} is a {_kind(message)}; it must be an object with `role` and `content`"]
    problems = []
    role = message.get("role")
    if role is None:
        problems.append(f"{where} has no `role`; use one of {', '.join(ROLES)}")
    elif role not in ROLES:
        hint = difflib.get_close_matches(str(role).lower(), ROLES, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(f"{where} has unknown role {role!r}{did}; use one of {', '.join(ROLES)}")
    if "content" not in message:
        if not (role == "assistant" and message.get("tool_calls")):
            problems.append(f"{where} has no `content`; add the message text")
    else:
        problems += _check_content(message["content"], role, where)
    return problems


def _check_content(content: Any, role: Any, where: str) -> list[str]:
    if isinstance(content, str) or (content is None and role == "assistant"):
        return []
    if not isinstance(content, list):
        return [
            f"{where}.content is a {_kind(content)}; it must be a string or a list of "
            'content parts such as {"type": "text", "text": "…"}'
        ]
    problems = []
    for index, part in enumerate(content):
        at = f"{where}.content[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            problems.append(f'{at} must be an object with a `type`, e.g. {{"type": "text", …}}')
        elif part["type"] in TEXT_PART_TYPES and not isinstance(part.get("text"), str):
            problems.append(f"{at} is a {part['type']!r} part without a string `text`")
    return problems


def check_tools(tools: Any) -> list[str]:
    """Every problem with a row's optional `tools` (OpenAI function tools)."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        return [f"`tools` is a {_kind(tools)}; it must be a list of function tools"]
    problems = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            problems.append(
                f'tools[{index}] must look like {{"type": "function", "function": '
                '{"name": "…", "parameters": {…}}}'
            )
    return problems


def prompt_text(row: Row) -> str:
    """The prompt's text (every message's text content, joined by newlines)."""
    parts: list[str] = []
    for message in row.messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p["text"] for p in content if p.get("type") in TEXT_PART_TYPES)
    return "\n".join(parts)


def _kind(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else "value")
