"""The in-sandbox side of the python grader: lock this process down, then grade requests.

Run as a script, by path (`python -I -B .../sandbox/worker.py IN_FD OUT_FD`), inside bubblewrap
when the host has it. It imports nothing from `openrft` (the package is not visible in the
sandbox) and only the standard library plus `pyseccomp`. The host speaks to it over two pipes,
never stdin/stdout: frames are a 4-byte big-endian length and a UTF-8 JSON object.

1. host → `{"lockdown": {...}}`; the worker locks itself down in this order: (outside
   bubblewrap) a size-bounded tmpfs over its scratch directory in a mount namespace of its own →
   rlimits → drop the uid (or clear capabilities) → Landlock → seccomp → hide the modules the
   host names (`hidden_modules`), then answers `{"ready": {layers}}` or `{"fatal": reason}`
   and exits.
2. host → `{"source": ...}`; only now is the user's code compiled and run;
   answer `{"loaded": true}` or `{"error": "runtime", "details": traceback}`.
3. host → `{"id": n, "sample": {...}, "item": {...}}`; answer `{"id": n, "score": x}` or
   `{"id": n, "error": "runtime" | "invalid" | "memory", "details": ...}`. A request with
   `"returns": "text"` (a python tool's call) is answered `{"id": n, "output": "..."}`: a string
   as it is, any other value as its JSON text, at most `MAX_OUTPUT_BYTES` encoded.

It does NOT defend the host on its own: the user's code runs in this very process and can forge
frames on the reply pipe, so the host validates every reply and enforces time from outside.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import importlib.abc
import importlib.machinery
import io
import json
import linecache
import math
import numbers
import os
import resource
import struct
import sys
import traceback
from typing import Any

_HEADER = struct.Struct(">I")
_GRADER_FILE = "grader.py"
MAX_OUTPUT_BYTES = 1_000_000
"""Largest text answer (a python tool's output) as encoded in its reply frame; the host refuses
frames over 1 MiB."""

# Landlock (include/uapi/linux/landlock.h); syscalls 444-446 are the same on every architecture.
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_VERSION = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_MAKE_CHAR, _FS_MAKE_BLOCK = 1 << 6, 1 << 11
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_THREAD = 0x10000
_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 1 << 14, 1 << 18
_SCRATCH_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)

# Every syscall a grader never needs and that reaches outside the process (or the kernel's
# admin surface). Denied with EPERM; `clone3` gets ENOSYS so glibc falls back to `clone`.
_DENIED_NAMES = (
    "socket socketpair fork vfork execve execveat tkill ptrace process_vm_readv "
    "process_vm_writev kcmp pidfd_open pidfd_send_signal pidfd_getfd mount umount2 pivot_root "
    "chroot setns unshare mount_setattr move_mount open_tree fsopen fsconfig fsmount fspick bpf "
    "perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register keyctl add_key "
    "request_key init_module finit_module delete_module kexec_load kexec_file_load reboot swapon "
    "swapoff acct quotactl syslog settimeofday clock_settime adjtimex clock_adjtime sethostname "
    "setdomainname iopl ioperm vhangup name_to_handle_at open_by_handle_at personality "
    "sched_setaffinity setpriority ioprio_set migrate_pages move_pages set_mempolicy"
)
_DENIED = _DENIED_NAMES.split()

_libc = ctypes.CDLL(None, use_errno=True)


class Fatal(Exception):
    """A lockdown step failed; the worker must not run user code."""


def read_frame(fd: int) -> Any:
    header = _read_exact(fd, _HEADER.size)
    return json.loads(_read_exact(fd, _HEADER.unpack(header)[0]))


def _read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("host closed the request pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, message: dict[str, Any]) -> None:
    body = json.dumps(message, allow_nan=False).encode()
    data = _HEADER.pack(len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


def set_rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))


def drop_privileges(uid: int | None, gid: int | None) -> str:
    """Become `uid`/`gid` when root and allowed to; otherwise at least clear every capability."""
    if os.geteuid() == 0 and uid is not None and gid is not None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        if os.getuid() == 0 or os.geteuid() == 0:
            raise Fatal("setuid did not drop root")
        return f"uid {uid}"
    if os.geteuid() == 0:
        _clear_capabilities()
        return "root without capabilities"
    return f"uid {os.geteuid()} (already unprivileged)"


def _clear_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    if _libc.capset(header, data) != 0:
        raise Fatal(f"capset failed: {os.strerror(ctypes.get_errno())}")


def _syscall(nr: int, *args: Any) -> int:
    result: int = _libc.syscall(ctypes.c_long(nr), *args)
    return result


def landlock_abi() -> int:
    """Landlock's ABI version, 0 when the kernel lacks it (`/sys/kernel/security` may be absent)."""
    return max(_syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_LL_VERSION)), 0)


