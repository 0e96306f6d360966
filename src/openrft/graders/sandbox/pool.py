"""Warm python-grader workers, and one batch through them.

`run_batch` streams a whole batch through one worker; when a sample costs the worker its life
(timeout, crash, protocol violation) the rest of the batch goes on in a fresh one. `POOL` keeps
idle workers warm between calls, keyed by (owner, grader name, source hash, limits), so a worker
never serves two graders or two owners; concurrent calls with one key get separate workers.

It does NOT start processes or talk to them (`process.py` does).
"""

from __future__ import annotations

import atexit
import threading
from collections import OrderedDict

from openrft.graders.sandbox.layers import Layers, SandboxLimits
from openrft.graders.sandbox.process import Outcome, SandboxWorker, WorkerLost


class SandboxPool:
    """Idle workers by key; a worker is checked out by one batch at a time."""

    def __init__(self) -> None:
        self._idle: OrderedDict[tuple[str, ...], list[SandboxWorker]] = OrderedDict()
        self._lock = threading.Lock()

    def checkout(self, key: tuple[str, ...]) -> SandboxWorker | None:
        with self._lock:
            workers = self._idle.get(key)
            return workers.pop() if workers else None

    def checkin(self, key: tuple[str, ...], worker: SandboxWorker) -> None:
        """Keep `worker` warm unless it should retire; stop the least recently used beyond
        `max_workers`."""
        if worker.retired or worker.busy_seconds > worker.limits.cpu_seconds / 2:
            worker.stop()
            return
        evicted = []
        with self._lock:
            self._idle.setdefault(key, []).append(worker)
            self._idle.move_to_end(key)
            while sum(len(w) for w in self._idle.values()) > worker.limits.max_workers:
                oldest = next(iter(self._idle))
                evicted.append(self._idle[oldest].pop(0))
                if not self._idle[oldest]:
                    del self._idle[oldest]
        for old in evicted:
            old.stop()

    def close(self) -> None:
        """Stop every idle worker."""
        with self._lock:
            workers = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
        for worker in workers:
            worker.stop()


POOL = SandboxPool()
atexit.register(POOL.close)


def run_batch(
    key: tuple[str, ...], source: str, limits: SandboxLimits, layers: Layers, payloads: list[bytes]
) -> list[Outcome]:
    """Grade every payload through one worker (a fresh one after each loss); never raises."""
    outcomes: list[Outcome] = []
    worker = POOL.checkout(key)
    while len(outcomes) < len(payloads):
        if worker is None:
            worker = SandboxWorker(source, limits, layers)
            failure = worker.start()
            if failure is not None:  # the code cannot load (or the sandbox cannot start)
                worker.stop()
                worker = None
                outcomes += [failure] * (len(payloads) - len(outcomes))
                break
        try:
            for outcome in worker.stream(payloads[len(outcomes) :]):
                outcomes.append(outcome)
        except WorkerLost as lost:
            outcomes.append(lost.outcome)
            worker = None
        if _timed_out_in_a_row(outcomes, limits.max_consecutive_timeouts):
            outcomes += _skipped(len(payloads) - len(outcomes), limits)
    if worker is not None:
        POOL.checkin(key, worker)
    return outcomes


def _timed_out_in_a_row(outcomes: list[Outcome], n: int) -> bool:
    return len(outcomes) >= n and all(o.kind == "timeout" for o in outcomes[-n:])


def _skipped(count: int, limits: SandboxLimits) -> list[Outcome]:
    details = (
        f"not run: {limits.max_consecutive_timeouts} samples in a row ran past "
        f"{limits.timeout_seconds:g} s, so the rest of the batch was skipped"
    )
    return [Outcome("timeout", details=details)] * count
