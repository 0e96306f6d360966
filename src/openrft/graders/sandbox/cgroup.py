"""One python-grader worker's control groups: memory, pids and CPU limits, and a kill switch.

Groups are created under this process's own groups (read from `/proc/self/cgroup`), one per
worker, and removed when the worker stops. Works with cgroup v1 controllers, pure v2, and the
hybrid layout (v1 controllers plus a v2 tree used only for `cgroup.kill`). No systemd needed.

It does NOT enable controllers a v2 parent has not delegated (a v2 group that holds processes
cannot hand controllers to children), and it does not account for the host process itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def own_groups() -> dict[str, Path]:
    """Controller (`memory`, `pids`, `cpu`, or `unified` for v2) → this process's group dir."""
    groups: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return groups
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount = ROOT / "unified" if (ROOT / "unified/cgroup.procs").exists() else ROOT
            if (mount / "cgroup.procs").exists():
                groups["unified"] = mount / path.lstrip("/")
            continue
        for name in controllers.split(","):
            if name in ("memory", "pids", "cpu") and (ROOT / name / "cgroup.procs").exists():
                groups[name] = ROOT / name / path.lstrip("/")
    return groups


class Cgroup:
    """The groups of one worker; every method is best effort except `create`'s limits."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        self._procs = [str(d / "cgroup.procs") for d in dirs.values()]

    @classmethod
    def create(cls, memory_bytes: int, max_pids: int, cpus: float) -> Cgroup | None:
        """A new group per controller with the limits set; None when no memory limit can be set."""
        name = f"openrft-{uuid.uuid4().hex[:12]}"
        dirs: dict[str, Path] = {}
        for controller, base in own_groups().items():
            with contextlib.suppress(OSError):
                (base / name).mkdir()
                dirs[controller] = base / name
        group = cls(dirs)
        v1_quota = f"{int(cpus * 100_000)}"
        limited = group._write("memory", "memory.limit_in_bytes", str(memory_bytes))
        limited |= group._write("unified", "memory.max", str(memory_bytes))
        group._write("memory", "memory.swappiness", "0")
        group._write("unified", "memory.swap.max", "0")
        group._write("pids", "pids.max", str(max_pids))
        group._write("unified", "pids.max", str(max_pids))
        group._write("cpu", "cpu.cfs_period_us", "100000")
        group._write("cpu", "cpu.cfs_quota_us", v1_quota)
        group._write("unified", "cpu.max", f"{v1_quota} 100000")
        if not limited:
            group.remove()
            return None
        return group

    @classmethod
    def probe(cls, reasons: dict[str, str]) -> bool:
        group = cls.create(64 << 20, 8, 1.0)
        if group is None:
            reasons["cgroups"] = "no writable memory cgroup under this process's own group"
            return False
        group.remove()
        return True

    def _write(self, controller: str, filename: str, value: str) -> bool:
        directory = self.dirs.get(controller)
        if directory is None:
            return False
        try:
            (directory / filename).write_text(value)
        except OSError:
            return False
        return True

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started through a shell that first moves itself into the groups, so the worker
        is inside them from its first instruction (and no Python runs between fork and exec)."""
        join = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
        return ["/bin/sh", "-c", join, "sh", *self._procs, "--", *argv]

    def oom_kills(self) -> int:
        """How many times the kernel's OOM killer struck inside this group."""
        for controller, filename in (
            ("unified", "memory.events"),
            ("memory", "memory.oom_control"),
        ):
            directory = self.dirs.get(controller)
            try:
                text = (directory / filename).read_text() if directory else ""
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def kill(self) -> None:
        """Kill every process in the group, including any that left the worker's session."""
        if self._write("unified", "cgroup.kill", "1"):
            return
        for directory in self.dirs.values():
            with contextlib.suppress(OSError):
                for pid in (directory / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        """Remove the (now empty) groups; waits briefly for killed processes to be reaped."""
        for directory in self.dirs.values():
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
