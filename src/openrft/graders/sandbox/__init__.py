"""The python grader's sandbox: untrusted `grade(sample, item)` code in locked-down workers.

Layers, each applied when the machine has it (detected once, at first use):

- **bubblewrap**: fresh pid, net, ipc, uts and mount namespaces; only the interpreter, its
  stdlib, the venv's site-packages and the worker script are visible (read-only); a size-bounded
  tmpfs at `/tmp` is the scratch space; the environment is an explicit dict. Without it, the
  worker mounts a tmpfs of the same size over its scratch directory in a mount namespace of its
  own (where it can), so the scratch files' *total* is bounded either way (`scratch_mb`, 1 GiB).
- **rlimits**: address space, open files, file size, no core dumps, threads, lifetime CPU.
- **unprivileged uid**: a root host drops to `nobody` inside the worker (or, where the
  interpreter is unreachable for `nobody`, at least clears every capability).
- **Landlock**: read only the paths above, write only the scratch, no TCP, no signals or abstract
  unix sockets outside the sandbox, `/proc` limited to the worker's own pid.
- **seccomp**: no sockets, fork, exec, ptrace, signals to other pids or admin syscalls.
- **cgroups**: memory, pids and CPU quota per worker, plus `cgroup.kill` on the whole group.
- a host-side wall-clock **watchdog** (`process.py`) kills an overrunning worker.

Untrusted code runs only when a filesystem layer (bubblewrap or Landlock), a network layer
(bubblewrap or seccomp) and rlimits are all in force, unless `allow_insecure` (or
`OPENRFT_PYTHON_GRADER_INSECURE=1`) is set, which is logged loudly at every grading call.

What this does NOT protect against: kernel exploits (every layer shares the host kernel; use
gVisor or a VM for hostile tenants at scale); side channels (timing, cache, Spectre); reading
world-readable system files under `/usr`; a grader forging its *own* score (it controls
`grade()` anyway); CPU and memory pressure on other tenants beyond the limits set here; and,
where no mount namespace can be made without bubblewrap, the scratch files' total size
(rlimits bound each file only). Hiding the training stack from graders (`hidden_modules`) is
for parity with OpenAI's runtime, not a layer: the code may undo it.

The parts, host side first:

    layers.py   what this machine offers, the policy, the worker's command line and limits
    cgroup.py   one worker's control groups: memory, pids and CPU limits, and a kill switch
    process.py  `SandboxWorker`: start one worker, stream a batch through it, watch it, kill it
    pool.py     `POOL` of warm workers per (owner, grader, source, limits); `run_batch`
    runtime.py  OpenAI's python-grader module list, and which of it a worker imports here
    worker.py   the in-sandbox side, run as a script by path: lock down, then grade requests

This package exposes the names below; building `GradeResult`s from the outcomes is
`graders/python_grader.py`'s business.
"""

from __future__ import annotations

from openrft.graders.sandbox.layers import (
    INSECURE_ENV,
    LAYER_NAMES,
    Layers,
    SandboxLimits,
    check_policy,
    detect_layers,
)
from openrft.graders.sandbox.pool import POOL, SandboxPool, run_batch
from openrft.graders.sandbox.process import Outcome, SandboxWorker, WorkerLost

__all__ = [
    "INSECURE_ENV",
    "LAYER_NAMES",
    "POOL",
    "Layers",
    "Outcome",
    "SandboxLimits",
    "SandboxPool",
    "SandboxWorker",
    "WorkerLost",
    "check_policy",
    "detect_layers",
    "run_batch",
]
