"""`string_check`: eq / ne / like / ilike on two rendered templates.

`like` and `ilike` mean *input contains reference* (OpenAI's semantics, not SQL patterns); an empty
input or reference never passes them, so an empty answer cannot earn the reward.
"""

from __future__ import annotations

from collections.abc import Callable

from openrft.errors import TemplateError
from openrft.graders.context import per_sample
from openrft.graders.result import GradeResult
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import StringCheckGrader
from openrft.graders.template import render


def _like(text: str, reference: str) -> bool:
    return bool(text) and bool(reference) and reference in text


def _ilike(text: str, reference: str) -> bool:
    return _like(text.casefold(), reference.casefold())


OPERATIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda text, reference: text == reference,
    "ne": lambda text, reference: text != reference,
    "like": _like,
    "ilike": _ilike,
}


def grade(spec: StringCheckGrader, sample: Sample, item: Item) -> GradeResult:
    try:
        text = render(spec.input, sample, item)
        reference = render(spec.reference, sample, item)
    except TemplateError as exc:
        return GradeResult.failed(spec.name, spec.type, "invalid_variable_error", str(exc))
    return GradeResult.of(spec.name, spec.type, float(OPERATIONS[spec.operation](text, reference)))


grade_batch = per_sample(grade)
