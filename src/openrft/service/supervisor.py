"""Supervision: `openrft serve` keeps its worker processes running, and `/health` says how.

- `Supervisor` starts `count` workers (`python -m openrft.service.worker --parent-pid …`) and,
  from a thread, restarts any that exits while the server runs: after `restart_backoff_seconds`,
  doubling for each death in a row up to `restart_backoff_max_seconds`; a worker that had stayed
  up that long starts the count afresh. It records each process in the store's `workers` table:
  `starting` when started, `dead` with its exit code, `replaced_by` its successor.
- `worker_health` turns the current rows of that table into `/health`'s answer.
- `Backoff` is the bounded doubling wait of both restarts and the worker's store retries.

What it does not do: touch a dead worker's job (the next worker on that host re-queues it at
once, see `worker.py`), restart the API process itself (leave that to systemd or the container
runtime), or watch workers started on their own with `openrft worker`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError

from openrft.service.orphans import HOST, PID_NAMESPACE
from openrft.service.settings import Settings
from openrft.service.store import Store

WATCH_SECONDS = 0.2
"""How often the supervisor thread looks at its workers."""
log = logging.getLogger("openrft.supervisor")


@dataclass
class Backoff:
    """Waits that double from `first` up to `most`; `reset` once things work again."""

    first: float
    most: float
    current: float = 0.0

    def next(self) -> float:
        self.current = min(self.most, self.current * 2) if self.current else self.first
        return self.current

    def reset(self) -> None:
        self.current = 0.0


def describe_exit(code: int | None) -> str:
    """`exited with code 1`, `was killed by SIGKILL`, or `is gone` (exit status unknown)."""
    if code is None:
        return "is gone"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def worker_command(settings: Settings) -> list[str]:
    """A worker that stops by itself once this process is no longer its parent."""
    command = [sys.executable, "-m", "openrft.service.worker", "--parent-pid", str(os.getpid())]
    command += ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    return command


@dataclass
class Slot:
    """One of the supervisor's places for a worker: the process in it now, and its deaths."""

    proc: subprocess.Popen[bytes]
    backoff: Backoff
    started: float
    """`time.monotonic()` when `proc` started."""
    restarts: int = 0
    restart_at: float | None = None
    """Set while `proc` is dead: when to start the next one."""

    @property
    def name(self) -> str:
        return f"{HOST}:{self.proc.pid}"


class Supervisor:
    """Starts `count` workers and restarts any that dies until `stop`."""

    def __init__(self, settings: Settings, count: int, store: Store | None = None) -> None:
        self.settings = settings
        self.count = count
        self.store = store
        self.slots: list[Slot] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="openrft-supervisor", daemon=True)

    def start(self) -> None:
        """Start the workers and the thread that watches them. Call it from the main thread:
        the first workers are then its children, as `/proc/PID/task/PID/children` lists them."""
        if self.count < 1:
            return
        settings = self.settings
        self.store = self.store or Store.open(settings.url, settings.store_busy_seconds)
        first, most = settings.restart_backoff_seconds, settings.restart_backoff_max_seconds
        for _ in range(self.count):
            self.slots.append(Slot(self._spawn(0), Backoff(first, most), time.monotonic()))
        self._thread.start()

    def stop(self, timeout: float = 120.0) -> None:
        """Restart nothing more; SIGTERM every worker (each checkpoints and re-queues its job),
        wait up to `timeout` seconds for each, then SIGKILL it."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for slot in self.slots:
            if slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        for slot in self.slots:
            try:
                slot.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait()
            self._record(self._store().worker_exited, slot.name, slot.proc.returncode)

    # --- the thread -----------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_SECONDS):
            for slot in self.slots:
                self._tend(slot)

    def _tend(self, slot: Slot) -> None:
        code = slot.proc.poll()
        if code is None:
            return
        if slot.restart_at is None:
            self._died(slot, code)
        elif time.monotonic() >= slot.restart_at:
            self._restart(slot)

    def _died(self, slot: Slot, code: int) -> None:
        now = time.monotonic()
        if now - slot.started >= self.settings.restart_backoff_max_seconds:
            slot.backoff.reset()  # it had been up a while: a new trouble, not a crash loop
        delay = slot.backoff.next()
        slot.restart_at = now + delay
        log.warning("worker %s %s; restarting it in %.1f s", slot.name, describe_exit(code), delay)
        self._record(self._store().worker_exited, slot.name, code)

    def _restart(self, slot: Slot) -> None:
        old = slot.name
        slot.restarts += 1
        slot.proc = self._spawn(slot.restarts)
        slot.started, slot.restart_at = time.monotonic(), None
        log.warning("restarted worker %s as %s (restart %d)", old, slot.name, slot.restarts)
        self._record(self._store().save_worker, old, replaced_by=slot.name)

    def _spawn(self, restarts: int) -> subprocess.Popen[bytes]:
        """A worker process, recorded as `starting` (its own heartbeats take over from there)."""
        proc = subprocess.Popen(worker_command(self.settings))  # noqa: S603 - our own command
        row: dict[str, Any] = {"host": HOST, "pid_ns": PID_NAMESPACE, "pid": proc.pid}
        row |= {"state": "starting", "restarts": restarts, "heartbeat_at": time.time()}
        self._record(self._store().save_worker, f"{HOST}:{proc.pid}", **row)
        return proc

    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("Supervisor.start() opens the store")
        return self.store

    def _record(self, write: Callable[..., None], *args: Any, **values: Any) -> None:
        """A bookkeeping write; when the store is unavailable, supervision goes on without it."""
        try:
            write(*args, **values)
        except DBAPIError as exc:
            log.warning("could not record worker state (%s: %s)", type(exc).__name__, exc.orig)


def worker_health(
    rows: Sequence[Mapping[str, Any]], now: float, stale_seconds: float
) -> dict[str, Any]:
    """`/health`'s body from `Store.current_workers()`: `degraded` when a worker is dead (and
    not yet replaced) or has not heartbeated for `stale_seconds`, else `ok`."""
    dead, stale = [], []
    for row in rows:
        age = now - row["heartbeat_at"]
        brief = {"name": row["name"], "pid": row["pid"], "state": row["state"]}
        if row["state"] == "dead":
            dead.append(brief | {"why": f"its process {describe_exit(row['exit_code'])}"})
        elif age > stale_seconds:
            stale.append(brief | {"why": f"no heartbeat for {age:.0f} s"})
    workers = {
        "alive": len(rows) - len(dead) - len(stale),
        "restarts": sum(row["restarts"] for row in rows),
        "dead": dead,
        "stale": stale,
    }
    return {"status": "degraded" if dead or stale else "ok", "workers": workers}
