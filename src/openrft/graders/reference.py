"""Generate `docs/graders.md` from the spec models, so the reference cannot drift from the code.

`python -m openrft.graders.reference > docs/graders.md` rewrites it; a test fails when the
committed page differs from what this prints.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, get_args

from pydantic.fields import FieldInfo

from openrft.graders.spec import (
    GRADER_TYPES,
    ContentPart,
    Grader,
    LeafGrader,
    ModelInput,
    MultiGrader,
    SamplingParams,
    SpecModel,
)

_INTRO = """# Grader reference

Generated from `src/openrft/graders/spec.py` by `make docs`; do not edit by hand.

Every grader returns a reward (usually in [0, 1]) per sample. Text fields that "may hold
templates" may use `{{ sample.output_text }}`, `{{ sample.output_json.key }}`,
`{{ sample.output_tools[0].function.name }}`,
`{{ sample.output_answer }}` (the `<answer>…</answer>` content, or the whole output) and
`{{ item.any.field[0] }}`. A variable that does not exist scores that sample 0 with
`invalid_variable_error`.

SeekrFlow's `reward_components` compile to a `multi` grader; see the SeekrFlow section at the end.
"""


def _type_name(annotation: Any) -> str:
    """A readable type: named aliases instead of their expanded unions."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    for alias, name in (
        (Grader, "Grader"),
        (LeafGrader, "LeafGrader"),
        (ContentPart, "ContentPart"),
    ):
        text = text.replace(str(alias), name)
    for prefix in ("typing.", "openrft.graders.spec.", "typing_extensions."):
        text = text.replace(prefix, "")
    return text.replace("NoneType", "null").replace("|", "\\|")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return "`" + repr(info.default_factory()) + "`"  # type: ignore[call-arg]
    return "`" + repr(info.default) + "`"


def _table(model: type[SpecModel]) -> list[str]:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {_type_name(info.annotation)} | {_default(info)} | {doc} |")
    return lines


def render() -> str:
    """The whole reference page as Markdown."""
    MultiGrader.model_rebuild()  # resolve the recursive `graders` annotation before printing it
    out = [_INTRO]
    for type_name, model in GRADER_TYPES.items():
        out += [f"## `{type_name}` — {model.__name__}", "", inspect.getdoc(model) or "", ""]
        out += [*_table(model), ""]
    out += ["## Shared parts", ""]
    for model in (ModelInput, SamplingParams, *get_args(get_args(ContentPart)[0])):
        out += [f"### {model.__name__}", "", inspect.getdoc(model) or "", "", *_table(model), ""]
    from openrft.graders import seekr

    out += ["## SeekrFlow `reward_components`", "", inspect.getdoc(seekr) or "", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
