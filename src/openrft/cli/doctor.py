"""`openrft doctor`: which python-grader sandbox layers are in force on this machine, and why not;
and the graders' runtime against OpenAI's published module list.

It detects the layers, then starts one real sandboxed worker and prints what the worker itself
reports it applied (uid, Landlock ABI, seccomp, how the scratch is bounded). The runtime table
lists each of OpenAI's modules with its installed version and whether a sandboxed worker
imports it, or why not (`graders/sandbox/runtime.py`). It does NOT change anything on the
machine. Dynamic text (reasons, versions, worker reports) is printed as text, never as markup.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from openrft.errors import SandboxError
from openrft.graders.sandbox import (
    LAYER_NAMES,
    Layers,
    SandboxLimits,
    SandboxWorker,
    check_policy,
    detect_layers,
)
from openrft.graders.sandbox.runtime import OPENAI_MODULES, ModuleStatus, runtime_report

_WHAT = {
    "bubblewrap": "namespaces: no network, no host files, own pid tree, bounded /tmp",
    "landlock": "kernel file access rules, no TCP, no signals outside",
    "seccomp": "no sockets, fork, exec, ptrace or admin syscalls",
    "cgroups": "memory, pids and CPU quota per worker; kill the whole group",
    "rlimits": "address space, open files, file size, threads, CPU seconds",
    "uid": "worker runs as an unprivileged user (or root without capabilities)",
}


def doctor() -> None:
    """Print the python-grader sandbox layers in force here and the graders' runtime next to
    OpenAI's module list; exit 3 if untrusted code is refused."""
    out = Console()
    limits = SandboxLimits()
    layers = detect_layers()
    on = layers.effective(limits)
    table = Table(title="Python grader sandbox")
    for column in ("layer", "in force", "protects", "why not"):
        table.add_column(column)
    for name in LAYER_NAMES:
        mark = Text("yes", "green") if on[name] else Text("no", "red")
        if name == "landlock" and on[name]:
            mark += f" (ABI {layers.landlock_abi})"
        table.add_row(name, mark, _WHAT[name], Text(layers.reasons.get(name, "")))
    out.print(table)
    try:
        check_policy(layers, limits)
    except SandboxError:
        out.print(_runtime_table(runtime_report()))  # versions only: no sandbox to import in
        out.print("[red]untrusted python graders: refused[/red]")
        raise  # the CLI's entry point prints why and exits EXIT_UNAVAILABLE
    out.print(f"worker self-report: {_probe(limits, layers)}", highlight=False, markup=False)
    statuses = runtime_report(limits, layers)
    out.print(_runtime_table(statuses))
    out.print(runtime_line(statuses), highlight=False, markup=False)
    out.print("[green]untrusted python graders: allowed[/green]")


def runtime_line(statuses: list[ModuleStatus]) -> str:
    """One line: how many of OpenAI's modules a grader can import here, and which it cannot."""
    missing = [s.distribution for s in statuses if not s.ok]
    line = f"grader runtime: {len(statuses) - len(missing)} of {len(OPENAI_MODULES)} OpenAI modules"
    return line + (f"; missing: {', '.join(missing)}" if missing else "")


def _runtime_table(statuses: list[ModuleStatus]) -> Table:
    table = Table(title="Python grader runtime (OpenAI's module list)")
    for column in ("package", "import", "version", "in the sandbox", "why not"):
        table.add_column(column)
    for s in statuses:
        sandboxed = {True: Text("yes", "green"), False: Text("no", "red"), None: Text("-")}
        table.add_row(
            s.distribution,
            s.module,
            Text(s.version or "missing", "" if s.version else "red"),
            sandboxed[s.importable],
            Text(s.why),
        )
    return table


def _probe(limits: SandboxLimits, layers: Layers) -> str:
    worker = SandboxWorker("def grade(sample, item):\n    return 1.0\n", limits, layers)
    try:
        failure = worker.start()
        return str(worker.layers_applied) if failure is None else f"FAILED: {failure.details}"
    finally:
        worker.stop()
