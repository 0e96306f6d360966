"""`endpoint`: POST `{sample, item, trace_id}` to the user's HTTP endpoint, which answers
`{"score": number}` (a bare JSON number is accepted too).

Requests run concurrently (16 in flight by default; `GradeContext.options["endpoint_concurrency"]`
changes it), start at most `rate_limit` times per second per URL and owner across every batch in
this process, and are retried up to 3 times with backoff on 429/5xx/timeouts/connection errors
(`graders/retry.py`; the first wait is 0.5 s, `options["endpoint_backoff"]` changes it). A retry
keeps its `trace_id`, so the endpoint can tell it apart from a new sample. Each attempt gets
`timeout` seconds in all (connect, send, the whole body), one sample at most `MAX_CALL_SECONDS`
with its retries, and a body over `MAX_BODY_BYTES` is not read further.

Header values may hold `${secret:NAME}`, replaced from `GradeContext.secrets` (the project's
secrets); the process environment is never read, so a `${VAR}` is refused the same way whatever
the server's environment holds. When the context carries an `OutboundPolicy` (a tenant of the
service), the URL is checked and pinned by `graders/outbound.py`, redirects are never followed
and proxy variables are ignored.

Failures are data: an endpoint that stays unreachable or keeps failing sets
`unresponsive_reward_error` (details say what happened); any other 4xx, a body that is not JSON,
a body too large, a refused URL, an unset secret or a score that is not a finite number sets
`other_error` with the details. Details and copied answer keys quote a body only in short
excerpts. The reward is the score as returned (not clamped). Nothing here authenticates beyond
the headers you give.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from openrft.graders import outbound
from openrft.graders.context import GradeContext
from openrft.graders.result import MAX_ABS_REWARD, GradeResult, bounded_reward
from openrft.graders.retry import (
    EXCERPT,
    Attempted,
    RetryPolicy,
    post_with_retries,
    run_sync,
)
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import EndpointGrader

MAX_RETRIES = 3
"""Retries after the first attempt."""
DEFAULT_CONCURRENCY = 16
"""Requests in flight at once per batch, unless `options["endpoint_concurrency"]` says otherwise."""
MAX_BODY_BYTES = 2**20
"""Largest answer read; a grader's answer is a score and a few keys, not a document."""
MAX_CALL_SECONDS = 300.0
"""Most seconds one sample's attempts and waits take together, whatever `timeout` says."""
MAX_EXTRA_BYTES = 4096
"""Most bytes of JSON (all keys together) copied from an answer into `metadata.scores`."""
_REFERENCE = re.compile(r"\$\{(secret:)?([A-Za-z_][A-Za-z0-9_]*)\}")


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


_SPACERS: dict[tuple[str, str, float], Spacer] = {}
_SPACERS_LOCK = threading.Lock()


def spacer_for(url: str, rate: float, owner: str = "local") -> Spacer:
    """The process-wide spacer for this owner, URL and rate, so consecutive batches share the
    limit (per owner: one tenant's slow rate never delays another's calls)."""
    with _SPACERS_LOCK:
        return _SPACERS.setdefault((owner, url, rate), Spacer(rate))


class HeaderError(Exception):
    """A header references a value that cannot be supplied; the message says what to do."""


def expand_headers(
    headers: dict[str, str] | None, secrets: Mapping[str, str], owner: str = "local"
) -> dict[str, str]:
    """Replace `${secret:NAME}` in header values from `secrets`; other text is kept as is.

    `HeaderError` for the first `${secret:NAME}` the owner has not set, or any `${VAR}`: the
    environment is never read, so the answer does not depend on what it holds."""
    return {name: _expand(name, value, secrets, owner) for name, value in (headers or {}).items()}


