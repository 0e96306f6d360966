"""`endpoint`: POST `{sample, item, trace_id}` to the user's HTTP endpoint, which answers
`{"score": number}` (a bare JSON number is accepted too).

Requests run concurrently (16 in flight by default; `GradeContext.options["endpoint_concurrency"]`
changes it), start at most `rate_limit` times per second per URL across every batch in this
process, and are retried up to 3 times with backoff on 429/5xx/timeouts/connection errors
(`graders/retry.py`; the first wait is 0.5 s, `options["endpoint_backoff"]` changes it). A retry
keeps its `trace_id`, so the endpoint can tell it apart from a new sample. `${VAR}` in a header
value is replaced from the environment.

Failures are data: an endpoint that stays unreachable or keeps failing sets
`unresponsive_reward_error` (details say what happened); any other 4xx, a body that is not JSON,
or a score that is not a finite number sets `other_error` with the details. The reward is the
score as returned (not clamped). Nothing here authenticates beyond the headers you give.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from openrft.graders.context import GradeContext
from openrft.graders.result import GradeResult
from openrft.graders.retry import Attempted, RetryPolicy, post_with_retries, run_sync
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import EndpointGrader

MAX_RETRIES = 3
"""Retries after the first attempt."""
DEFAULT_CONCURRENCY = 16
"""Requests in flight at once per batch, unless `options["endpoint_concurrency"]` says otherwise."""
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Spacer:
    """Starts calls at least `1 / rate` seconds apart, across threads and event loops."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    async def wait(self) -> None:
        """Reserve the next free start time, then sleep until it comes."""
        with self._lock:  # held only to book a slot, never while sleeping
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


_SPACERS: dict[tuple[str, float], Spacer] = {}
_SPACERS_LOCK = threading.Lock()


def spacer_for(url: str, rate: float) -> Spacer:
    """The process-wide spacer for this URL and rate, so consecutive batches share the limit."""
    with _SPACERS_LOCK:
        return _SPACERS.setdefault((url, rate), Spacer(rate))


def expand_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Replace `${VAR}` in header values; `KeyError` names the first variable that is unset."""
    expanded = {}
    for name, value in (headers or {}).items():
        for var in _ENV_VAR.findall(value):
            if var not in os.environ:
                raise KeyError(f"header {name!r} uses ${{{var}}}, which is not set")
        expanded[name] = _ENV_VAR.sub(lambda m: os.environ[m.group(1)], value)
    return expanded


def grade_batch(
    spec: EndpointGrader, samples: Sequence[Sample], items: Sequence[Item], context: GradeContext
) -> list[GradeResult]:
    """Grade every sample with one POST each, concurrently; callable from any thread."""
    return run_sync(lambda: grade_batch_async(spec, samples, items, context))


async def grade_batch_async(
    spec: EndpointGrader, samples: Sequence[Sample], items: Sequence[Item], context: GradeContext
) -> list[GradeResult]:
    """The same as `grade_batch`, for callers that already run an event loop."""
    try:
        headers = expand_headers(spec.headers)
    except KeyError as exc:
        return [
            GradeResult.failed(spec.name, spec.type, "other_error", exc.args[0]) for _ in samples
        ]
    concurrency = int(context.options.get("endpoint_concurrency", DEFAULT_CONCURRENCY))
    gate = asyncio.Semaphore(concurrency)
    spacer = spacer_for(spec.url, spec.rate_limit) if spec.rate_limit else None
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=spec.timeout, limits=limits, headers=headers) as client:
        calls = [
            _grade_one(spec, sample, item, client, gate, spacer, context)
            for sample, item in zip(samples, items, strict=True)
        ]
        return list(await asyncio.gather(*calls))


async def _grade_one(
    spec: EndpointGrader,
    sample: Sample,
    item: Item,
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    spacer: Spacer | None,
    context: GradeContext,
) -> GradeResult:
    trace_id = uuid.uuid4().hex
    policy = RetryPolicy(MAX_RETRIES, float(context.options.get("endpoint_backoff", 0.5)))
    body = {"sample": sample.namespace(), "item": dict(item), "trace_id": trace_id}
    async with gate:
        outcome = await post_with_retries(
            client,
            spec.url,
            body,
            policy,
            before_each=spacer.wait if spacer else None,
        )
    result = interpret(spec, outcome)
    result.metadata.scores["trace_id"] = trace_id
    return result


def interpret(spec: EndpointGrader, outcome: Attempted) -> GradeResult:
    """Turn the endpoint's HTTP outcome into a grade."""
    response = outcome.response
    if outcome.error is not None or response is None:
        return GradeResult.failed(spec.name, spec.type, "unresponsive_reward_error", outcome.error)
    if response.status_code >= 400:
        details = f"HTTP {response.status_code} from {spec.url}: {response.text.strip()[:300]}"
        return GradeResult.failed(spec.name, spec.type, "other_error", details)
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        details = f'{spec.url} answered non-JSON {response.text[:200]!r}; expected {{"score": 0.7}}'
        return GradeResult.failed(spec.name, spec.type, "other_error", details)
    score = _score(payload)
    if score is None:
        details = f'{spec.url} answered {str(payload)[:200]}; expected {{"score": <finite number>}}'
        return GradeResult.failed(spec.name, spec.type, "other_error", details)
    extra: dict[str, Any] = (
        {k: v for k, v in payload.items() if k != "score"} if isinstance(payload, dict) else {}
    )
    if spec.pass_threshold is not None:
        extra["passed"] = score >= spec.pass_threshold
    result = GradeResult.of(spec.name, spec.type, score)
    result.metadata.scores.update(extra)  # not as **kwargs: the endpoint may send a `name` key
    return result


def _score(payload: Any) -> float | None:
    value = payload.get("score") if isinstance(payload, dict) else payload
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
