"""Batched generation for `TransformersBackend`: requests arriving together share one `generate`.

`Scheduler` is a thread that takes submitted `Job`s and gathers compatible ones into a batch:
the gather ends when the batch is full, or when no request has arrived (nor is being prepared)
for `window` seconds (at most `MAX_WAIT_WINDOWS` windows in all); then the backend's `run`
generates it. Jobs are compatible when they decode alike: all greedy, or sampling with the same
`temperature`/`top_p`; a sampling job with a `seed` runs alone, so the same seed and request
give the same answer. A batch holds at most `max_rows` generated rows (a job with `n` sampled
choices is `n` rows; a greedy one is one row, its answer copied `n` times) and at most
`max_adapters` distinct LoRA adapters; a job bigger than `max_rows` runs alone.

`RowTracker` is the `StoppingCriteria` of a batch's `generate`: transformers calls it once per
step with every row's new token (before any `BaseStreamer` sees it, in transformers 5), so it is
where each row is cut at its own token limit, end-of-sequence token or stop string, where text
is decoded incrementally (holding back an incomplete multi-byte character and any tail that may
still become a stop string) and sent to the job's listener as `Delta`s, and where a job is
answered as soon as its rows are done. That is static batching (a batch runs until its longest
row is done, a request arriving meanwhile waits for the next batch, or for a suspension: see
`RowTracker`), the backend's fallback for models whose cache `continuous.Decoder` cannot merge;
for the others the batch is continuous: `Scheduler.take` hands waiting jobs to the running batch
as its rows finish, and `Row` is what `Decoder` pushes each token to. (Transformers' own
continuous batching, paged attention, was ~10x slower than this on a CPU in a trial.)

Importing this module imports torch and transformers.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria

from openrft.inference.schemas import ChatRequest, Choice, Completion, Delta, Event


@dataclass(eq=False)
class Job:
    """One request waiting for, or in, a batch."""

    request: ChatRequest
    prompt_ids: list[int]
    limit: int
    """Most tokens to generate per choice."""
    key: Hashable
    """Jobs with equal keys may share a batch."""
    finish: Callable[[str, str], Choice]
    """Builds a choice from its text and finish reason (`Prepared.choice`)."""
    constraint: Any = None
    """The decoding constraint (`structured.Constraint`), or None."""
    listener: Callable[[Event], None] | None = None
    """Receives `Started`, `Delta`s (unless `stream_text` is off) and the `Completion`."""
    stream_text: bool = False
    """Send text as it is generated (off for requests with tools: parsed at the end)."""
    cancelled: bool = False
    """Set when the client went away: the job's rows stop at the next step."""
    result: concurrent.futures.Future[Completion] = field(default_factory=concurrent.futures.Future)
    generated: list[Row] | None = None
    """Its rows once a batch has started them (kept when the job is resumed in a later one)."""

    @property
    def rows(self) -> int:
        """Rows still to generate: one per sampled choice; greedy choices are all the same
        answer, generated once."""
        if self.generated is not None:
            return sum(row.finish is None for row in self.generated)
        return 1 if self.request.temperature == 0 else self.request.n

    @property
    def used(self) -> int:
        """Completion tokens generated so far, as `usage` counts them (a greedy row once per
        choice it answers)."""
        return sum(row.used * len(row.indexes) for row in self.generated or [])

    def start(self, eos: int | None, decode: Any) -> list[Row]:
        """The rows to generate in this batch (created on the first)."""
        if self.generated is None:
            if self.rows == 1:
                self.generated = [Row(self, list(range(self.request.n)), eos, decode)]
            else:
                self.generated = [Row(self, [i], eos, decode) for i in range(self.rows)]
        return [row for row in self.generated if row.finish is None]

    def emit(self, event: Event) -> None:
        if self.listener is not None:
            self.listener(event)

    def done(self, completion: Completion) -> None:
        if not self.result.done():
            self.result.set_result(completion)
            self.emit(completion)


def batch_key(request: ChatRequest, continuous: bool = False) -> Hashable:
    """What a request must share with others to be generated in one batch. A continuous batch
    (`continuous.Decoder`) samples each row with its own settings: only a seeded sampling
    request needs a batch of its own; a static one (`generate`) needs one decoding for all."""
    if request.temperature == 0:
        return ("greedy",) if not continuous else ("any",)
    if request.seed is not None:
        return ("seeded", object())  # never equal to another's: runs alone
    return ("sample", request.temperature, request.top_p) if not continuous else ("any",)


