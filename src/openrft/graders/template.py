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
from functools import lru_cache
from typing import Any

from openrft.errors import TemplateError
from openrft.graders.sample import Sample

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


def lookup(root: Any, namespace: str, path: Path, walked: str | None = None) -> Any:
    """Resolve `path` in `root`; raise `TemplateError` naming the first segment that is missing.
    `walked` is how `root` itself is written (the namespace, unless `root` lies inside it)."""
    value = root
    walked = walked or namespace
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


class Template:
    """A template parsed once: literal text and `(namespace, path)` variables, in order.

    `render` takes the `sample` either as a `Sample` (its fields are read directly, without
    building `Sample.namespace()`) or as a mapping (the namespace itself)."""

    __slots__ = ("parts", "single")

    def __init__(self, template: str) -> None:
        parts: list[str | tuple[str, Path]] = []
        end = 0
        for match in _VARIABLE.finditer(template):
            if match.start() > end:
                parts.append(template[end : match.start()])
            parts.append((match.group(1), parse_path(match.group(2))))
            end = match.end()
        if end < len(template):
            parts.append(template[end:])
        self.parts = tuple(parts)
        only = parts[0] if len(parts) == 1 else None
        self.single: tuple[str, Path] | None = only if isinstance(only, tuple) else None
        """`(namespace, path)` when the whole template is one variable."""

    def value(self, namespace: str, path: Path, sample: Any, item: Mapping[str, Any]) -> Any:
        """The value one variable refers to."""
        if namespace == "item":
            return lookup(item, namespace, path)
        if not isinstance(sample, Sample):
            return lookup(sample, namespace, path)
        if not path or not isinstance(path[0], str):
            return lookup(sample.namespace(), namespace, path)
        try:
            root = sample.variable(path[0])
        except KeyError:
            raise TemplateError(f"`sample.{path[0]}` does not exist in this sample") from None
        return lookup(root, namespace, path[1:], walked=f"sample.{path[0]}")

    def render(self, sample: Any, item: Mapping[str, Any]) -> str:
        """The text with every variable replaced by its value; `TemplateError` if one is missing."""
        return "".join(
            part if isinstance(part, str) else to_text(self.value(*part, sample, item))
            for part in self.parts
        )

    def render_all(
        self, samples: Sequence[Sample], items: Sequence[Mapping[str, Any]]
    ) -> list[str | TemplateError]:
        """`render` for each (sample, item); a sample whose variable is missing gets its error.
        The common whole-template forms (`{{ sample.output_text }}`, `{{ item.key }}`) are read
        straight from the objects."""
        if self.single == ("sample", ("output_text",)):
            return [sample.output_text for sample in samples]
        key = self.single[1][0] if self.single and len(self.single[1]) == 1 else None
        if self.single is not None and self.single[0] == "item" and isinstance(key, str):
            try:
                values = [item[key] for item in items]
            except (KeyError, TypeError):
                pass  # some item lacks it: the general path below says which
            else:
                if all(type(value) is str for value in values):
                    return values
        out: list[str | TemplateError] = []
        for sample, item in zip(samples, items, strict=True):
            try:
                out.append(self.render(sample, item))
            except TemplateError as exc:
                out.append(exc)
        return out


@lru_cache(maxsize=4096)
def compile_template(template: str) -> Template:
    """The parsed form of `template` (cached: graders render the same few templates)."""
    return Template(template)


def render(template: str, sample: Any, item: Mapping[str, Any]) -> str:
    """Replace every `{{ sample.… }}` / `{{ item.… }}` with its value. `sample` is a `Sample` or
    the mapping `Sample.namespace()` returns."""
    if "{{" not in template:
        return template
    return compile_template(template).render(sample, item)
