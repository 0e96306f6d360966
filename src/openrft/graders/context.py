"""`GradeContext`: what a deployment tells graders that is not part of a grader spec.

Who is grading (so sandbox workers are never shared between owners) and, for the graders that
call out, where judge models live and what limits apply. Pure-text graders ignore it; they lift
their one-sample `grade` to the batch contract with `per_sample`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from openrft.graders.result import GradeResult
from openrft.graders.sample import Item, Sample

SpecT = TypeVar("SpecT")


@dataclass
class GradeContext:
    """Deployment settings for one grading call; the default suits local use."""

    owner: str = "local"
    """Project or user the grading is for; a sandbox worker never serves two owners."""
    judges: dict[str, Any] = field(default_factory=dict)
    """Judge endpoint settings per model name (see `graders/judges.py`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Further per-grader-kind settings (sandbox limits, embedding endpoint, …)."""


def per_sample(
    grade: Callable[[SpecT, Sample, Item], GradeResult],
) -> Callable[[SpecT, Sequence[Sample], Sequence[Item], GradeContext], list[GradeResult]]:
    """The `grade_batch` of a grader that needs no context and nothing shared across samples."""

    def grade_batch(
        spec: SpecT, samples: Sequence[Sample], items: Sequence[Item], context: GradeContext
    ) -> list[GradeResult]:
        del context
        return [grade(spec, sample, item) for sample, item in zip(samples, items, strict=True)]

    return grade_batch
