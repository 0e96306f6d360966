"""Reference pages generated from the code, so they cannot drift from it.

`python -m openrft.docgen` (`make docs`) rewrites every page; a test per page fails when the
committed one differs from what this renders:

- `docs/graders.md`: the grader specs (`graders.py`), the whole page;
- `docs/training-config.md`: the job config fields of every dialect (`training.py`), the part
  between its `<!-- fields -->` markers (the guide around them is written by hand).

Each field's text is its attribute docstring (`use_attribute_docstrings`); a field without one
fails the page's test.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

START, END = "<!-- fields -->", "<!-- /fields -->"
"""Markers around the generated part of a page written partly by hand."""


def type_name(annotation: Any, aliases: Mapping[str, Any] | None = None) -> str:
    """A readable type: named aliases instead of their expanded unions, no module prefixes."""
    members = get_args(annotation) if get_origin(annotation) is Union else ()
    if members and all(isinstance(m, type) or get_origin(m) is Literal for m in members):
        # `bool | Literal["auto"]` is a typing.Union, which prints as `Union[...]`
        return " \\| ".join(type_name(m, aliases) for m in members)
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    for name, alias in (aliases or {}).items():
        text = text.replace(str(alias), name)
    text = re.sub(r"\b(?:typing|typing_extensions|openrft(?:\.[a-z_]+)+)\.", "", text)
    return text.replace("NoneType", "null").replace("|", "\\|")


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return "`" + repr(info.default_factory()) + "`"  # type: ignore[call-arg]
    value = info.default
    if isinstance(value, BaseModel):
        return "`" + type(value).__name__ + "()`"
    return "`" + repr(value) + "`"


def field_table(model: type[BaseModel], aliases: Mapping[str, Any] | None = None) -> list[str]:
    """A Markdown table of `model`'s fields: name, type, default and docstring."""
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        kind = type_name(info.annotation, aliases)
        lines.append(f"| `{name}` | {kind} | {default_text(info)} | {doc} |")
    return lines


def model_section(
    model: type[BaseModel], heading: str, aliases: Mapping[str, Any] | None = None
) -> list[str]:
    """A heading, the model's docstring and its field table."""
    return [heading, "", inspect.getdoc(model) or "", "", *field_table(model, aliases), ""]


def undocumented(models: list[type[BaseModel]]) -> list[str]:
    """`Model.field` for every field without a docstring."""
    return [
        f"{model.__name__}.{name}"
        for model in models
        for name, info in model.model_fields.items()
        if not (info.description or "").strip()
    ]


def splice(page: str, generated: str) -> str:
    """`page` with the part between the markers replaced by `generated`."""
    head, found, rest = page.partition(START)
    _, ended, tail = rest.partition(END)
    if not (found and ended):
        raise ValueError(f"the page lacks the {START} … {END} markers")
    return f"{head}{START}\n{generated.strip()}\n{END}{tail}"
