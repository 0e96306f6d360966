"""`GradeContext`: what a deployment tells graders that is not part of a grader spec.

Who is grading (so sandbox workers are never shared between owners) and, for the graders that
call out, where judge models live and what limits apply. Pure-text graders ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GradeContext:
    """Deployment settings for one grading call; the default suits local use."""

    owner: str = "local"
    """Project or user the grading is for; a sandbox worker never serves two owners."""
    judges: dict[str, Any] = field(default_factory=dict)
    """Judge endpoint settings per model name (see `graders/judges.py`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Further per-grader-kind settings (sandbox limits, embedding endpoint, …)."""
