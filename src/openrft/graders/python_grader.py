"""`python`: the user's `def grade(sample, item) -> float`, run in the sandbox, batch-wise.

`sample` is `Sample.namespace()` (a dict: `output_text`, `output_json`, `output_tools`,
`output_answer`) and `item` the dataset row, both passed as JSON. One persistent sandboxed worker
grades the whole batch (`sandbox/pool.py`); the layers and limits are `sandbox/layers.py`'s, set
per deployment with `GradeContext.options["python_grader"]` (keys: `SandboxLimits`' fields).

Failures are data, one flag per kind:

| what happened                     | flag (details in `python_grader_runtime_error_details`) |
|-----------------------------------|-----------------------------------------------------------|
| `grade()` raised                  | `python_grader_runtime_error` (the trimmed traceback)     |
| returned a non-number, NaN or inf | `python_grader_invalid_output_error`                      |
| ran past `timeout_seconds`        | `python_grader_timeout_error`                             |
| ran out of memory                 | `python_grader_memory_error`                              |
| the sandbox failed                | `python_grader_server_error` (`…_server_error_type`)      |

A job fails only when `check_error_rate` says so (see `ERROR_RATE_THRESHOLD`). This module does
NOT refuse unsafe machines itself beyond `sandbox.check_policy`, which raises `SandboxError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from pydantic import ValidationError

from openrft.errors import ConfigError, GradingError, problems_from
from openrft.graders.context import GradeContext
from openrft.graders.result import GradeResult, GradeResults
from openrft.graders.sample import Item, Sample
from openrft.graders.sandbox import Outcome, SandboxLimits, check_policy, detect_layers, run_batch
from openrft.graders.spec import PythonGrader

ERROR_RATE_THRESHOLD = 0.2
"""A grading call fails the job when more than this share of its samples carry an error flag…"""
MIN_ERRORS_TO_FAIL = 5
"""…and at least this many of them do (or every sample does, in a smaller call)."""
SAMPLE_TRACEBACKS = 3
"""How many distinct error details `check_error_rate` shows."""

_FLAGS = {
    "runtime": "python_grader_runtime_error",
    "invalid": "python_grader_invalid_output_error",
    "timeout": "python_grader_timeout_error",
    "memory": "python_grader_memory_error",
}


def limits_from(context: GradeContext) -> SandboxLimits:
    """The deployment's `python_grader` options; every problem reported as a `ConfigError`."""
    options = context.options.get("python_grader", {})
    try:
        return SandboxLimits.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(
            problems_from(exc, SandboxLimits, "$.python_grader"), "invalid options"
        ) from None


def pool_key(spec: PythonGrader, context: GradeContext, limits: SandboxLimits) -> tuple[str, ...]:
    """Workers are shared only by calls with the same owner, grader, source and limits."""
    digest = hashlib.sha256(spec.source.encode()).hexdigest()
    return (context.owner, spec.name, digest, limits.model_dump_json())


def grade_batch(
    spec: PythonGrader, samples: Sequence[Sample], items: Sequence[Item], context: GradeContext
) -> GradeResults:
    """Grade every sample in one sandboxed worker; raises only `SandboxError`/`ConfigError`."""
    limits = limits_from(context)
    layers = detect_layers()
    check_policy(layers, limits)
    failed: dict[int, GradeResult] = {}
    payloads: list[bytes] = []
    for i, (sample, item) in enumerate(zip(samples, items, strict=True)):
        try:
            payloads.append(json.dumps({"sample": sample.namespace(), "item": dict(item)}).encode())
        except (TypeError, ValueError) as exc:
            failed[i] = _failed(spec, "other_error", f"item is not JSON-serializable: {exc}")
    outcomes = iter(
        run_batch(pool_key(spec, context, limits), spec.source, limits, layers, payloads)
    )
    scored: dict[int, Outcome] = {}  # successes: their results are built on first access
    rewards: list[float] = []
    for i in range(len(samples)):
        if i not in failed:
            outcome = next(outcomes)
            if outcome.kind == "ok":
                scored[i] = outcome
            else:
                failed[i] = _result(spec, outcome)
        rewards.append(scored[i].score if i in scored else 0.0)
    return GradeResults(rewards, lambda i: _result(spec, scored[i]), failed)


def _result(spec: PythonGrader, outcome: Outcome) -> GradeResult:
    if outcome.kind == "ok":
        scores = (
            {} if spec.pass_threshold is None else {"passed": outcome.score >= spec.pass_threshold}
        )
        return GradeResult.of(spec.name, spec.type, outcome.score, **scores)
    if outcome.kind == "server":
        return GradeResult.failed(
            spec.name, spec.type, "python_grader_server_error", outcome.details
        )
    return _failed(spec, _FLAGS[outcome.kind], outcome.details)


def _failed(spec: PythonGrader, flag: str, details: str) -> GradeResult:
    result = GradeResult.failed(spec.name, spec.type, flag)
    if flag == "other_error":
        result.errors.other_error_details = details
    else:
        result.errors.python_grader_runtime_error_details = details
    return result


def check_error_rate(
    results: Sequence[GradeResult],
    threshold: float = ERROR_RATE_THRESHOLD,
    min_errors: int = MIN_ERRORS_TO_FAIL,
    total: int | None = None,
) -> None:
    """Raise `GradingError` (with sample tracebacks) when too many samples failed to grade.

    Fails when more than `threshold` of `results` carry any error flag and at least
    `min(min_errors, len(results))` do: one failing sample in a small batch is noise, a grader
    that fails on every sample is broken. Training calls it on each step's failed results, with
    `total` the number of samples graded (`results` may then hold only the failures)."""
    failed = [r for r in results if r.errors.any()]
    total = len(results) if total is None else total
    if not failed or len(failed) <= threshold * total:
        return
    if len(failed) < min(min_errors, total):
        return
    shown: list[str] = []
    for result in failed:
        detail = _detail(result)
        if detail not in shown:
            shown.append(detail)
        if len(shown) == SAMPLE_TRACEBACKS:
            break
    raise GradingError(
        f"{len(failed)} of {total} samples failed to grade ({len(failed) / total:.0%}"
        f", above the {threshold:.0%} threshold). First errors:\n\n" + "\n\n".join(shown)
    )


def _detail(result: GradeResult) -> str:
    errors = result.errors
    text = (
        errors.python_grader_runtime_error_details
        or errors.python_grader_server_error_type
        or errors.model_grader_server_error_details
        or errors.other_error_details
        or errors.invalid_variable_error_details
        or ""
    )
    return f"[{result.name}: {', '.join(errors.flags())}]\n{text[-2000:]}".rstrip()
