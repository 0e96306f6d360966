"""Host side of one python-grader worker: start it, stream requests, watch it, kill it.

A `SandboxWorker` is one locked-down process (see `worker.py`) running one grader's code. It
streams a batch over a pipe (no process per sample) under a wall-clock watchdog per sample, and
validates every reply (request id, finite float, known keys, frame size) before anything else
sees it. A sample that runs past the time limit, a worker that dies, or a reply that breaks the
protocol raises `WorkerLost` with that one sample's verdict; the worker is then already dead.

It does NOT decide which layers to use (`layers.py` does), keep workers warm or retry the rest
of a batch (`pool.py` does), or build grade results (`graders/python_grader.py` does).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

from openrft.graders.result import MAX_ABS_REWARD
from openrft.graders.sandbox.cgroup import Cgroup
from openrft.graders.sandbox.layers import (
    SANDBOX_SCRATCH,
    SANDBOX_WORKER_PATH,
    WORKER_SCRIPT,
    Layers,
    SandboxLimits,
    bubblewrap_command,
    read_paths,
    rlimits,
    worker_env,
)

_HEADER = struct.Struct(">I")
MAX_REPLY_BYTES = 1 << 20
"""A reply frame larger than this is a protocol violation (details are trimmed far below it)."""
STARTUP_SECONDS = 60.0
"""How long the worker may take to lock itself down before it counts as a sandbox failure."""

Kind = Literal["ok", "runtime", "invalid", "timeout", "memory", "server"]
_REPLY_KEYS = {"id", "score", "output", "error", "details", "retire"}


@dataclass(frozen=True)
class Outcome:
    """What happened to one sample, before it becomes a `GradeResult`."""

    kind: Kind
    score: float = 0.0
    details: str = ""
    output: str | None = None
    """A text answer (a python tool's output, `"returns": "text"` requests)."""


class WorkerLost(Exception):
    """The worker is gone or untrustworthy; `outcome` is the verdict for the sample in progress."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.details)
        self.outcome = outcome


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return _HEADER.pack(len(body)) + body


class SandboxWorker:
    """One sandboxed process running one grader's source."""

    def __init__(self, source: str, limits: SandboxLimits, layers: Layers) -> None:
        self.source, self.limits, self.layers = source, limits, layers
        self.on = layers.effective(limits)
        self.busy_seconds = 0.0
        self.retired = False
        self.layers_applied: dict[str, Any] = {}
        self.stderr_tail = ""
        """What bubblewrap or the interpreter printed before the worker silenced fd 2."""
        self._next_id = 0
        self._buffer = bytearray()
        self._scratch: str | None = None
        self.cgroup: Cgroup | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Outcome | None:
        """Spawn, lock down, load the source. None when ready, else the outcome for every sample."""
        try:
            self._spawn()
            self._send(frame({"lockdown": self._lockdown_config()}))
            ready = self._await_reply(STARTUP_SECONDS, "locking down")
        except WorkerLost as lost:
            return Outcome("server", details=f"sandbox_start_failed: {lost.outcome.details}")
        if "ready" not in ready or not self._layers_ok(ready["ready"]):
            self.stop()
            return Outcome("server", details=f"sandbox_lockdown_failed: {str(ready)[:500]}")
        self.layers_applied = ready["ready"]
        try:
            self._send(frame({"source": self.source}))
            loaded = self._await_reply(self.limits.timeout_seconds, "loading the grader")
            if loaded.get("loaded") is True:
                return None
            outcome = self._validate(loaded, expected_id=None)
        except WorkerLost as lost:
            return lost.outcome
        self.stop()
        return outcome

    def _spawn(self) -> None:
        self.cgroup = (
            Cgroup.create(
                (self.limits.memory_mb + self.limits.scratch_mb) << 20,
                self.limits.max_threads + 4,
                self.limits.cpus,
            )
            if self.on["cgroups"]
            else None
        )
        req_r, self._req_w = os.pipe()
        self._rep_r, rep_w = os.pipe()
        argv = [sys.executable, "-I", "-B"]
        if self.on["bubblewrap"] and self.layers.bubblewrap:
            argv = [*bubblewrap_command(self.layers.bubblewrap, self.limits), *argv]
            argv += [SANDBOX_WORKER_PATH, str(req_r), str(rep_w)]
            env, cwd = worker_env(SANDBOX_SCRATCH), "/"
        else:
            self._scratch = cwd = self._make_scratch()
            argv += [str(WORKER_SCRIPT), str(req_r), str(rep_w)]
            env = worker_env(cwd)
        if self.cgroup is not None:
            argv = self.cgroup.wrap(argv)
        self.proc = subprocess.Popen(  # noqa: S603 - argv is built above, never from user input
            argv,
            pass_fds=(req_r, rep_w),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        os.close(req_r)
        os.close(rep_w)
        os.set_blocking(self._rep_r, False)
        os.set_blocking(self._req_w, False)

    def _make_scratch(self) -> str:
        scratch = tempfile.mkdtemp(prefix="openrft-grader-")
        if self._drops_uid():
            os.chown(scratch, self.limits.uid, self.limits.uid)
        return scratch

    def _drops_uid(self) -> bool:
        return os.geteuid() == 0 and self.on["uid"]

    def _lockdown_config(self) -> dict[str, Any]:
        bwrap = self.on["bubblewrap"]
        scratch = SANDBOX_SCRATCH if bwrap else str(self._scratch)
        script = SANDBOX_WORKER_PATH if bwrap else str(WORKER_SCRIPT)
        landlock = {"read": [*read_paths(), script], "write": [scratch, os.devnull]}
        return {
            "rlimits": rlimits(self.limits),
            "uid": self.limits.uid if self._drops_uid() else None,
            "gid": self.limits.uid if self._drops_uid() else None,
            "landlock": landlock if self.on["landlock"] else None,
            "seccomp": self.on["seccomp"],
            "libseccomp": self.layers.seccomp_library,
            "max_output_chars": self.limits.max_output_chars,
            "max_details_chars": self.limits.max_details_chars,
            # bubblewrap's /tmp is already a tmpfs of this size; elsewhere the worker mounts one
            "scratch_mount": None
            if bwrap
            else {"path": scratch, "size": self.limits.scratch_mb << 20},
            "scratch": scratch,
            "scratch_mb": self.limits.scratch_mb,
            "hidden_modules": self.limits.hidden_modules,
        }

    def _layers_ok(self, applied: Any) -> bool:
        if not isinstance(applied, dict):
            return False
        if self.on["landlock"] and not applied.get("landlock_abi"):
            return False
        if self.on["seccomp"] and applied.get("seccomp") is not True:
            return False
        return not self._drops_uid() or applied.get("user") == f"uid {self.limits.uid}"

    def stop(self) -> None:
        """Kill the worker and everything it started; remove its groups and scratch."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.stderr_tail = _drain(self.proc.stderr) or self.stderr_tail
        for fd in (getattr(self, "_req_w", -1), getattr(self, "_rep_r", -1)):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # -- protocol ---------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        """Write a small control frame (used before the stream starts)."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._req_w, selectors.EVENT_WRITE)
            while data:
                if not sel.select(STARTUP_SECONDS):
                    raise WorkerLost(Outcome("server", details="worker stopped reading"))
                data = data[self._write(data) :]

    def _write(self, data: bytes | bytearray) -> int:
        try:
            return os.write(self._req_w, data[: 1 << 16])
        except BlockingIOError:
            return 0
        except BrokenPipeError:
            raise self._lost("death") from None

    def _await_reply(self, seconds: float, doing: str) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as sel:
            sel.register(self._rep_r, selectors.EVENT_READ)
            while (message := self._next_frame()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise self._lost("timeout", f"{doing} took longer than {seconds:g} s")
                self._read()
        return message

    def _read(self) -> None:
        try:
            data = os.read(self._rep_r, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            raise self._lost("death")
        self._buffer += data

    def _next_frame(self) -> dict[str, Any] | None:
        if len(self._buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_REPLY_BYTES:
            raise self._lost("violation", f"a {size}-byte reply frame")
        if len(self._buffer) < _HEADER.size + size:
            return None
        body = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
        del self._buffer[: _HEADER.size + size]
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):  # bad UTF-8 or JSON, or nested a million deep
            raise self._lost("violation", "a reply that is not JSON") from None
        if not isinstance(message, dict):
            raise self._lost("violation", "a reply that is not an object")
        return message

    def stream(self, payloads: Sequence[bytes]) -> Iterator[Outcome]:
        """Grade `payloads` (JSON objects without `id`) in order; raises `WorkerLost`."""
        first = self._next_id
        self._next_id += len(payloads)
        pending = bytearray(b"".join(_with_id(first + i, p) for i, p in enumerate(payloads)))
        started = clock = time.monotonic()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self._rep_r, selectors.EVENT_READ)
                sel.register(self._req_w, selectors.EVENT_WRITE)
                for expected in range(first, first + len(payloads)):
                    while (message := self._next_frame()) is None:
                        left = clock + self.limits.timeout_seconds - time.monotonic()
                        if left <= 0:
                            raise self._lost("timeout")
                        pending = self._pump(sel, left, pending)
                    clock = time.monotonic()
                    yield self._validate(message, expected)
        finally:
            self.busy_seconds += time.monotonic() - started

    def _pump(self, sel: selectors.BaseSelector, left: float, pending: bytearray) -> bytearray:
        for key, _ in sel.select(left):
            if key.fd == self._rep_r:
                self._read()
            elif pending:
                del pending[: self._write(pending)]
                if not pending:
                    sel.unregister(self._req_w)
        return pending

    def _validate(self, message: dict[str, Any], expected_id: int | None) -> Outcome:
        if expected_id is not None and (
            type(message.get("id")) is not int or message["id"] != expected_id
        ):
            raise self._lost(
                "violation", f"reply id {str(message.get('id'))[:40]}, expected {expected_id}"
            )
        if not set(message) <= _REPLY_KEYS:
            raise self._lost(
                "violation", f"unexpected reply keys {sorted(set(message) - _REPLY_KEYS)}"
            )
        self.retired |= message.get("retire") is True
        score, error, details = (
            message.get("score"),
            message.get("error"),
            message.get("details", ""),
        )
        if "output" in message and error is None:
            if isinstance(message["output"], str):
                return Outcome("ok", output=message["output"])
            raise self._lost("violation", "an output that is not a string")
        if "score" in message and error is None:
            if (
                isinstance(score, int | float)
                and not isinstance(score, bool)
                and math.isfinite(score)
            ):
                if abs(score) > MAX_ABS_REWARD:
                    return Outcome(
                        "invalid",
                        details=f"grade() returned {score:g}, outside the allowed range "
                        f"±{MAX_ABS_REWARD:g}; scale the score down",
                    )
                return Outcome("ok", float(score))
            raise self._lost("violation", f"a score that is not a finite float: {str(score)[:40]}")
        if error in ("runtime", "invalid", "memory") and isinstance(details, str):
            return Outcome(error, details=details[: self.limits.max_details_chars])
        raise self._lost("violation", f"a malformed reply {str(message)[:200]}")

    def _lost(self, why: str, detail: str = "") -> WorkerLost:
        """Kill the worker; the sample in progress gets a verdict that says why."""
        oom_kills = self.cgroup.oom_kills() if self.cgroup else 0
        if why == "death" and self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        code = self.proc.poll() if self.proc else None
        self.stop()
        limit = self.limits.timeout_seconds
        if why == "timeout":
            return WorkerLost(Outcome("timeout", details=detail or f"grade() ran past {limit:g} s"))
        if why == "violation":
            return WorkerLost(
                Outcome("server", details=f"protocol_violation: worker sent {detail}")
            )
        status = _describe(code, bubblewrap=self.on["bubblewrap"])
        if oom_kills:
            text = f"the grader ran out of memory ({self.limits.memory_mb} MiB; worker {status})"
            return WorkerLost(Outcome("memory", details=text))
        if status == "signal SIGXCPU":
            return WorkerLost(Outcome("timeout", details="the worker used up its CPU seconds"))
        said = f": {self.stderr_tail}" if self.stderr_tail else ""
        return WorkerLost(Outcome("runtime", details=f"the grader process died ({status}){said}"))


def _drain(stream: IO[bytes] | None) -> str:
    """The last words on the worker's stderr pipe (never blocks: the process is dead)."""
    if stream is None or stream.closed:
        return ""
    os.set_blocking(stream.fileno(), False)
    try:
        data = stream.read(4096) or b""
    except BlockingIOError:
        data = b""
    stream.close()
    return data.decode(errors="replace").strip()[-2000:]


def _with_id(request_id: int, payload: bytes) -> bytes:
    body = b'{"id":%d,' % request_id + payload[1:]
    return _HEADER.pack(len(body)) + body


def _describe(code: int | None, bubblewrap: bool) -> str:
    """bwrap reports a signal-killed child as 128 + signal; Popen as a negative code."""
    if code is None:
        return "unknown status"
    number = -code if code < 0 else code - 128 if bubblewrap and code > 128 else 0
    if number:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(number).name}"
    return f"exit code {code}"
