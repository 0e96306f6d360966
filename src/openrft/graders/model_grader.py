"""`score_model` and `label_model`: ask a judge model, over any OpenAI-compatible chat endpoint.

Per sample: render the templates in every text part of `input`, POST one chat completion asking
for structured output (`response_format: json_schema`, `{steps: [...], result: number}` or
`result: one of labels`), and read the result leniently (plain JSON, JSON in a code fence, the
first JSON object in the text, or a bare number/label). `score_model` rewards the score clamped
to `range` (default `[0, 1]`); `label_model` rewards 1 for a label in `passing_labels`, else 0.
SeekrFlow's `llm` grader arrives here already compiled to a `score_model` spec.

Calls run concurrently (at most `JudgeConfig.concurrency` in flight per batch) and are retried on
429/5xx/timeouts with backoff (`graders/retry.py`). Failures are data: an unparsable answer sets
`model_grader_parse_error`, a `refusal` sets `model_grader_refusal_error`, and an endpoint that
stays down (or is not configured) sets `model_grader_server_error` with the details. Token usage
is recorded per judge model name.

With an outbound policy in the context (the service), an `image_url` the judge would fetch must
name a public host (or be a `data:` URL), else the sample is `other_error`: the judge is the
operator's and may sit inside the operator's network.

Where judges live is `graders/judges.py`'s business; nothing here caches answers or rate-limits
beyond the concurrency bound.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import httpx

from openrft.errors import ConfigError, TemplateError
from openrft.graders import outbound
from openrft.graders.context import GradeContext, OutboundPolicy
from openrft.graders.judges import JudgeConfig, resolve_judge
from openrft.graders.result import GradeResult
from openrft.graders.retry import Attempted, RetryPolicy, post_with_retries, run_sync
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import (
    ContentPart,
    InputImage,
    LabelModelGrader,
    ModelInput,
    ScoreModelGrader,
)
from openrft.graders.template import render

ModelGrader = ScoreModelGrader | LabelModelGrader
SERVER_ERROR = "model_grader_server_error"
PARSE_ERROR = "model_grader_parse_error"
REFUSAL_ERROR = "model_grader_refusal_error"

_STEPS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}},
        "required": ["description", "conclusion"],
        "additionalProperties": False,
    },
}
IMAGE_RESOLVE_SECONDS = 5.0
"""How long resolving an `image_url` host may take (a tenant may run its own slow DNS)."""
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def grade_batch(
    spec: ModelGrader,
    samples: Sequence[Sample],
    items: Sequence[Item],
    context: GradeContext,
    groups: Sequence[int] | None = None,
) -> list[GradeResult]:
    """Grade every sample with one judge call each (a `score_model` with `group`: one call per
    group of `groups`), concurrently; callable from any thread."""
    return run_sync(lambda: grade_batch_async(spec, samples, items, context, groups))


async def grade_batch_async(
    spec: ModelGrader,
    samples: Sequence[Sample],
    items: Sequence[Item],
    context: GradeContext,
    groups: Sequence[int] | None = None,
) -> list[GradeResult]:
    """The same as `grade_batch`, for callers that already run an event loop."""
    if isinstance(spec, ScoreModelGrader) and spec.group is not None:
        from openrft.graders import group_judge

        return await group_judge.grade_groups(spec, samples, items, context, groups)
    try:
        judge, client, gate = open_judge(spec, context)
    except ConfigError as exc:
        return [GradeResult.failed(spec.name, spec.type, SERVER_ERROR, str(exc)) for _ in samples]
    async with client:
        calls = [
            _grade_one(spec, sample, item, judge, client, gate, context.outbound)
            for sample, item in zip(samples, items, strict=True)
        ]
        return list(await asyncio.gather(*calls))


def open_judge(
    spec: ModelGrader, context: GradeContext
) -> tuple[JudgeConfig, httpx.AsyncClient, asyncio.Semaphore]:
    """The judge `spec.model` names, an HTTP client for it (its key, timeout and connection
    limit; close it with `async with`) and the semaphore that keeps calls within its
    concurrency. Raises `ConfigError` for an unknown judge or a missing key."""
    judge = resolve_judge(spec.model, context.judges)
    api_key = judge.api_key()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=judge.concurrency)
    client = httpx.AsyncClient(timeout=judge.timeout, limits=limits, headers=headers)
    return judge, client, asyncio.Semaphore(judge.concurrency)


async def _grade_one(
    spec: ModelGrader,
    sample: Sample,
    item: Item,
    judge: JudgeConfig,
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    outbound: OutboundPolicy | None = None,
) -> GradeResult:
    try:
        messages = [message_of(m, sample.namespace(), item) for m in spec.input]
    except TemplateError as exc:
        return GradeResult.failed(spec.name, spec.type, "invalid_variable_error", str(exc))
    refused = await refused_image(messages, outbound) if outbound is not None else None
    if refused is not None:
        return GradeResult.failed(spec.name, spec.type, "other_error", refused)
    policy = RetryPolicy(judge.max_retries, judge.backoff, judge.max_backoff)
    url = judge.base_url.rstrip("/") + "/chat/completions"
    async with gate:
        outcome = await post_with_retries(client, url, request_body(spec, messages, judge), policy)
    return interpret(spec, outcome)


def message_of(message: ModelInput, sample: dict[str, Any], item: Item) -> dict[str, Any]:
    # Not every OpenAI-compatible server knows `developer`; OpenAI treats it as `system` anyway.
    role = "system" if message.role == "developer" else message.role
    content = message.content
    if isinstance(content, str):
        return {"role": role, "content": render(content, sample, item)}
    if not isinstance(content, list):
        if not isinstance(content, InputImage):
            return {"role": role, "content": render(content.text, sample, item)}
        content = [content]
    return {"role": role, "content": [_part(part, sample, item) for part in content]}


def _part(part: ContentPart, sample: dict[str, Any], item: Item) -> dict[str, Any]:
    if isinstance(part, InputImage):
        image: dict[str, Any] = {"url": render(part.image_url, sample, item)}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    return {"type": "text", "text": render(part.text, sample, item)}


async def refused_image(messages: list[dict[str, Any]], policy: OutboundPolicy) -> str | None:
    """Why an `image_url` the judge would fetch points where the tenant may not reach, if it
    does (a judge that fetches URLs would otherwise fetch internal ones for the tenant). A check
    of the name, not a pinned connection: the judge resolves it again."""
    for message in messages:
        content = message["content"]
        for part in content if isinstance(content, list) else []:
            url = part.get("image_url", {}).get("url", "") if part["type"] == "image_url" else ""
            if not url or url.startswith("data:"):
                continue
            try:
                await outbound.resolve(url, policy, timeout=IMAGE_RESOLVE_SECONDS)
            except (outbound.Refused, outbound.Unresolvable, ValueError) as exc:
                return f"image_url {url[:200]!r} refused: {exc}"
    return None


def output_schema(spec: ModelGrader) -> dict[str, Any]:
    """The JSON schema the judge is asked to answer in."""
    result: dict[str, Any] = (
        {"type": "number"}
        if isinstance(spec, ScoreModelGrader)
        else {"type": "string", "enum": list(spec.labels)}
    )
    return {
        "type": "object",
        "properties": {"steps": _STEPS_SCHEMA, "result": result},
        "required": ["steps", "result"],
        "additionalProperties": False,
    }


def request_body(
    spec: ModelGrader, messages: list[dict[str, Any]], judge: JudgeConfig
) -> dict[str, Any]:
    """The chat completion request for one sample; `sampling_params` pass through unchanged
    (`max_completions_tokens` is sent under the chat API's name, `max_completion_tokens`)."""
    body: dict[str, Any] = {
        "model": judge.model_name or spec.model,
        "messages": messages,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": f"{spec.type}_output",
                "strict": True,
                "schema": output_schema(spec),
            },
        },
    }
    params = getattr(spec, "sampling_params", None)
    if params is not None:
        sent = params.model_dump(exclude_none=True)
        if "max_completions_tokens" in sent:
            sent["max_completion_tokens"] = sent.pop("max_completions_tokens")
        body.update(sent)
    return body


