"""Generate `docs/graders.md` from the grader registry and the spec models, so the reference
cannot drift from the code: one section per row of `registry.py`, in its order.

`python -m openrft.docgen` (`make docs`) rewrites it; a test fails when the committed page
differs from what this renders.
"""

from __future__ import annotations

import inspect
import sys
from typing import get_args

from openrft.docgen import field_table
from openrft.graders.registry import REGISTRY, GraderType
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

Generated from `src/openrft/graders/registry.py` and `spec.py` by `make docs`; do not edit by
hand.

Every grader returns a reward (usually in [0, 1]) per sample. Text fields that "may hold
templates" may use `{{ sample.output_text }}`, `{{ sample.output_json.key }}`,
`{{ sample.output_tools[0].function.name }}`,
`{{ sample.output_answer }}` (the `<answer>…</answer>` content, or the whole output) and
`{{ item.any.field[0] }}`. A variable that does not exist scores that sample 0 with
`invalid_variable_error`.

SeekrFlow's `reward_components` compile to a `multi` grader; see the SeekrFlow section at the end.
"""


ALIASES = {"Grader": Grader, "LeafGrader": LeafGrader, "ContentPart": ContentPart}
"""Named unions, printed by name instead of expanded."""


def _table(model: type[SpecModel]) -> list[str]:
    return field_table(model, ALIASES)


def _graded_by(row: GraderType) -> str:
    calls_out = "; it waits on the network, so training grades it in a worker thread"
    return f"Graded by `{row.module}`{calls_out if row.io_bound else ''}."


def render() -> str:
    """The whole reference page as Markdown."""
    MultiGrader.model_rebuild()  # resolve the recursive `graders` annotation before printing it
    out = [_INTRO]
    for row in REGISTRY:
        model = GRADER_TYPES[row.name]
        out += [f"## `{row.name}` — {model.__name__}", "", inspect.getdoc(model) or "", ""]
        out += [_graded_by(row), "", *_table(model), ""]
    out += ["## Shared parts", ""]
    for model in (ModelInput, SamplingParams, *get_args(get_args(ContentPart)[0])):
        out += [f"### {model.__name__}", "", inspect.getdoc(model) or "", "", *_table(model), ""]
    from openrft.graders import seekr

    out += ["## SeekrFlow `reward_components`", "", inspect.getdoc(seekr) or "", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
