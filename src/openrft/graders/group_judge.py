"""`score_model` with `group`: one judge call sees a prompt's whole group of completions.

The judge gets the spec's `input` (rendered with the group's `item`; a group judge's templates
may not name `sample`), then one user message listing the completions as
`<completion 1>…</completion 1>`, `<completion 2>…`, and is asked for `{steps, result}` where
`result` is a list with one entry per completion:

- `"group": "score"`: the score of each completion, in order; each is clamped to `range`;
- `"group": "rank"`: the completion numbers (1…n), best first, each once; the best scores
  `range`'s max, the worst its min, the rest evenly between.

A group of one is always asked for a score (a ranking of one says nothing; validation samples
one completion per row, so its scores stay comparable). An answer that is not such a list (the
wrong length, a number that is not a completion, a repeated one) flags every sample of the group
`model_grader_parse_error`, with the judge's text in `metadata.scores.output` and what was wrong
in `metadata.scores.problem`; so do a refusal, a server error and a missing `item` variable,
each with its own flag. The call's token usage is recorded on the group's first sample only, so
sums over samples count each call once. `metadata.scores` has `result` (this sample's score, or
its 1-based place in the ranking), `group_size` and the judge's `steps`.

Calls for the groups run concurrently under the judge's concurrency bound and retry policy, as
one-sample judge calls do (`model_grader.py`). Nothing here renders `sample` templates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from openrft.errors import ConfigError, TemplateError
from openrft.graders.context import GradeContext, OutboundPolicy
from openrft.graders.judges import JudgeConfig
from openrft.graders.model_grader import (
    PARSE_ERROR,
    REFUSAL_ERROR,
    SERVER_ERROR,
    message_of,
    open_judge,
    parse_output,
    read_reply,
    record_usage,
    refused_image,
    request_body,
)
from openrft.graders.result import GradeResult
from openrft.graders.retry import RetryPolicy, post_with_retries
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import ScoreModelGrader

_STEPS = {"type": "array", "items": {"type": "object"}}


async def grade_groups(
    spec: ScoreModelGrader,
    samples: Sequence[Sample],
    items: Sequence[Item],
    context: GradeContext,
    groups: Sequence[int] | None,
) -> list[GradeResult]:
    """One judge call per group (`groups`: sizes of consecutive groups; None: groups of one)."""
    sizes = list(groups) if groups is not None else [1] * len(samples)
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    try:
        judge, client, gate = open_judge(spec, context)
    except ConfigError as exc:
        return [GradeResult.failed(spec.name, spec.type, SERVER_ERROR, str(exc)) for _ in samples]
    async with client:
        calls = [
            _grade_group(
                spec, samples[start : start + size], items[start], judge, client, gate, context
            )
            for start, size in zip(starts, sizes, strict=True)
        ]
        graded = await asyncio.gather(*calls)
    return [result for group in graded for result in group]


async def _grade_group(
    spec: ScoreModelGrader,
    samples: Sequence[Sample],
    item: Item,
    judge: JudgeConfig,
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    context: GradeContext,
) -> list[GradeResult]:
    n = len(samples)
    try:
        messages = [message_of(m, {}, item) for m in spec.input]
    except TemplateError as exc:
        missing = str(exc)
        return _all(
            n, lambda: GradeResult.failed(spec.name, spec.type, "invalid_variable_error", missing)
        )
    refused = await _refused(messages, context.outbound)
    if refused is not None:
        return _all(n, lambda: GradeResult.failed(spec.name, spec.type, "other_error", refused))
    mode = "score" if n == 1 else spec.group or "score"
    messages.append(
        {"role": "user", "content": listing(spec, [s.output_text for s in samples], mode)}
    )
    body = request_body(spec, messages, judge)
    body["response_format"]["json_schema"]["schema"] = group_schema(n, mode)
    policy = RetryPolicy(judge.max_retries, judge.backoff, judge.max_backoff)
    async with gate:
        outcome = await post_with_retries(
            client, judge.base_url.rstrip("/") + "/chat/completions", body, policy
        )
    reply = read_reply(spec, outcome)
    if isinstance(reply, GradeResult):
        failure = reply
        return _all(n, lambda: failure.model_copy(deep=True))
    payload, message, text = reply
    results = judged(spec, n, mode, message.get("refusal"), text)
    for result in results:
        record_usage(result, spec.model, None, payload.get("model"))
    record_usage(results[0], spec.model, payload.get("usage"), payload.get("model"))
    return results


async def _refused(messages: list[dict[str, Any]], policy: OutboundPolicy | None) -> str | None:
    return await refused_image(messages, policy) if policy is not None else None


def _all(n: int, make: Callable[[], GradeResult]) -> list[GradeResult]:
    return [make() for _ in range(n)]


def listing(spec: ScoreModelGrader, texts: Sequence[str], mode: str) -> str:
    """The user message that shows the judge the group and says how to answer."""
    low, high = spec.range or (0.0, 1.0)
    n = len(texts)
    shown = "\n\n".join(
        f"<completion {k}>\n{text}\n</completion {k}>" for k, text in enumerate(texts, 1)
    )
    if mode == "rank":
        ask = (
            f"Rank these {n} completions from best to worst. Answer with `result`: a list of the "
            f"{n} completion numbers (1 to {n}), best first, each exactly once."
        )
    elif n == 1:
        ask = f"Score this completion from {low:g} to {high:g}. Answer with `result`: [score]."
    else:
        ask = (
            f"Score each of these {n} completions from {low:g} to {high:g}, comparing them with "
            f"each other. Answer with `result`: a list of {n} numbers, completion 1's first."
        )
    return f"{shown}\n\n{ask}"


def group_schema(n: int, mode: str) -> dict[str, Any]:
    """The JSON schema the judge is asked to answer in for a group of `n`."""
    entry: dict[str, Any] = (
        {"type": "integer", "minimum": 1, "maximum": n} if mode == "rank" else {"type": "number"}
    )
    result = {"type": "array", "items": entry, "minItems": n, "maxItems": n}
    return {
        "type": "object",
        "properties": {"steps": _STEPS, "result": result},
        "required": ["steps", "result"],
        "additionalProperties": False,
    }


def judged(
    spec: ScoreModelGrader, n: int, mode: str, refusal: Any, text: str | None
) -> list[GradeResult]:
    """The group's grades from the judge's answer (every sample flagged when it is unusable)."""
    if refusal:
        return _all(n, lambda: _refusal(spec, refusal))
    parsed = parse_output(text or "") or _bare_list(text or "")
    values = parsed.get("result") if parsed is not None else None
    steps = (parsed or {}).get("steps", [])
    read = _ranked(values, n) if mode == "rank" else _scored(values, n)
    if isinstance(read, str):
        return _all(n, lambda: _unparsable(spec, text, read))
    low, high = spec.range or (0.0, 1.0)
    results = []
    for value in read:
        if mode == "rank":  # `value` is the 0-based place; the best gets `high`
            reward = high - value * (high - low) / (n - 1)
            scores: dict[str, Any] = {"result": value + 1}
        else:
            reward = min(max(value, low), high)
            scores = {"result": value}
        scores |= {"group_size": n, "steps": steps}
        if spec.pass_threshold is not None:
            scores["passed"] = reward >= spec.pass_threshold
        results.append(GradeResult.of(spec.name, spec.type, reward, **scores))
    return results


def _scored(values: Any, n: int) -> list[float] | str:
    if not isinstance(values, list) or len(values) != n:
        return (
            f"expected `result` to be a list of {n} scores, one per completion, "
            f"got {_short(values)}"
        )
    numbers = [_finite(v) for v in values]
    if any(v is None for v in numbers):
        return f"every score must be a number, got {_short(values)}"
    return [float(v) for v in numbers if v is not None]


def _ranked(values: Any, n: int) -> list[float] | str:
    """Each completion's 0-based place, from `values` (completion numbers, best first)."""
    numbers = [_finite(v) for v in values] if isinstance(values, list) else None
    if numbers is None or sorted(v for v in numbers if v is not None) != [*range(1, n + 1)]:
        return (
            f"expected `result` to rank the {n} completions: each of 1…{n} once, best first, "
            f"got {_short(values)}"
        )
    place = {int(v): k for k, v in enumerate(numbers) if v is not None}
    return [float(place[k]) for k in range(1, n + 1)]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) != float("inf") else None


def _bare_list(text: str) -> dict[str, Any] | None:
    """A judge that answered the list alone, `[3, 1, 2]`."""
    try:
        value = json.loads(text.strip())
    except ValueError:
        return None
    return {"result": value} if isinstance(value, list) else None


def _short(value: Any) -> str:
    return json.dumps(value)[:200] if value is not None else "nothing"


def _refusal(spec: ScoreModelGrader, refusal: Any) -> GradeResult:
    result = GradeResult.failed(spec.name, spec.type, REFUSAL_ERROR)
    result.metadata.scores["refusal"] = str(refusal)
    return result


def _unparsable(spec: ScoreModelGrader, text: str | None, problem: str) -> GradeResult:
    result = GradeResult.failed(spec.name, spec.type, PARSE_ERROR)
    result.metadata.scores |= {"output": (text or "")[:500], "problem": problem}
    return result
