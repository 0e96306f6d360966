"""HTTP plumbing the graders that call out share: POST with retries and backoff, and running
their async batches from synchronous code.

`post_with_retries` retries what is worth retrying (HTTP 429, any 5xx, timeouts, connection
errors) with exponential backoff plus jitter, honouring `Retry-After`; it returns an `Attempted`
outcome and never raises for a failed call. Other 4xx answers come back as they are: the caller
decides what they mean. A `RetryPolicy` may bound each attempt in all (connect, send and the
whole body, so a server dripping a byte a second cannot outlast it) and every attempt and wait
together; `max_body` caps how much of a body is read (a bigger one ends the call, unretried).
`run_sync` runs a coroutine to completion from any thread, including one whose event loop is
already running (it then uses a fresh loop in a worker thread).

This module does not know what is being graded, parse bodies, or limit rates; callers do. It
quotes at most `EXCERPT` characters of a body in its error texts.
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
EXCERPT = 300
"""Most characters of a response body quoted in an error text."""
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
"""Headers that describe the wire form of a body, not the decoded bytes kept in memory."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one call."""

    max_retries: int = 3
    """Retries after the first attempt."""
    backoff: float = 0.5
    """Seconds before the first retry; doubled for each further retry."""
    max_backoff: float = 20.0
    """Longest single wait (also caps `Retry-After`)."""
    attempt_timeout: float | None = None
    """Seconds one attempt may take in all: connect, send and read the whole body. None leaves
    it to the client's own timeouts, which bound each read, not the sum."""
    budget: float | None = None
    """Seconds every attempt and wait of one call may take together (None: unbounded)."""

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
    too_large: bool = False
    """The last body was bigger than `max_body` (then `error` says so); not retried."""


class BodyTooLarge(Exception):
    """A response body exceeded the `max_body` a caller set."""


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
    return f"HTTP {response.status_code} from {response.request.url}: {body[:EXCERPT]}"


def describe_size(limit: int) -> str:
    """`1 MiB` for 1048576, else the bytes."""
    return f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"


@dataclass
class _Call:
    """One call's request, and what its retry loop has done so far (readable when the overall
    budget cuts the loop short)."""

    client: httpx.AsyncClient
    url: str
    body: Any
    headers: dict[str, str] | None
    max_body: int | None
    attempts: int = 0
    error: str | None = None


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    body: Any,
    policy: RetryPolicy,
    *,
    headers: dict[str, str] | None = None,
    before_each: Callable[[], Awaitable[None]] | None = None,
    max_body: int | None = None,
) -> Attempted:
    """POST `body` as JSON, retrying 429/5xx/timeouts/connection errors per `policy`.

    `before_each` is awaited before every attempt (a rate limiter goes there); a body longer
    than `max_body` bytes (decoded) ends the call with `too_large` set, the rest unread."""
    call = _Call(client, url, body, headers, max_body)
    try:
        async with asyncio.timeout(policy.budget):
            return await _retry(call, policy, before_each)
    except TimeoutError:  # only the overall budget lands here: attempts catch their own
        spent = f"gave up after {policy.budget} s in all, {call.attempts} attempt(s)"
        return Attempted(None, f"{call.error or 'no answer'} ({spent})", call.attempts)


async def _retry(
    call: _Call, policy: RetryPolicy, before_each: Callable[[], Awaitable[None]] | None
) -> Attempted:
    response: httpx.Response | None = None
    for attempt in range(policy.max_retries + 1):
        if attempt:
            await asyncio.sleep(policy.delay(attempt - 1, response))
        if before_each is not None:
            await before_each()
        call.attempts = attempt + 1
        try:
            response = await _post_once(call, policy.attempt_timeout)
        except (TimeoutError, httpx.TimeoutException) as exc:
            response, call.error = None, f"timed out {_timeout_of(call, policy)}: {exc!r}"
            continue
        except httpx.TransportError as exc:
            response, call.error = None, f"cannot reach {call.url}: {exc!r}"
            continue
        except BodyTooLarge as exc:
            return Attempted(None, str(exc), call.attempts, too_large=True)
        if response.status_code not in RETRY_STATUSES:
            return Attempted(response, None, call.attempts)
        call.error = _describe(response)
    tries = policy.max_retries + 1
    return Attempted(response, f"{call.error} (gave up after {tries} attempt(s))", tries)


async def _post_once(call: _Call, seconds: float | None) -> httpx.Response:
    """One POST, its body read whole (or `BodyTooLarge`) within `seconds` in all."""
    async with (
        asyncio.timeout(seconds),
        call.client.stream("POST", call.url, json=call.body, headers=call.headers) as streamed,
    ):
        content = await _read(streamed, call.max_body)
    kept = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
    # a fresh response holding the decoded bytes: `.text`/`.json()` work as after a plain read
    return httpx.Response(
        streamed.status_code, headers=kept, content=content, request=streamed.request
    )


async def _read(response: httpx.Response, max_body: int | None) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():  # decoded, so a gzip bomb is counted unpacked
        size += len(chunk)
        if max_body is not None and size > max_body:
            raise BodyTooLarge(f"response larger than {describe_size(max_body)}; not read further")
        chunks.append(chunk)
    return b"".join(chunks)


def _timeout_of(call: _Call, policy: RetryPolicy) -> str:
    if policy.attempt_timeout is not None:
        return f"after {policy.attempt_timeout} s without a complete answer"
    return f"after {call.client.timeout.read} s"


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