class Scheduler:
    """Gathers submitted jobs into batches and runs them, one batch at a time, in a thread.

    A gather starts when a job is waiting and ends when its batch is full, or when no job has
    arrived (nor is being prepared: `announce`d, not yet submitted) for `window` seconds, or
    at the latest `MAX_WAIT_WINDOWS * window` seconds after it started. A job that finds the
    scheduler idle (no batch for `window` seconds) and no other job in preparation starts at
    once: a lone client pays no gather window; concurrent ones gather while a batch runs."""

    MAX_WAIT_WINDOWS = 8

    def __init__(
        self, run: Callable[[list[Job]], None], window: float, max_rows: int, max_adapters: int
    ) -> None:
        self.run = run
        self.window = window
        """Seconds of quiet (no new request) that end a gather."""
        self.max_rows = max_rows
        """Most generated rows in one batch (a gather ends early once its batch is full)."""
        self.max_adapters = max_adapters
        self.submitted = 0
        """Jobs submitted so far."""
        self._pending: list[Job] = []
        self._preparing = 0
        self._arrived = 0.0
        self._ended = time.monotonic()
        """When the last batch ended (creation counts as one: the first gather waits)."""
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def announce(self) -> None:
        """A job is being prepared (its prompt rendered): a gather waits for it."""
        with self._wake:
            self._preparing += 1
            self._arrived = time.monotonic()

    def submit(self, job: Job | None) -> None:
        """Queue `job` after its `announce` (None: its preparation failed)."""
        with self._wake:
            self._preparing -= 1
            self._arrived = time.monotonic()
            if job is not None:
                self._pending.append(job)
                self.submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="openrft-batcher", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def waiting(self, key: Hashable) -> int:
        """Rows of the submitted jobs with `key` that wait for a batch."""
        with self._wake:
            return sum(job.rows for job in self._pending if job.key == key)

    def resume(self, jobs: list[Job]) -> None:
        """Queue `jobs`, suspended mid-generation, ahead of every other job."""
        with self._wake:
            self._pending[:0] = jobs
            self._wake.notify()

    def take(self, key: Hashable, rows: int, adapters: set[str]) -> list[Job]:
        """The waiting jobs, oldest first, that may join a running continuous batch of `key`
        with `rows` free rows, whose rows use `adapters`. It stops at the first job that may
        not (another key, too many rows or adapters), so that no job is overtaken for ever:
        the batch then drains and the scheduler starts that job's batch."""
        with self._wake:
            taken: list[Job] = []
            used = set(adapters)
            for job in self._pending:
                adapter = {job.request.adapter} if job.request.adapter is not None else set()
                if job.key != key or job.rows > rows:
                    break
                if len(used | adapter) > max(self.max_adapters, 1):
                    break
                taken.append(job)
                rows -= job.rows
                used |= adapter
            del self._pending[: len(taken)]
            return taken

    def _loop(self) -> None:
        while True:
            self.run(self._next())
            with self._wake:
                self._ended = time.monotonic()

    def _next(self) -> list[Job]:
        with self._wake:
            while not self._pending:
                self._wake.wait()
            idle = time.monotonic() - self._ended >= self.window
            if idle and not self._preparing:  # nobody to wait for: no delay added to a lone request
                batch = self._batch()
                self._pending = [job for job in self._pending if job not in batch]
                return batch
            latest = time.monotonic() + self.MAX_WAIT_WINDOWS * self.window
            while sum(job.rows for job in self._batch()) < self.max_rows:
                now = time.monotonic()
                quiet = now - self._arrived >= self.window and not self._preparing
                if quiet or now >= latest:
                    break
                until = latest if self._preparing else min(latest, self._arrived + self.window)
                self._wake.wait(max(until - now, 1e-4))  # a submit wakes it earlier
            batch = self._batch()
            self._pending = [job for job in self._pending if job not in batch]
            return batch

    def _batch(self) -> list[Job]:
        return gather(self._pending, self.max_rows, self.max_adapters)


