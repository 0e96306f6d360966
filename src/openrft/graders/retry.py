"""HTTP plumbing the graders that call out share: POST with retries and backoff, and running
their async batches from synchronous code.

`post_with_retries` retries what is worth retrying (HTTP 429, any 5xx, timeouts, connection
errors) with exponential backoff plus jitter, honouring `Retry-After`; it returns an `Attempted`
outcome and never raises for a failed call. Other 4xx answers come back as they are: the caller
decides what they mean. `run_sync` runs a coroutine to completion from any thread, including one
whose event loop is already running (it then uses a fresh loop in a worker thread).

This module does not know what is being graded, parse bodies, or limit rates; callers do.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
"""Statuses that are retried: rate limits, conflicts/timeouts, and every server error."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one call."""

    max_retries: int = 3
    """Retries after the first attempt."""
    backoff: float = 0.5
    """Seconds before the first retry; doubled for each further retry."""
    max_backoff: float = 20.0
    """Longest single wait (also caps `Retry-After`)."""

    def delay(self, retry: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        hinted = _retry_after(response)
        if hinted is not None:
            return min(hinted, self.max_backoff)
        base = self.backoff * (2**retry)
        # Full jitter on the upper half keeps a burst of 429s from retrying in lock-step.
        jittered: float = base * (0.5 + random.random() / 2)  # noqa: S311
        return min(jittered, self.max_backoff)


@dataclass
class Attempted:
    """The outcome of a call: the last response (if any), or why there was none."""

    response: httpx.Response | None
    """The final response: a success, a non-retried 4xx, or the last retried failure."""
    error: str | None
    """Why the call failed after all retries (`None` when `response` is a 2xx or plain 4xx)."""
    attempts: int
    """How many requests were sent."""


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP-date: rare for APIs; fall back to our own backoff
        return None


def _describe(response: httpx.Response) -> str:
    body = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code} from {response.request.url}: {body[:300]}"


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    body: Any,
    policy: RetryPolicy,
    *,
    headers: dict[str, str] | None = None,
    before_each: Callable[[], Awaitable[None]] | None = None,
) -> Attempted:
    """POST `body` as JSON, retrying 429/5xx/timeouts/connection errors per `policy`.

    `before_each` is awaited before every attempt (a rate limiter goes there)."""
    error: str | None = None
    response: httpx.Response | None = None
    for attempt in range(policy.max_retries + 1):
        if attempt:
            await asyncio.sleep(policy.delay(attempt - 1, response))
        if before_each is not None:
            await before_each()
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            response, error = None, f"timed out after {_timeout_of(client)} s: {exc!r}"
            continue
        except httpx.TransportError as exc:
            response, error = None, f"cannot reach {url}: {exc!r}"
            continue
        if response.status_code not in RETRY_STATUSES:
            return Attempted(response, None, attempt + 1)
        error = _describe(response)
    tries = policy.max_retries + 1
    return Attempted(response, f"{error} (gave up after {tries} attempt(s))", tries)


def _timeout_of(client: httpx.AsyncClient) -> float | None:
    return client.timeout.read


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` builds to completion and return its result.

    From plain synchronous code this is `asyncio.run`. When the calling thread already runs an
    event loop (a notebook, an async trainer calling a sync reward function), the coroutine runs
    on a fresh loop in a worker thread and this call blocks until it is done."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="openrft-grader") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
