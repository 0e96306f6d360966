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

**Group grading** (OpenRFT extension): a source defining `grade_group(samples, item) ->
list[float]` scores each group of completions for one prompt together (`groups=` sizes from
`graders.grade_batch`; a group's `item` is its first sample's). Each sample's request carries
its whole group; the worker runs `grade_group` once per group (`group_source` appends the
dispatching `grade`) and answers each request from that call, so the time limit applies to a
whole `grade_group` call. A list of the wrong length (or not a list) flags every sample of the
group `python_grader_invalid_output_error`; a non-number flags its own sample. When the source
also defines `grade`, a group of one is scored by `grade`. Example:
`examples/graders/concise_correct.yaml` (`openrft graders run` grades repeated `--sample`s as
one group).

A job fails only when `check_error_rate` says so (see `ERROR_RATE_THRESHOLD`). This module does
NOT refuse unsafe machines itself beyond `sandbox.check_policy`, which raises `SandboxError`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
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

_OUTPUT_LINE = re.compile(r"^(?:grader\.)?GradeGroupOutputError: (.+)$", re.MULTILINE)
"""The wrapper's verdict on what `grade_group` returned (a wrong length, a non-number)."""
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
    spec: PythonGrader,
    samples: Sequence[Sample],
    items: Sequence[Item],
    context: GradeContext,
    groups: Sequence[int] | None = None,
) -> GradeResults:
    """Grade every sample in one sandboxed worker; raises only `SandboxError`/`ConfigError`.
    A source with `grade_group` scores each of `groups` (sizes of consecutive groups; None:
    groups of one) with one `grade_group(samples, item)` call."""
    limits = limits_from(context)
    layers = detect_layers()
    check_policy(layers, limits)
    failed: dict[int, GradeResult] = {}
    payloads: list[bytes] = []
    for i, payload in enumerate(_payloads(spec, samples, items, groups)):
        if isinstance(payload, bytes):
            payloads.append(payload)
        else:
            failed[i] = _failed(spec, "other_error", f"item is not JSON-serializable: {payload}")
    source = group_source(spec.source) if spec.grades_groups else spec.source
    outcomes = iter(run_batch(pool_key(spec, context, limits), source, limits, layers, payloads))
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


def _payloads(
    spec: PythonGrader,
    samples: Sequence[Sample],
    items: Sequence[Item],
    groups: Sequence[int] | None,
) -> list[bytes | str]:
    """One request per sample (the JSON, or why it cannot be JSON). For `grade_group`, each
    sample's request carries its whole group and its index there: the worker runs
    `grade_group` once per group and answers each request from that one call."""
    if not spec.grades_groups:
        return [
            _encode({"sample": s.namespace(), "item": dict(i)})
            for s, i in zip(samples, items, strict=True)
        ]
    out: list[bytes | str] = []
    batch = uuid.uuid4().hex  # workers outlive batches: a group's key must be new each time
    start = 0
    for number, size in enumerate(groups or [1] * len(samples)):
        members, item = samples[start : start + size], items[start]
        start += size
        if size == 1 and spec.grades_samples:
            out.append(_encode({"sample": members[0].namespace(), "item": dict(item)}))
            continue
        group = _encode([s.namespace() for s in members])
        shared = _encode(dict(item))
        if isinstance(group, str) or isinstance(shared, str):
            out += [shared if isinstance(shared, str) else group] * size
            continue
        key = f"{batch}:{number}".encode()
        # the group's JSON is encoded once and spliced into each of its requests
        out += [_GROUP_REQUEST % (key, k, group, shared) for k in range(size)]
    return out


def _encode(request: object) -> bytes | str:
    try:
        return json.dumps(request).encode()
    except (TypeError, ValueError) as exc:
        return str(exc)


GROUP_KEY = "openrft_group"
"""In a `grade_group` request's `sample`: the group's samples."""
INDEX_KEY = "openrft_index"
"""In a `grade_group` request's `sample`: which of them this request scores."""
GROUP_ID = "openrft_group_id"
"""In a `grade_group` request's `sample`: the group's key, new in every batch (the worker runs
`grade_group` once per key)."""
_GROUP_REQUEST = (
    b'{"sample": {"'
    + GROUP_ID.encode()
    + b'": "%s", "'
    + INDEX_KEY.encode()
    + b'": %d, "'
    + GROUP_KEY.encode()
    + b'": %s}, "item": %s}'
)
_OUTPUT_ERROR = "GradeGroupOutputError"

