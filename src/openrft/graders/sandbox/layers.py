"""Which isolation layers this machine offers, the policy that refuses untrusted code without
enough of them, and the command and limits a worker starts under.

`detect_layers` probes the machine once (bubblewrap, Landlock, seccomp, cgroups, the uid drop)
and records why a layer is missing; `check_policy` refuses to run untrusted code unless a
filesystem layer (bubblewrap or Landlock), a network layer (bubblewrap or seccomp) and rlimits
are all in force, or the insecure override is on (logged loudly at every grading call).
`bubblewrap_command`, `read_paths`, `worker_env` and `rlimits` say what a worker may see, read
and use; `SandboxLimits` holds the deployment's numbers.

It does NOT start workers (`process.py` does) or apply anything inside one (`worker.py` does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from openrft.errors import SandboxError
from openrft.graders.sandbox.cgroup import Cgroup

log = logging.getLogger(__package__)  # one logger for the whole sandbox

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
SANDBOX_SCRATCH = "/tmp"  # noqa: S108 - a fresh tmpfs in the sandbox's own mount namespace
"""The scratch directory inside bubblewrap (also `HOME`, `TMPDIR` and the working directory)."""
SANDBOX_WORKER_PATH = "/opt/openrft/sandbox/worker.py"
"""Where the worker script appears inside bubblewrap."""
INSECURE_ENV = "OPENRFT_PYTHON_GRADER_INSECURE"
LAYER_NAMES = ("bubblewrap", "landlock", "seccomp", "cgroups", "rlimits", "uid")
HIDDEN_MODULES = (
    "torch", "torchvision", "torchaudio", "transformers", "trl", "peft", "accelerate",
    "datasets", "vllm", "sentence_transformers", "deepspeed", "bitsandbytes", "triton",
    "jax", "tensorflow", "cupy",
)  # fmt: skip
"""OpenRFT's own training stack (and other array backends), visible to workers only because
they share its interpreter: OpenAI's runtime has none of them, and libraries that probe for
them (scikit-bio imports torch when it can) would spend the worker's memory on it."""


class SandboxLimits(BaseModel):
    """Deployment limits for python graders: `GradeContext.options["python_grader"]`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    timeout_seconds: float = Field(default=120.0, gt=0)
    """Wall-clock seconds one `grade()` call (or loading the module) may take."""
    max_consecutive_timeouts: int = Field(default=3, ge=1)
    """After this many samples in a row time out, the rest of the batch is not run: each is
    flagged `python_grader_timeout_error` at once (a grader that hangs on every output would
    otherwise hold a training step for batch size × `timeout_seconds`)."""
    memory_mb: int = Field(default=2048, ge=64)
    """Address space (rlimit) and memory cgroup limit of one worker, in MiB."""
    cpus: float = Field(default=1.0, gt=0)
    """CPU quota of one worker (cgroups); without cgroups the worker is not CPU-capped."""
    scratch_mb: int = Field(default=1024, ge=1)
    """Total size of the writable scratch directory (`/tmp` inside bubblewrap), in MiB: 1 GiB,
    OpenAI's disk limit for python graders. A tmpfs of this size (charged to the memory cgroup)
    bounds the total; RLIMIT_FSIZE bounds each file as well."""
    hidden_modules: list[str] = Field(default_factory=lambda: list(HIDDEN_MODULES))
    """Top-level modules a grader cannot import even though the interpreter has them."""
    max_threads: int = Field(default=64, ge=1)
    """Threads per worker (pids cgroup, and RLIMIT_NPROC once unprivileged)."""
    open_files: int = Field(default=256, ge=16)
    """Open file descriptors per worker."""
    cpu_seconds: int = Field(default=3600, ge=10)
    """Lifetime CPU seconds of one worker (RLIMIT_CPU backstop); a worker near it is replaced."""
    max_output_chars: int = Field(default=4000, ge=0)
    """Characters of the grader's print output kept (shown with a runtime error)."""
    max_details_chars: int = Field(default=8000, ge=200)
    """Characters of a traceback kept in `python_grader_runtime_error_details`."""
    uid: int = 65534
    """Unprivileged uid (and gid) a root host drops to inside the worker."""
    max_workers: int = Field(default=8, ge=1)
    """Idle workers kept warm across calls (least recently used ones are stopped)."""
    disable: list[str] = Field(default_factory=list)
    """Layers not to use even when available (for tests and debugging): any of `bubblewrap`,
    `landlock`, `seccomp`, `cgroups`, `uid`."""
    allow_insecure: bool = False
    """Run untrusted code even without the required layers. Local development only; logged."""

    def wants(self, layer: str) -> bool:
        return layer not in self.disable


