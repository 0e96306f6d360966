"""`multi`: run every sub-grader over the batch, then combine per sample with `calculate_output`.

Sub-graders run batch-wise (one sandbox batch, one burst of judge calls), not sample by sample.
A sub-grader's error flags carry up to the multi result; a formula that fails to evaluate for a
sample (say `log(0)`) scores that sample 0 with `formula_parse_error`. With `invalid_grade` set,
every failed sample (a sub-grader's flag or the formula's) scores `invalid_grade` instead, flags
kept. `pass_threshold` adds `passed` to `metadata.scores`, judged on the final reward.

A group-wise sub-grader (python `grade_group`, score_model `group`) gets the batch's `groups`
and contributes per-sample values computed group by group; the formula still combines them one
sample at a time, so `0.5 * rank + 0.5 * correct` mixes a relative and an absolute reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openrft.errors import FormulaError
from openrft.graders.context import GradeContext
from openrft.graders.expression import parse
from openrft.graders.result import GradeMetadata, GraderErrors, GradeResult, GradeResults
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import MultiGrader


def grade_batch(
    spec: MultiGrader,
    samples: Sequence[Sample],
    items: Sequence[Item],
    context: GradeContext,
    groups: Sequence[int] | None = None,
) -> GradeResults:
    from openrft.graders import grade_batch as dispatch

    formula = parse(spec.calculate_output, set(spec.graders))
    by_grader = {
        key: dispatch(sub, samples, items, context=context, groups=groups)
        for key, sub in spec.graders.items()
    }

    def combine(i: int) -> GradeResult:
        return _combine(spec, formula, {key: results[i] for key, results in by_grader.items()})

    # Rewards come from the sub-graders' reward columns; a sample's combined result (which
    # builds its sub-results) is made now only when it failed somewhere, else on first access.
    columns = {key: results.rewards for key, results in by_grader.items()}
    failed = {i for results in by_grader.values() for i, _ in results.failures()}
    rewards: list[float] = []
    given: dict[int, GradeResult] = {}
    for i in range(len(samples)):
        try:
            rewards.append(formula.evaluate({key: column[i] for key, column in columns.items()}))
        except FormulaError:
            failed.add(i)
            rewards.append(0.0)
        if i in failed:  # its reward is the combined one (`invalid_grade` when set)
            given[i] = combine(i)
            rewards[i] = given[i].reward
    return GradeResults(rewards, combine, given)


def _combine(spec: MultiGrader, formula: Any, parts: dict[str, GradeResult]) -> GradeResult:
    errors = GraderErrors()
    usage: dict[str, Any] = {}
    for key, part in parts.items():
        errors.merge(_named_details(part.errors, key))
        for model, tokens in part.model_grader_token_usage_per_model.items():
            usage[model] = _add_usage(usage.get(model), tokens)
    rewards = {key: part.reward for key, part in parts.items()}
    reward = _reward(spec, formula, rewards, errors)
    scores: dict[str, Any] = {key: part.metadata.scores for key, part in parts.items()}
    if spec.pass_threshold is not None:
        scores["passed"] = reward >= spec.pass_threshold
    token_usage = [p.metadata.token_usage for p in parts.values() if p.metadata.token_usage]
    return GradeResult(
        reward=reward,
        sub_rewards=rewards,
        model_grader_token_usage_per_model=usage,
        metadata=GradeMetadata(
            name=spec.name,
            type=spec.type,
            execution_time=sum(p.metadata.execution_time for p in parts.values()),
            scores=scores,
            token_usage=sum(token_usage) if token_usage else None,
            errors=errors,
        ),
    )


def _named_details(errors: GraderErrors, key: str) -> GraderErrors:
    """`errors` with each detail text saying which sub-grader it comes from ("grader `fmt`:
    Traceback ..."), so that a multi's error names the grader that failed."""
    named = errors.model_copy()
    for field, value in errors.__dict__.items():
        if field.endswith("_details") and isinstance(value, str) and value:
            setattr(named, field, f"grader `{key}`: {value}")
    return named


def _reward(
    spec: MultiGrader, formula: Any, rewards: dict[str, float], errors: GraderErrors
) -> float:
    """The formula's value; on failure flag it, and score `invalid_grade` (else 0)."""
    try:
        reward = formula.evaluate(rewards)
    except FormulaError as exc:
        errors.formula_parse_error = True
        errors.other_error_details = errors.other_error_details or str(exc)
        reward = 0.0
    if errors.any() and spec.invalid_grade is not None:
        return spec.invalid_grade
    return float(reward)


def _add_usage(total: Any, more: Any) -> Any:
    if total is None:
        return dict(more) if isinstance(more, dict) else more
    if isinstance(total, dict) and isinstance(more, dict):
        return {k: total.get(k, 0) + more.get(k, 0) for k in {*total, *more}}
    if isinstance(total, int | float) and isinstance(more, int | float):
        return total + more
    return more
