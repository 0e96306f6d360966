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
from openrft.graders import group_judge, python_grader, reward
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


_GROUPS = {
    "python": "a source defining `grade_group(samples, item)` scores a prompt's whole group",
    "score_model": "with `group`, one judge call scores or ranks a prompt's whole group",
    "multi": "a group-wise sub-grader gets each prompt's group; the formula combines per sample",
}
"""How each group-capable type (`GraderType.groups`) grades a group; see Group graders below."""


def _graded_by(row: GraderType) -> str:
    calls_out = "; it waits on the network, so training grades it in a worker thread"
    groups = f" Group-wise: {_GROUPS[row.name]}." if row.groups else ""
    return f"Graded by `{row.module}`{calls_out if row.io_bound else ''}.{groups}"


def render() -> str:
    """The whole reference page as Markdown."""
    MultiGrader.model_rebuild()  # resolve the recursive `graders` annotation before printing it
    out = [_INTRO]
    for row in REGISTRY:
        model = GRADER_TYPES[row.name]
        out += [f"## `{row.name}` — {model.__name__}", "", inspect.getdoc(model) or "", ""]
        out += [_graded_by(row), "", *_table(model), ""]
    out += ["## Graders as TRL reward functions, and group graders", ""]
    out += [inspect.getdoc(reward) or "", ""]
    out += ["### python `grade_group`", "", _section(python_grader, "**Group grading**"), ""]
    out += ["### score_model `group`", "", inspect.getdoc(group_judge) or "", ""]
    out += ["## Shared parts", ""]
    for model in (ModelInput, SamplingParams, *get_args(get_args(ContentPart)[0])):
        out += [f"### {model.__name__}", "", inspect.getdoc(model) or "", "", *_table(model), ""]
    from openrft.graders import seekr

    out += ["## SeekrFlow `reward_components`", "", inspect.getdoc(seekr) or "", ""]
    return "\n".join(out).rstrip() + "\n"


def _section(module: object, start: str) -> str:
    """The paragraph of `module`'s docstring that begins with `start`."""
    doc = inspect.getdoc(module) or ""
    return next(p for p in doc.split("\n\n") if p.startswith(start))


if __name__ == "__main__":
    sys.stdout.write(render())
