"""Every grader type, one row each: its `type`, its spec model, the module that grades it, and
whether grading it waits on the network.

Everything else that lists grader types reads these rows: `spec.py` builds the `Grader` union
and `GRADER_TYPES` from them, `graders.grade_batch` dispatches through them, training asks
`is_io_bound` whether a tree needs async reward functions (and `is_group_wise` whether it
needs each prompt's completions together), and `openrft.docgen.graders`
documents each row. Adding a grader type is one row here, its spec model in `spec.py` and its
module; `tests/graders/test_registry.py` fails when any of the three is missing.

Rows name things rather than import them: the spec model by its class name in `spec.py` (which
imports this module), the module by its dotted path (imported on first use, so loading the
engine stays light). This module grades nothing and imports nothing from the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openrft.graders.spec import Grader

__all__ = ["REGISTRY", "GraderType", "grader_type", "is_group_wise", "is_io_bound"]


@dataclass(frozen=True)
class GraderType:
    """One grader type."""

    name: str
    """The spec's `type`, e.g. `score_model`."""
    spec: str
    """The name of its pydantic model in `graders/spec.py`, e.g. `ScoreModelGrader`."""
    module: str
    """The module whose `grade_batch(spec, samples, items, context)` grades it."""
    io_bound: bool = False
    """Grading waits on the network (a judge model, the user's endpoint). Training then grades
    in a worker thread behind async reward functions, so a slow call never blocks a step."""
    groups: bool = False
    """Its spec may ask to grade a prompt's whole group of completions at once (python
    `grade_group`, score_model `group`, a `multi` holding either): its `grade_batch` then takes
    `groups=`, the sizes of the consecutive groups in the batch."""


REGISTRY: tuple[GraderType, ...] = (
    GraderType("string_check", "StringCheckGrader", "openrft.graders.string_check"),
    GraderType("text_similarity", "TextSimilarityGrader", "openrft.graders.text_similarity"),
    GraderType(
        "score_model",
        "ScoreModelGrader",
        "openrft.graders.model_grader",
        io_bound=True,
        groups=True,
    ),
    GraderType("label_model", "LabelModelGrader", "openrft.graders.model_grader", io_bound=True),
    GraderType("python", "PythonGrader", "openrft.graders.python_grader", groups=True),
    GraderType("endpoint", "EndpointGrader", "openrft.graders.endpoint", io_bound=True),
    GraderType("multi", "MultiGrader", "openrft.graders.multi", groups=True),
    GraderType("format_check", "FormatCheckGrader", "openrft.graders.format_check"),
    GraderType("math_accuracy", "MathAccuracyGrader", "openrft.graders.math_accuracy"),
)
"""OpenAI's grader types, then SeekrFlow's two, in the order error messages ("use one of …") and
`docs/graders.md` list them."""

_BY_NAME = {row.name: row for row in REGISTRY}


def grader_type(name: str) -> GraderType:
    """The row for the spec `type` `name` (a validated spec always has one)."""
    return _BY_NAME[name]


def is_io_bound(grader: Grader) -> bool:
    """Whether grading `grader` waits on the network: its type does, or, for a `multi`, any
    of its sub-graders (at any depth) does."""
    from openrft.graders.spec import MultiGrader  # spec.py imports this module: import late

    if isinstance(grader, MultiGrader):
        return any(is_io_bound(sub) for sub in grader.graders.values())
    return grader_type(grader.type).io_bound


def is_group_wise(grader: Grader) -> bool:
    """Whether `grader` scores a sample against the rest of its group: a python grader whose
    source defines `grade_group`, a `score_model` with `group`, or a `multi` holding either."""
    from openrft.graders.spec import MultiGrader, PythonGrader, ScoreModelGrader

    if isinstance(grader, MultiGrader):
        return any(is_group_wise(sub) for sub in grader.graders.values())
    if isinstance(grader, PythonGrader):
        return grader.grades_groups
    return isinstance(grader, ScoreModelGrader) and grader.group is not None
