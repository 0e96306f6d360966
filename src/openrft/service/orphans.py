"""Keeping a job's training from outliving its worker, and two attempts out of one job dir.

- `die_with_parent()`: a `preexec_fn` that asks Linux to SIGKILL the training when the worker
  that started it dies (`prctl(PR_SET_PDEATHSIG)`), so a `kill -9`ed worker leaves nothing
  training unsupervised; `None` on other systems. Linux sends the signal when the parent
  *thread* exits, so the worker starts training from its main thread.
- `take_jobdir()`: an exclusive `flock` on `JOBDIR/attempt.lock` for a new attempt. The
  training inherits the descriptor, so while any process of an attempt lives the lock is held
  and no other attempt starts writing metrics or checkpoints there; the file names its holder's
  pid, which is killed if it still runs on this machine.
- `kill_orphan()`: SIGKILL a previous attempt's process group if one of its members still runs
  here; `process_alive()` and `group_alive()` tell a live process from a recycled pid, and
  `HOST` with `PID_NAMESPACE` say which processes "here" can see.

What it does not protect against: training on another machine (the lock is only as good as the
shared filesystem's `flock`; Linux's NFS client emulates it with byte-range locks), processes
that leave the training's process group (`setsid`), or, off Linux (no `prctl`), a training that
outlives its worker: there only the lock and the re-queue (which kills the group) apply.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
LOCK_FILE = "attempt.lock"
HOST = socket.gethostname()


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. `pid:[4026531836]`
    except OSError:
        return None


PID_NAMESPACE = _pid_namespace()
"""With `HOST`, which processes this one can see and signal: containers sharing a hostname
(host networking) still have their own pids."""
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
"""Loaded here, before any fork: `dlopen` in a forked child is not async-signal-safe."""


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the child SIGKILLed once the calling thread exits (Linux)."""
    if _LIBC is None:
        return None
    libc, parent = _LIBC, os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


def process_alive(pid: int, marker: str) -> bool:
    """True if `pid` is a live process whose command line contains `marker` (guards against a
    recycled pid). Without /proc (not Linux) we cannot tell, and say False."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z" and marker.encode() in cmdline


def group_alive(pgid: int, marker: str) -> bool:
    """True if a live member of process group `pgid` has `marker` in its command line: the
    group outlives its leader when the leader alone was killed (e.g. a launcher's ranks)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        if marker.encode() in cmdline:
            return True
    return False


def kill_orphan(pid: int | None, jobdir: Path, wait: float = 10.0) -> bool:
    """SIGKILL the process group of a previous attempt's training (`pid` led it) if any of it
    still runs here; True if there was something to kill."""
    marker = str(jobdir)
    if not pid or not group_alive(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while group_alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def take_jobdir(jobdir: Path, wait: float) -> int | None:
    """A descriptor holding `jobdir`'s attempt lock, killing a previous attempt's training
    that still holds it here; None if it is still held after `wait` seconds."""
    deadline = time.monotonic() + wait
    while (fd := _try_lock(jobdir / LOCK_FILE)) is None:
        kill_orphan(lock_holder(jobdir), jobdir)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
    return fd


def record_holder(fd: int, pid: int) -> None:
    """Name the training that now holds the lock, for whoever finds it held."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid}\n".encode(), 0)


def lock_holder(jobdir: Path) -> int | None:
    """The pid the last attempt recorded in its lock file, if any."""
    try:
        return int((jobdir / LOCK_FILE).read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
