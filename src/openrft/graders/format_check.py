"""`format_check`: SeekrFlow's format reward — 1 when the output is one `<think>…</think>` block
followed by one `<answer>…</answer>` block, else 0.

SeekrFlow's docs describe the format only by the system prompt they recommend ("The reasoning
process and answer are enclosed within <think> </think> and <answer> </answer> tags, i.e.,
<think> reasoning process here </think><answer> answer here </answer>"); `seekrai` 0.35.1 ships
no scoring code. OpenRFT's exact rule, so a reward can be predicted from the text:
- only whitespace may come before `<think>`, between `</think>` and `<answer>`, and after
  `</answer>` (newlines or none, as models write them);
- each of the four tags appears exactly once, in that order (no nesting, no second answer);
- the answer holds something besides whitespace; the reasoning may be empty.
Tags are matched case-sensitively, as the prompt writes them.

Not handled: chat templates that put `<think>` in the *prompt* (the completion then starts inside
the reasoning and fails this check); grade such models with a python grader instead.
"""

from __future__ import annotations

import re

from openrft.errors import TemplateError
from openrft.graders.context import per_sample
from openrft.graders.result import GradeResult
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import FormatCheckGrader
from openrft.graders.template import render

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_SHAPE = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)


def is_well_formatted(text: str) -> bool:
    """True when `text` is `<think>…</think><answer>…</answer>` under the rule above."""
    found = _SHAPE.fullmatch(text)
    if found is None:
        return False
    reasoning, answer = found.groups()
    if any(tag in reasoning or tag in answer for tag in TAGS):
        return False
    return bool(answer.strip())


def grade(spec: FormatCheckGrader, sample: Sample, item: Item) -> GradeResult:
    try:
        text = render(spec.input, sample, item)
    except TemplateError as exc:
        return GradeResult.failed(spec.name, spec.type, "invalid_variable_error", str(exc))
    return GradeResult.of(spec.name, spec.type, float(is_well_formatted(text)))


grade_batch = per_sample(grade)