def gather(pending: list[Job], max_rows: int, max_adapters: int) -> list[Job]:
    """The oldest of `pending` and the later jobs compatible with it that fit in one batch."""
    first, *rest = pending
    batch, rows, adapters = [first], first.rows, {first.request.adapter} - {None}
    for job in rest:
        adapter = {job.request.adapter} - {None}
        if job.key != first.key or rows + job.rows > max_rows:
            continue
        if len(adapters | adapter) > max(max_adapters, 1):
            continue
        batch.append(job)
        rows += job.rows
        adapters |= adapter
    return batch


class Row:
    """One generated sequence of a job, covering choices `indexes` (several for greedy `n`)."""

    def __init__(self, job: Job, indexes: list[int], eos: int | None, decode: Any) -> None:
        self.job, self.indexes, self.eos, self.decode = job, indexes, eos, decode
        self.stops = [s for s in job.request.stops() if s]
        self.tokens: list[int] = []
        self.ended = False
        """Whether the row ended with the end-of-sequence token (counted in usage)."""
        self.finish: str | None = None
        self.text = ""
        """The text so far (sent to the listener when streaming)."""
        self.incremental = bool(self.stops) or job.stream_text

    def push(self, token: int) -> None:
        if self.finish is not None:
            return  # finished rows get padding until the whole batch is done
        if self.job.cancelled:
            self.finish = "stop"
            return
        if token == self.eos:
            self.ended, self.finish = True, "stop"
        else:
            self.tokens.append(token)
            if len(self.tokens) >= self.job.limit:
                self.finish = "length"
        if self.incremental or self.finish is not None:
            self._advance()

    def _advance(self) -> None:
        full = self.decode(self.tokens, skip_special_tokens=True)
        cut = min((i for i in (full.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            full, self.finish = full[:cut], "stop"
        elif self.finish is None:
            full = full[: len(full) - self._held_back(full)]
        if len(full) > len(self.text) and full.startswith(self.text):
            new, self.text = full[len(self.text) :], full
            if self.job.stream_text:
                for index in self.indexes:
                    self.job.emit(Delta(index, new, self.job.used))
        elif self.finish is not None and not self.job.stream_text:
            self.text = full

    def _held_back(self, text: str) -> int:
        """How many trailing characters may still change: an incomplete multi-byte character
        (decoded as U+FFFD) or the start of a stop string."""
        if text.endswith("\ufffd"):
            return len(text) - len(text.rstrip("\ufffd"))
        return max(
            (k for s in self.stops for k in range(len(s) - 1, 0, -1) if text.endswith(s[:k])),
            default=0,
        )

    @property
    def used(self) -> int:
        """Completion tokens of this row (the end-of-sequence token counts)."""
        return len(self.tokens) + int(self.ended)


class RowTracker(StoppingCriteria):
    """Feeds each step's tokens to the batch's rows; a row is done once it has finished, and a
    job is answered as soon as all its rows are (not when the batch's longest row is).

    With `waiting` (the rows of compatible jobs waiting for a batch), the batch is suspended
    once at least half of its rows are done and at least as many rows wait as are unfinished:
    `generate` ends, and the unfinished jobs are resumed in the next batch with the waiting
    ones, their prompt plus what they generated so far computed again. That prefill costs less
    than making the waiting requests sit out the longest row."""

    def __init__(self, rows: list[Row], waiting: Callable[[], int] | None = None) -> None:
        self.rows = rows
        self.jobs = list(dict.fromkeys(row.job for row in rows))
        self.waiting = waiting
        self.suspended = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
            row.push(int(token))
        for job in self.jobs:
            if not job.result.done() and job.rows == 0:
                finish_job(job)
        done = [row.finish is not None for row in self.rows]
        unfinished = done.count(False)
        if self.waiting is not None and 0 < unfinished <= done.count(True):
            self.suspended = self.waiting() >= unfinished
        if self.suspended:
            done = [True] * len(done)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def finish(self) -> list[Job]:
        """Complete the batch's jobs; the suspended ones (still generating) are returned."""
        if not self.suspended:
            for job in self.jobs:
                if not job.result.done():
                    finish_job(job)
        return [job for job in self.jobs if not job.result.done()]


def finish_job(job: Job) -> None:
    """Complete `job` from its generated rows."""
    choices: list[Choice] = []
    for row in job.generated or []:
        if row.finish is None:  # the batch ended without this row reaching an end
            row.finish = "length"
            row._advance()
        choice = job.finish(row.text, row.finish)
        choices += [choice] * len(row.indexes)
    job.done(Completion(choices, len(job.prompt_ids), job.used))
