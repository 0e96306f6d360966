"""`openrft doctor`: which python-grader sandbox layers are in force on this machine, and why not.

It detects the layers, then starts one real sandboxed worker and prints what the worker itself
reports it applied (uid, Landlock ABI, seccomp). It does NOT change anything on the machine.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from openrft.errors import SandboxError
from openrft.graders.sandbox import (
    LAYER_NAMES,
    Layers,
    SandboxLimits,
    SandboxWorker,
    check_policy,
    detect_layers,
)

_WHAT = {
    "bubblewrap": "namespaces: no network, no host files, own pid tree, bounded /tmp",
    "landlock": "kernel file access rules, no TCP, no signals outside",
    "seccomp": "no sockets, fork, exec, ptrace or admin syscalls",
    "cgroups": "memory, pids and CPU quota per worker; kill the whole group",
    "rlimits": "address space, open files, file size, threads, CPU seconds",
    "uid": "worker runs as an unprivileged user (or root without capabilities)",
}


def doctor() -> None:
    """Print the python-grader sandbox layers in force here; exit 3 if untrusted code is refused."""
    out = Console()
    limits = SandboxLimits()
    layers = detect_layers()
    on = layers.effective(limits)
    table = Table(title="Python grader sandbox")
    for column in ("layer", "in force", "protects", "why not"):
        table.add_column(column)
    for name in LAYER_NAMES:
        mark = "[green]yes[/green]" if on[name] else "[red]no[/red]"
        if name == "landlock" and on[name]:
            mark += f" (ABI {layers.landlock_abi})"
        table.add_row(name, mark, _WHAT[name], layers.reasons.get(name, ""))
    out.print(table)
    try:
        check_policy(layers, limits)
    except SandboxError:
        out.print("[red]untrusted python graders: refused[/red]")
        raise  # the CLI's entry point prints why and exits EXIT_UNAVAILABLE
    out.print(f"worker self-report: {_probe(limits, layers)}", highlight=False)
    out.print("[green]untrusted python graders: allowed[/green]")


def _probe(limits: SandboxLimits, layers: Layers) -> str:
    worker = SandboxWorker("def grade(sample, item):\n    return 1.0\n", limits, layers)
    try:
        failure = worker.start()
        return str(worker.layers_applied) if failure is None else f"FAILED: {failure.details}"
    finally:
        worker.stop()
