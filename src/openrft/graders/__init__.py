"""The reward engine: `grade(spec, sample, item)` and `grade_batch(spec, samples, items)`.

Specs come from `load_grader` (either dialect: OpenAI grader JSON, or SeekrFlow
`reward_components`). Each grader type lives in its own module exposing
`grade_batch(spec, samples, items, context) -> Sequence[GradeResult]` (a list, or a
`GradeResults` that builds each result on first access); `registry.py` has one row per type
naming that module, imported on first use so loading the engine stays light (no torch here).

The package, by concern:

    registry.py      one row per grader type: its spec model, the module grading it, whether
                     it waits on the network
    spec.py          the specs (pydantic, OpenAI's class and field names) and `parse_grader`
    seekr.py         SeekrFlow `reward_components` -> the same spec tree
    string_check.py, text_similarity.py, model_grader.py (score_model, label_model),
    python_grader.py, endpoint.py, multi.py, format_check.py, math_accuracy.py
                     the grader types, each exposing `grade_batch`
    metrics/         the numbers behind text_similarity: BLEU/GLEU/ROUGE, WordNet, embeddings
    sandbox/         the python grader's isolation layers, its workers and their pool
    sample.py, template.py, result.py, context.py
                     what a grader reads, renders and returns, and what a deployment tells it
    expression.py    multi's `calculate_output`, parsed and evaluated without `eval`
    judges.py, retry.py, outbound.py
                     calling out: where judges live, retries, which hosts a tenant may reach
    audit.py         reward-hacking probes run through the real graders
    reward.py        a grader as a reward function: `grader(prompts, completions, **columns)`,
                     `grader.as_fn()`, with each prompt's completions grouped for group graders

(`docs/graders.md` is generated from the registry and the specs by `openrft.docgen.graders`.)
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import yaml

from openrft.errors import Problem, SpecError
from openrft.graders.context import GradeContext
from openrft.graders.registry import grader_type, is_group_wise
from openrft.graders.result import GraderErrors, GradeResult, GradeResults
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import Grader, parse_grader

__all__ = [
    "GradeContext",
    "GradeResult",
    "GradeResults",
    "Grader",
    "GraderErrors",
    "Item",
    "Sample",
    "grade",
    "grade_batch",
    "is_group_wise",
    "load_grader",
    "load_grader_file",
]

BatchGrader = Callable[..., Sequence[GradeResult]]
"""`grade_batch(spec, samples, items, context[, groups=sizes])` of a grader module."""


def _batch_grader(kind: str) -> BatchGrader:
    fn: BatchGrader = importlib.import_module(grader_type(kind).module).grade_batch
    return fn


def _as_sample(sample: Sample | str) -> Sample:
    return sample if isinstance(sample, Sample) else Sample.from_text(sample)


def check_groups(groups: Sequence[int] | None, n: int) -> list[int]:
    """`groups` (sizes of consecutive groups) checked against a batch of `n`; None: every
    sample is a group of its own."""
    if groups is None:
        return [1] * n
    sizes = list(groups)
    if any(not isinstance(size, int) or size < 1 for size in sizes) or sum(sizes) != n:
        raise ValueError(
            f"groups {sizes[:20]} must be positive sizes summing to the {n} samples, "
            "one per consecutive group of completions for the same prompt"
        )
    return sizes


def grade_batch(
    spec: Grader,
    samples: Sequence[Sample | str],
    items: Sequence[Item],
    context: GradeContext | None = None,
    groups: Sequence[int] | None = None,
) -> GradeResults:
    """Grade `samples[i]` against `items[i]` for every i; one result per sample, never raises
    for a bad sample (its failure is flagged in the result). `.rewards` reads the rewards
    without building the per-sample result objects.

    `groups` are the sizes of the batch's consecutive groups (the completions sampled for one
    prompt, which share its item); only group-wise graders (`registry.is_group_wise`) read
    them. None: every sample is a group of one."""
    if len(samples) != len(items):
        raise ValueError(f"{len(samples)} samples but {len(items)} items; pass one item per sample")
    sizes = check_groups(groups, len(samples))
    if not samples:
        return GradeResults.of([])
    started = perf_counter()
    extra = {"groups": sizes} if grader_type(spec.type).groups else {}
    results = GradeResults.of(
        _batch_grader(spec.type)(
            spec, [_as_sample(s) for s in samples], items, context or GradeContext(), **extra
        )
    )
    results.set_execution_time((perf_counter() - started) / len(results))
    return results


def grade(
    spec: Grader, sample: Sample | str, item: Item, context: GradeContext | None = None
) -> GradeResult:
    """Grade one sample against one item."""
    return grade_batch(spec, [sample], [item], context)[0]


def load_grader(data: Any) -> Grader:
    """Validate a spec in either dialect: an OpenAI grader, or a SeekrFlow object with
    `reward_components` (compiled to the same `multi` grader tree)."""
    if isinstance(data, Mapping) and "reward_components" in data:
        from openrft.graders import seekr

        return seekr.compile_reward_components(data)
    if isinstance(data, Mapping) and "grader" in data and "type" not in data:
        return parse_grader(data["grader"])
    return parse_grader(data)


def read_spec_file(path: str | Path) -> Any:
    """Read a JSON or YAML file; syntax errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(str(path), f"cannot read the file: {exc}")]) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError([Problem(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError([Problem(where, f"invalid YAML: {exc}")]) from None


def load_grader_file(path: str | Path) -> Grader:
    """Load and validate a grader spec from a JSON or YAML file (either dialect)."""
    return load_grader(read_spec_file(path))