def apply_landlock(read: list[str], write: list[str]) -> int:
    """Allow reading `read` and writing `write` only; with ABI ≥ 4 no TCP at all, with ABI ≥ 6
    no signals or abstract unix sockets outside this sandbox. Returns the ABI used."""
    abi = landlock_abi()
    if abi < 1:
        raise Fatal("Landlock is not available")
    fs = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fs |= _FS_IOCTL_DEV if abi >= 5 else 0
    attr = struct.pack("=QQQ", fs, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _syscall(_LL_CREATE, ctypes.c_char_p(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise Fatal(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    reading = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
    writing = fs & ~(_FS_MAKE_CHAR | _FS_MAKE_BLOCK)
    try:
        for paths, access in ((read, reading), (write, writing)):
            for path in paths:
                _landlock_allow(ruleset, path, access)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise Fatal("prctl(PR_SET_NO_NEW_PRIVS) failed")
        if _syscall(_LL_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise Fatal(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


def _landlock_allow(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # an optional path (say /lib64) this machine lacks
    try:
        if not os.path.isdir(path):
            access &= _FS_FILE_ONLY
        rule = struct.pack("=Qi", access, fd)
        if _syscall(_LL_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), rule, 0) != 0:
            raise Fatal(f"landlock_add_rule({path}) failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def apply_seccomp(seccomp: Any) -> None:
    """Deny new processes, sockets, exec, signals to other processes, and admin syscalls."""
    pid, deny = os.getpid(), seccomp.ERRNO(1)
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _DENIED:
        flt.add_rule(deny, name)
    flt.add_rule(seccomp.ERRNO(38), "clone3")
    flt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        flt.add_rule(deny, name, seccomp.Arg(0, seccomp.NE, pid))
    flt.add_rule(deny, "prlimit64", seccomp.Arg(0, seccomp.NE, 0))
    flt.load()


def import_seccomp(library: str) -> Any:
    """Import pyseccomp without letting it run `ldconfig` (no subprocess, no /sbin needed)."""
    real = ctypes.util.find_library
    ctypes.util.find_library = lambda name: library if name == "seccomp" else real(name)
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = real
    return pyseccomp


def mount_scratch(path: str, size: int) -> str:
    """Cover `path` with a tmpfs of `size` bytes in a mount namespace of this process's own,
    so the scratch files' *total* is bounded without bubblewrap too. Root needs only the mount
    namespace; anyone else first enters a user namespace mapping its own uid (and then gives
    up the capabilities that namespace granted). Returns what bounds the scratch now."""
    uid, gid = os.geteuid(), os.getegid()
    user_ns = uid != 0
    if _libc.unshare(_CLONE_NEWNS | (_CLONE_NEWUSER if user_ns else 0)) != 0:
        return f"each file only (no mount namespace: {os.strerror(ctypes.get_errno())})"
    if user_ns:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    if _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise Fatal(f"cannot make the mounts private: {os.strerror(ctypes.get_errno())}")
    options = f"size={size},mode=1777".encode()
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
        raise Fatal(f"cannot mount the scratch tmpfs: {os.strerror(ctypes.get_errno())}")
    if user_ns:
        _clear_capabilities()
    return f"tmpfs of {size >> 20} MiB"


class HiddenModules(importlib.abc.MetaPathFinder):
    """Makes `import name` fail as if `name` were not installed (`ModuleNotFoundError`, which
    `except ImportError` probes catch). Not a security layer: the code may remove it."""

    def __init__(self, names: list[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, name: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(
                f"No module named {name!r} (not part of the python grader runtime)", name=name
            )
        return None


def lock_down(config: dict[str, Any]) -> dict[str, Any]:
    """Apply the layers the host asked for, in the order that keeps each one effective."""
    seccomp = import_seccomp(config["libseccomp"]) if config.get("seccomp") else None
    layers: dict[str, Any] = {}
    if config.get("scratch_mount"):
        layers["scratch"] = mount_scratch(**config["scratch_mount"])
    elif config.get("scratch"):  # bubblewrap's tmpfs: report the size the kernel enforces
        stat = os.statvfs(config["scratch"])
        layers["scratch"] = f"filesystem of {stat.f_blocks * stat.f_frsize >> 20} MiB"
    set_rlimits(config["rlimits"])
    layers["rlimits"] = sorted(config["rlimits"])
    layers["user"] = drop_privileges(config.get("uid"), config.get("gid"))
    if config.get("landlock"):
        read = [*config["landlock"]["read"], f"/proc/{os.getpid()}"]
        layers["landlock_abi"] = apply_landlock(read, config["landlock"]["write"])
    if seccomp is not None:
        apply_seccomp(seccomp)
        layers["seccomp"] = True
    if config.get("hidden_modules"):
        sys.meta_path.insert(0, HiddenModules(config["hidden_modules"]))
    return layers


class BoundedText(io.TextIOBase):
    """Captures what the user's code prints, keeping only the first `limit` characters."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.size < self.limit:
            self.parts.append(text[: self.limit - self.size])
            self.size += len(self.parts[-1])
        return len(text)

    def take(self) -> str:
        text, self.parts, self.size = "".join(self.parts), [], 0
        return text


def format_error(exc: BaseException, output: str, limit: int) -> str:
    """The user's part of the traceback (our frames dropped) plus what it printed, trimmed."""
    frames = traceback.extract_tb(exc.__traceback__)
    keep = [i for i, frame in enumerate(frames) if frame.filename == _GRADER_FILE]
    tb = exc.__traceback__
    for _ in range(keep[0] if keep else 0):
        tb = tb.tb_next if tb is not None else None
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if _SCRATCH and _fills_scratch(exc):
        text += (
            f"\nThe grader's scratch space is full: files under {_SCRATCH[0]} may hold "
            f"{_SCRATCH[1]} MiB in all (`scratch_mb`); write less, or delete files it is done "
            "with.\n"
        )
    if output:
        text += "\n--- output ---\n" + output
    if len(text) > limit:
        text = text[: limit // 4] + "\n… trimmed …\n" + text[-(limit - limit // 4) :]
    return text


_SCRATCH: list[Any] = []
"""[scratch directory, its size in MiB], once the host has said (for the scratch-full hint)."""


def _fills_scratch(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is a write refused for lack of scratch space."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _SCRATCH_FULL:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def as_score(value: Any) -> tuple[float | None, str]:
    if isinstance(value, numbers.Real):
        score = float(value)
        if math.isfinite(score):
            return score, ""
        return None, f"grade() returned {score}; return a finite float"
    return None, f"grade() returned {type(value).__name__}, not a float: {str(value)[:200]!r}"


def as_output(value: Any) -> dict[str, Any]:
    """A python tool's return value as its reply: the text, or why there is none."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"error": "invalid", "details": f"the tool returned {type(value).__name__}: {exc}"}
    size = len(json.dumps(text).encode())
    if size > MAX_OUTPUT_BYTES:
        return {
            "error": "invalid",
            "details": f"the tool returned {size} bytes; the limit is {MAX_OUTPUT_BYTES}: "
            "return less (a summary, the first rows)",
        }
    return {"output": text}


def load(source: str, capture: BoundedText, limit: int) -> tuple[Any, dict[str, Any]]:
    linecache.cache[_GRADER_FILE] = (len(source), None, source.splitlines(True), _GRADER_FILE)
    namespace: dict[str, Any] = {"__name__": "grader", "__file__": _GRADER_FILE}
    try:
        exec(compile(source, _GRADER_FILE, "exec"), namespace)  # noqa: S102 - the sandbox's job
        if not callable(namespace.get("grade")):
            raise TypeError("the source defines no callable `grade(sample, item)`")
    except MemoryError:
        return None, {"error": "memory", "details": "out of memory while loading the grader"}
    except BaseException as exc:  # anything the user's module raises is data
        return None, {"error": "runtime", "details": format_error(exc, capture.take(), limit)}
    capture.take()
    return namespace["grade"], {"loaded": True}


def grade_one(
    grade: Any, request: dict[str, Any], capture: BoundedText, limit: int
) -> dict[str, Any]:
    reply: dict[str, Any] = {"id": request["id"]}
    try:
        value = grade(request["sample"], request["item"])
    except MemoryError:
        capture.take()
        return reply | {"error": "memory", "details": "MemoryError: out of memory", "retire": True}
    except BaseException as exc:  # a failing grade() is data, not a crash
        return reply | {"error": "runtime", "details": format_error(exc, capture.take(), limit)}
    capture.take()
    if request.get("returns") == "text":
        return reply | as_output(value)
    score, problem = as_score(value)
    return reply | (
        {"score": score} if score is not None else {"error": "invalid", "details": problem}
    )


def serve(in_fd: int, out_fd: int) -> None:
    config = read_frame(in_fd)["lockdown"]
    try:
        layers = lock_down(config)
    except (Fatal, OSError, ImportError, RuntimeError, ValueError) as exc:
        write_frame(out_fd, {"fatal": f"{type(exc).__name__}: {exc}"})
        return
    limit = int(config["max_details_chars"])
    if config.get("scratch"):
        _SCRATCH[:] = [str(config["scratch"]), int(config["scratch_mb"])]
    capture = BoundedText(int(config["max_output_chars"]))
    sys.stdout = sys.stderr = capture
    write_frame(out_fd, {"ready": layers})
    grade, reply = load(read_frame(in_fd)["source"], capture, limit)
    write_frame(out_fd, reply)
    while grade is not None:
        write_frame(out_fd, grade_one(grade, read_frame(in_fd), capture, limit))


def main() -> None:
    in_fd, out_fd = int(sys.argv[1]), int(sys.argv[2])
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # user code writing to raw fds reaches nothing
        os.dup2(devnull, fd)
    os.close(devnull)
    with contextlib.suppress(EOFError, BrokenPipeError):  # the host closed the pipes
        serve(in_fd, out_fd)


if __name__ == "__main__":
    main()