def _expand(header: str, value: str, secrets: Mapping[str, str], owner: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        is_secret, name = match.groups()
        if not is_secret:
            raise HeaderError(
                f"header {header!r} uses ${{{name}}}, which is not expanded: environment "
                "variables are never read; store the value as a project secret and write "
                f"${{secret:{name}}}"
            )
        if name not in secrets:
            raise HeaderError(
                f"header {header!r} uses ${{secret:{name}}}, which this project has not set; "
                + _how_to_set(name, owner)
            )
        return secrets[name]

    return _REFERENCE.sub(substitute, value)


def _how_to_set(name: str, owner: str) -> str:
    if owner.startswith("project:"):
        project = owner.removeprefix("project:")
        return (
            f"set it with `openrft secrets set --project {project} {name}` "
            f"or PUT /v1/secrets/{name}"
        )
    return f"pass it as GradeContext(secrets={{{name!r}: ...}})"


def grade_batch(
    spec: EndpointGrader, samples: Sequence[Sample], items: Sequence[Item], context: GradeContext
) -> list[GradeResult]:
    """Grade every sample with one POST each, concurrently; callable from any thread."""
    return run_sync(lambda: grade_batch_async(spec, samples, items, context))


async def grade_batch_async(
    spec: EndpointGrader, samples: Sequence[Sample], items: Sequence[Item], context: GradeContext
) -> list[GradeResult]:
    """The same as `grade_batch`, for callers that already run an event loop."""
    concurrency = int(context.options.get("endpoint_concurrency", DEFAULT_CONCURRENCY))
    limits = httpx.Limits(max_connections=concurrency)
    try:
        headers = expand_headers(spec.headers, context.secrets, context.owner)
        transport = await _transport(spec, context, limits)
    except (HeaderError, outbound.Refused) as exc:
        return [_failed(spec, "other_error", str(exc)) for _ in samples]
    except outbound.Unresolvable as exc:
        return [_failed(spec, "unresponsive_reward_error", str(exc)) for _ in samples]
    gate = asyncio.Semaphore(concurrency)
    spacer = spacer_for(spec.url, spec.rate_limit, context.owner) if spec.rate_limit else None
    async with httpx.AsyncClient(
        timeout=spec.timeout,
        limits=limits,
        headers=headers,
        transport=transport,
        follow_redirects=False,
        trust_env=context.outbound is None,  # a tenant's call never goes through our proxies
    ) as client:
        calls = [
            _grade_one(spec, sample, item, client, gate, spacer, context)
            for sample, item in zip(samples, items, strict=True)
        ]
        return list(await asyncio.gather(*calls))


async def _transport(
    spec: EndpointGrader, context: GradeContext, limits: httpx.Limits
) -> httpx.AsyncBaseTransport | None:
    """Local use: httpx's own (None). A tenant: the checked address, pinned."""
    if context.outbound is None:
        return None
    destination = await outbound.resolve(spec.url, context.outbound, timeout=spec.timeout)
    return outbound.PinnedTransport(destination, limits=limits)


def _failed(spec: EndpointGrader, flag: str, details: str) -> GradeResult:
    return GradeResult.failed(spec.name, spec.type, flag, details)


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
    policy = RetryPolicy(
        MAX_RETRIES,
        float(context.options.get("endpoint_backoff", 0.5)),
        attempt_timeout=spec.timeout,
        budget=MAX_CALL_SECONDS,
    )
    body = {"sample": sample.namespace(), "item": dict(item), "trace_id": trace_id}
    async with gate:
        outcome = await post_with_retries(
            client,
            spec.url,
            body,
            policy,
            before_each=spacer.wait if spacer else None,
            max_body=MAX_BODY_BYTES,
        )
    result = interpret(spec, outcome)
    result.metadata.scores["trace_id"] = trace_id
    return result


def interpret(spec: EndpointGrader, outcome: Attempted) -> GradeResult:
    """Turn the endpoint's HTTP outcome into a grade."""
    response = outcome.response
    if outcome.too_large:
        return _failed(spec, "other_error", f"{spec.url}: {outcome.error}")
    if outcome.error is not None or response is None:
        return GradeResult.failed(spec.name, spec.type, "unresponsive_reward_error", outcome.error)
    if response.status_code >= 400:
        details = f"HTTP {response.status_code} from {spec.url}: {response.text.strip()[:EXCERPT]}"
        return _failed(spec, "other_error", details)
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        answered = repr(response.text[:200])[:EXCERPT]
        details = f'{spec.url} answered non-JSON {answered}; expected {{"score": 0.7}}'
        return _failed(spec, "other_error", details)
    score = _score(payload)
    if score is None:
        expected = f'{{"score": <finite number within ±{MAX_ABS_REWARD:g}>}}'
        details = f"{spec.url} answered {str(payload)[:200]}; expected {expected}"
        return _failed(spec, "other_error", details)
    extra = _extras(payload)
    if spec.pass_threshold is not None:
        extra["passed"] = score >= spec.pass_threshold
    result = GradeResult.of(spec.name, spec.type, score)
    result.metadata.scores.update(extra)  # not as **kwargs: the endpoint may send a `name` key
    return result


def _extras(payload: Any) -> dict[str, Any]:
    """The answer's keys besides `score`, as long as their JSON stays within `MAX_EXTRA_BYTES`;
    keys that do not fit are left out (and `omitted` says how many), so a huge answer is never
    reflected into results, logs or API responses."""
    if not isinstance(payload, dict):
        return {}
    kept: dict[str, Any] = {}
    size, left_out = 0, 0
    for key, value in payload.items():
        if key == "score":
            continue
        cost = len(json.dumps({key: value}))
        if size + cost > MAX_EXTRA_BYTES:
            left_out += 1
            continue
        kept[key], size = value, size + cost
    if left_out:
        kept["omitted"] = (
            f"{left_out} key(s) of the answer left out: together they exceed "
            f"{MAX_EXTRA_BYTES} bytes of JSON"
        )
    return kept


def _score(payload: Any) -> float | None:
    return bounded_reward(payload.get("score") if isinstance(payload, dict) else payload)
