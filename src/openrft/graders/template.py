"""`{{ sample.output_text }}` / `{{ item.a.b[2] }}` templates.

Only the two namespaces OpenAI defines are allowed (`sample` and `item`), with dotted keys and
integer (or quoted-key) indexes. There are no filters, expressions or code: a template is data, so
rendering one cannot execute anything. A path that does not resolve raises `TemplateError`, which
graders record as `invalid_variable_error` on that sample.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from openrft.errors import TemplateError

_SEGMENT = r"(?:\.[A-Za-z_][\w\-]*|\[\s*\d+\s*\]|\[\s*\"[^\"]*\"\s*\]|\[\s*'[^']*'\s*\])"
_VARIABLE = re.compile(r"\{\{\s*(sample|item)((?:" + _SEGMENT + r")*)\s*\}\}")
_PARTS = re.compile(
    r"\.([A-Za-z_][\w\-]*)|\[\s*(\d+)\s*\]|\[\s*\"([^\"]*)\"\s*\]|\[\s*'([^']*)'\s*\]"
)
_ANY_BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)

Path = tuple[str | int, ...]


def parse_path(segments: str) -> Path:
    """`.a.b[2]["c d"]` -> ("a", "b", 2, "c d")."""
    parts: list[str | int] = []
    for name, index, dq, sq in _PARTS.findall(segments):
        if name:
            parts.append(name)
        elif index:
            parts.append(int(index))
        else:
            parts.append(dq or sq)
    return tuple(parts)


def variables(template: str) -> Iterator[tuple[str, Path]]:
    """Every `(namespace, path)` a template refers to, in order."""
    for match in _VARIABLE.finditer(template):
        yield match.group(1), parse_path(match.group(2))


def malformed(template: str) -> list[str]:
    """The `{{ … }}` blocks that are not a valid `sample`/`item` reference."""
    bad = []
    for match in _ANY_BRACES.finditer(template):
        if not _VARIABLE.fullmatch(match.group(0)):
            bad.append(match.group(0))
    return bad


def lookup(root: Any, namespace: str, path: Path) -> Any:
    """Resolve `path` in `root`; raise `TemplateError` naming the first segment that is missing."""
    value = root
    walked = namespace
    for part in path:
        try:
            if isinstance(part, int):
                if not isinstance(value, Sequence) or isinstance(value, str):
                    raise TypeError
                value = value[part]
            else:
                if not isinstance(value, Mapping):
                    raise TypeError
                value = value[part]
        except (KeyError, IndexError, TypeError):
            shown = f"{walked}[{part}]" if isinstance(part, int) else f"{walked}.{part}"
            raise TemplateError(f"`{shown}` does not exist in this {namespace}") from None
        walked = f"{walked}[{part}]" if isinstance(part, int) else f"{walked}.{part}"
    return value


def to_text(value: Any) -> str:
    """How a value appears inside rendered text: strings as-is, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(template: str, sample: Mapping[str, Any], item: Mapping[str, Any]) -> str:
    """Replace every `{{ sample.… }}` / `{{ item.… }}` with its value."""
    if "{{" not in template:
        return template
    roots = {"sample": sample, "item": item}

    def replace(match: re.Match[str]) -> str:
        namespace = match.group(1)
        return to_text(lookup(roots[namespace], namespace, parse_path(match.group(2))))

    return _VARIABLE.sub(replace, template)