def interpret(spec: ModelGrader, outcome: Attempted) -> GradeResult:
    """Turn the judge's HTTP outcome into a grade (flags on failure, usage whenever known)."""
    reply = read_reply(spec, outcome)
    if isinstance(reply, GradeResult):
        return reply
    payload, message, text = reply
    result = _judged(spec, message.get("refusal"), text)
    record_usage(result, spec.model, payload.get("usage"), payload.get("model"))
    return result


def read_reply(
    spec: ModelGrader, outcome: Attempted
) -> tuple[dict[str, Any], dict[str, Any], str | None] | GradeResult:
    """The judge's `(payload, message, text)`, or the failed grade saying why there is none."""
    response = outcome.response
    if outcome.error is not None or response is None:
        return GradeResult.failed(spec.name, spec.type, SERVER_ERROR, outcome.error)
    if response.status_code >= 400:
        hint = " (does base_url end in /v1?)" if response.status_code == 404 else ""
        details = f"HTTP {response.status_code}{hint}: {response.text.strip()[:300]}"
        return GradeResult.failed(spec.name, spec.type, SERVER_ERROR, details)
    try:
        payload = response.json()
        message = payload["choices"][0]["message"]
        text = _text_of(message.get("content"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        details = f"not a chat completion response: {response.text.strip()[:300]}"
        return GradeResult.failed(spec.name, spec.type, SERVER_ERROR, details)
    return payload, message, text


def _judged(spec: ModelGrader, refusal: Any, text: str | None) -> GradeResult:
    if refusal:
        result = GradeResult.failed(spec.name, spec.type, REFUSAL_ERROR)
        result.metadata.scores["refusal"] = str(refusal)
        return result
    parsed = parse_output(text or "")
    value = parsed.get("result") if parsed is not None else None
    if isinstance(spec, ScoreModelGrader):
        return _scored(spec, value, parsed, text)
    return _labelled(spec, value, parsed, text)


def _scored(spec: ScoreModelGrader, value: Any, parsed: Any, text: str | None) -> GradeResult:
    score = _number(value) if parsed is not None else _number((text or "").strip())
    if score is None:
        return _unparsable(spec, text)
    low, high = spec.range or (0.0, 1.0)
    reward = min(max(score, low), high)
    scores: dict[str, Any] = {"result": score, "steps": (parsed or {}).get("steps", [])}
    if spec.pass_threshold is not None:
        scores["passed"] = reward >= spec.pass_threshold
    return GradeResult.of(spec.name, spec.type, reward, **scores)


def _labelled(spec: LabelModelGrader, value: Any, parsed: Any, text: str | None) -> GradeResult:
    label = _label(value if parsed is not None else text, spec.labels)
    if label is None:
        return _unparsable(spec, text)
    passed = label in spec.passing_labels
    steps = (parsed or {}).get("steps", [])
    return GradeResult.of(
        spec.name, spec.type, float(passed), label=label, passed=passed, steps=steps
    )


def _unparsable(spec: ModelGrader, text: str | None) -> GradeResult:
    result = GradeResult.failed(spec.name, spec.type, PARSE_ERROR)
    result.metadata.scores["output"] = (text or "")[:500]
    return result


def parse_output(text: str) -> dict[str, Any] | None:
    """The judge's JSON object: the whole text, a fenced block, or the first object inside."""
    candidates = [text.strip(), *(block.strip() for block in _FENCE.findall(text))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict) and "result" in value:
            return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a huge JSON integer
        return None
    return number if math.isfinite(number) else None


def _label(value: Any, labels: Sequence[str]) -> str | None:
    if not isinstance(value, str):
        return None
    wanted = value.strip().strip("\"'").strip()
    if wanted in labels:
        return wanted
    folded = {label.casefold(): label for label in labels}
    return folded.get(wanted.casefold())


def _text_of(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise TypeError(f"unexpected message content {content!r}")


def record_usage(result: GradeResult, model: str, usage: Any, served: Any) -> None:
    result.metadata.sampled_model_name = served if isinstance(served, str) else model
    if not isinstance(usage, dict):
        return
    counts = {
        key: int(_number(usage.get(key)) or 0)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    if not counts["total_tokens"]:
        counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
    result.model_grader_token_usage_per_model = {model: counts}
    result.metadata.token_usage = counts["total_tokens"]