@dataclass(frozen=True)
class Layers:
    """Which isolation layers this machine offers (before per-deployment `disable`)."""

    bubblewrap: str | None
    """Path of a working `bwrap`, or None."""
    landlock_abi: int
    seccomp_library: str | None
    """libseccomp's soname when pyseccomp works here, or None."""
    cgroups: bool
    uid_drop: bool
    """True when the worker can end up unprivileged (or the host is already unprivileged)."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Why a layer is missing, by layer name."""

    def effective(self, limits: SandboxLimits) -> dict[str, bool]:
        """Layer name → in force for workers started with `limits`."""
        bwrap = self.bubblewrap is not None and limits.wants("bubblewrap")
        return {
            "bubblewrap": bwrap,
            "landlock": self.landlock_abi > 0 and limits.wants("landlock"),
            "seccomp": self.seccomp_library is not None and limits.wants("seccomp"),
            "cgroups": self.cgroups and limits.wants("cgroups"),
            "rlimits": True,
            "uid": os.geteuid() != 0
            or (self.uid_drop and limits.wants("uid") and (bwrap or _world_reachable())),
        }

    def missing_requirements(self, limits: SandboxLimits) -> list[str]:
        """The required protections (filesystem, network, resource limits) not in force."""
        on = self.effective(limits)
        missing = []
        if not (on["bubblewrap"] or on["landlock"]):
            missing.append("a filesystem layer (bubblewrap or Landlock)")
        if not (on["bubblewrap"] or on["seccomp"]):
            missing.append("a network layer (bubblewrap or seccomp)")
        if not on["rlimits"]:
            missing.append("resource limits")
        return missing


def check_policy(layers: Layers, limits: SandboxLimits) -> None:
    """Refuse untrusted code without the required layers, unless the insecure override is on."""
    missing = layers.missing_requirements(limits)
    if not missing:
        return
    why = "; ".join(f"{k}: {v}" for k, v in layers.reasons.items())
    if limits.allow_insecure or os.environ.get(INSECURE_ENV) == "1":
        log.warning(
            "RUNNING UNTRUSTED PYTHON GRADER CODE WITHOUT %s (insecure override is on; local "
            "development only). %s",
            " and ".join(missing),
            why,
        )
        return
    raise SandboxError(
        f"refusing to run python grader code: missing {' and '.join(missing)} ({why}). "
        "Install bubblewrap (`apt-get install bubblewrap`) or use a kernel with Landlock and "
        "libseccomp; run `openrft doctor` to see the layers. For local development only, set "
        f"`allow_insecure: true` in the python_grader options or {INSECURE_ENV}=1."
    )


@functools.cache
def detect_layers() -> Layers:
    """Probe this machine once: which layers work here, and why the others do not."""
    reasons: dict[str, str] = {}
    bwrap = _probe_bubblewrap(reasons)
    abi = _probe_landlock(reasons)
    seccomp = _probe_seccomp(reasons)
    cgroups = Cgroup.probe(reasons)
    uid_drop = os.geteuid() != 0 or bwrap is not None or _world_reachable()
    if not uid_drop:
        reasons["uid"] = f"the interpreter under {sys.base_prefix} is not reachable for nobody"
    layers = Layers(bwrap, abi, seccomp, cgroups, uid_drop, reasons)
    log.info("python grader sandbox layers: %s", layers)
    return layers


def _probe_bubblewrap(reasons: dict[str, str]) -> str | None:
    path = shutil.which("bwrap")
    if path is None:
        reasons["bubblewrap"] = "bwrap is not installed (apt-get install bubblewrap)"
        return None
    probe = [path, "--ro-bind", "/", "/", *_namespace_flags(), "--", "/bin/true"]
    done = subprocess.run(  # noqa: S603 - a fixed argv
        probe, capture_output=True, timeout=30, check=False
    )
    if done.returncode != 0:
        reasons["bubblewrap"] = f"bwrap cannot create namespaces here: {done.stderr.decode()[:200]}"
        return None
    return path