_GROUP_WRAPPER = f'''

# --- added by OpenRFT: runs grade_group once per group (your code above is unchanged) ---
class {_OUTPUT_ERROR}(Exception):
    pass


def _openrft_scores(scores, n):
    import math, numbers
    if isinstance(scores, (str, bytes, dict)) or not hasattr(scores, "__len__"):
        raise {_OUTPUT_ERROR}(
            f"grade_group returned {{type(scores).__name__}}; return a list of {{n}} floats, "
            "one per sample, in order"
        )
    scores = list(scores)
    if len(scores) != n:
        raise {_OUTPUT_ERROR}(
            f"grade_group returned {{len(scores)}} scores for a group of {{n}} samples; return "
            "one float per sample, in order"
        )
    out = []
    for k, value in enumerate(scores):
        if isinstance(value, numbers.Real) and math.isfinite(float(value)):
            out.append(float(value))
        else:
            out.append({_OUTPUT_ERROR}(
                f"grade_group returned {{str(value)[:100]!r}} ({{type(value).__name__}}) for "
                f"sample {{k}}; return a finite float for every sample"
            ))
    return out


def grade(sample, item, _grade=globals().get("grade"), _last=[None, None]):
    if "{GROUP_KEY}" not in sample:
        return _grade(sample, item)
    group, index, key = sample["{GROUP_KEY}"], sample["{INDEX_KEY}"], sample["{GROUP_ID}"]
    if _last[0] != key:
        _last[0] = None
        try:
            _last[1] = _openrft_scores(grade_group(group, item), len(group))
        except Exception as exc:
            _last[1] = (exc, exc.__traceback__)
        _last[0] = key
    if isinstance(_last[1], tuple):
        raise _last[1][0].with_traceback(_last[1][1])
    if isinstance(_last[1][index], Exception):
        raise _last[1][index]
    return _last[1][index]
'''


_FRAME = re.compile(r'  File "grader\.py", line (\d+), in \S+\n(?:    .*\n)*')


def _without_wrapper(details: str, user_lines: int) -> str:
    """A traceback without the frames of the code `group_source` appended (past the user's
    last line): the user sees only their own `grade_group`'s frames."""
    return _FRAME.sub(lambda m: "" if int(m.group(1)) > user_lines else m.group(0), details)


def group_source(source: str) -> str:
    """`source` with a `grade(sample, item)` that serves `grade_group` requests appended (the
    sandbox worker calls `grade`; a source's own `grade` still scores plain requests)."""
    return source.rstrip("\n") + "\n" + _GROUP_WRAPPER


def _result(spec: PythonGrader, outcome: Outcome) -> GradeResult:
    wrong = _OUTPUT_LINE.search(outcome.details) if outcome.kind == "runtime" else None
    if wrong is not None and spec.grades_groups:
        return _failed(spec, _FLAGS["invalid"], wrong.group(1))
    if outcome.kind == "ok":
        scores = (
            {} if spec.pass_threshold is None else {"passed": outcome.score >= spec.pass_threshold}
        )
        return GradeResult.of(spec.name, spec.type, outcome.score, **scores)
    if outcome.kind == "runtime" and spec.grades_groups:
        details = _without_wrapper(outcome.details, spec.source.rstrip("\n").count("\n") + 1)
        return _failed(spec, _FLAGS["runtime"], details)
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
        detail = describe_failure(result)
        if detail not in shown:
            shown.append(detail)
        if len(shown) == SAMPLE_TRACEBACKS:
            break
    raise GradingError(
        f"{len(failed)} of {total} samples failed to grade ({len(failed) / total:.0%}"
        f", above the {threshold:.0%} threshold). First errors:\n\n" + "\n\n".join(shown)
    )


def describe_failure(result: GradeResult) -> str:
    """`[grader: flags]` and the sample's first error details (a traceback, a parse error).
    Plain text with square brackets: print it as text, never as Rich markup."""
    errors = result.errors
    texts = [
        value
        for key, value in errors.__dict__.items()
        if key.endswith(("_details", "_type")) and isinstance(value, str) and value
    ]
    text = texts[0] if texts else "(no details recorded)"
    return f"[{result.name}: {', '.join(errors.flags())}]\n{text[-2000:]}".rstrip()