def _probe_landlock(reasons: dict[str, str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        reasons["landlock"] = f"kernel has no Landlock ({os.strerror(ctypes.get_errno())})"
        return 0
    return int(abi)


def _probe_seccomp(reasons: dict[str, str]) -> str | None:
    library = ctypes.util.find_library("seccomp")
    try:
        import pyseccomp

        pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    except (ImportError, RuntimeError, OSError) as exc:
        reasons["seccomp"] = f"pyseccomp/libseccomp unusable: {exc} (pip install openrft[sandbox])"
        return None
    return library


@functools.cache
def _world_reachable() -> bool:
    """Can `nobody` reach the interpreter, its stdlib and the worker script?"""
    paths = (Path(sys.executable).resolve(), Path(sys.base_prefix), Path(sys.prefix), WORKER_SCRIPT)
    for path in paths:
        for parent in [path, *path.parents]:
            if parent.exists() and not parent.stat().st_mode & 0o005:
                return False
    return True


def _namespace_flags() -> list[str]:
    flags = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    flags += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    return flags + ([] if os.geteuid() == 0 else ["--unshare-user"])


def read_paths() -> list[str]:
    """What the worker may read: interpreter, stdlib, venv, shared libraries, the worker script."""
    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent}
    roots |= {Path(p) for p in sys.path if "site-packages" in p and Path(p).is_dir()}
    roots = {r for r in roots if not any(o in r.parents for o in roots)}  # drop nested ones
    system = ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo", "/etc/ld.so.cache"]
    return sorted({str(r) for r in roots}) + system + ["/dev/urandom", "/dev/random", "/dev/zero"]


def worker_env(scratch: str) -> dict[str, str]:
    """The worker's whole environment: built here, never copied from `os.environ`."""
    env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"}
    for var in (
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        env[var] = "1"  # one CPU per worker; BLAS thread pools would only fight over it
    return env


def bubblewrap_command(bwrap: str, limits: SandboxLimits) -> list[str]:
    """`bwrap …` showing only read-only runtime paths, a bounded tmpfs, and nothing else."""
    cmd = [bwrap, *_namespace_flags(), "--clearenv", "--cap-drop", "ALL"]
    if os.geteuid() == 0:  # the worker itself drops to `nobody`, which needs these two, once
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    for key, value in worker_env(SANDBOX_SCRATCH).items():
        cmd += ["--setenv", key, value]
    cmd += ["--dev", "/dev", "--proc", "/proc"]
    # the scratch tmpfs goes first: runtime paths that live below it (a checkout under /tmp)
    # are then bound on top of it instead of being hidden by it
    cmd += ["--perms", "1777", "--size", str(limits.scratch_mb << 20), "--tmpfs", SANDBOX_SCRATCH]
    bound: list[Path] = [Path("/dev"), Path("/proc")]
    made: set[Path] = set()
    for path in [*read_paths(), SANDBOX_WORKER_PATH]:
        target = Path(path)
        source = WORKER_SCRIPT if path == SANDBOX_WORKER_PATH else target
        if any(target.is_relative_to(b) for b in bound) or not os.path.lexists(source):
            continue
        cmd += _mkdirs(target.parent, bound, made)
        cmd += ["--ro-bind", str(source), path]
        bound.append(target)
    return [*cmd, "--chdir", SANDBOX_SCRATCH]


def _mkdirs(directory: Path, bound: list[Path], made: set[Path]) -> list[str]:
    """`--dir` for each missing ancestor, mode 0755: bwrap would copy a 0700 `/root` otherwise,
    and `nobody` could not reach the interpreter below it."""
    args: list[str] = []
    for parent in [*reversed(directory.parents), directory]:
        if parent == Path("/") or parent in made or any(parent.is_relative_to(b) for b in bound):
            continue
        args += ["--perms", "0755", "--dir", str(parent)]
        made.add(parent)
    return args


def rlimits(limits: SandboxLimits) -> dict[str, int]:
    values = {
        "AS": limits.memory_mb << 20,
        "CPU": limits.cpu_seconds,
        "FSIZE": limits.scratch_mb << 20,
        "NOFILE": limits.open_files,
        "CORE": 0,
        "NPROC": limits.max_threads,
    }
    return {name: v for name, v in values.items() if hasattr(resource, "RLIMIT_" + name)}
