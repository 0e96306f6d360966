"""The python graders' runtime next to OpenAI's: which of its published modules are here.

OpenAI's python grader image offers numpy, scipy, sympy, pandas, rapidfuzz, scikit-learn,
rouge-score, deepdiff, jsonschema, pydantic, pyyaml, nltk, sqlparse, rdkit, scikit-bio and
ast-grep-py (`OPENAI_MODULES`); `pip install 'openrft[grader-runtime]'` installs all of them
(each has a CPython 3.11 manylinux x86_64 wheel). `runtime_report` says, per module, which
version is installed in this interpreter (the one workers run), and — given a sandbox — whether a
locked-down worker can import it, with the reason when not. `openrft doctor` prints it.

It does NOT install anything, nor check versions against OpenAI's (OpenAI publishes names, not
pins).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from openrft.graders.sandbox.layers import Layers, SandboxLimits
from openrft.graders.sandbox.process import Outcome, SandboxWorker, WorkerLost

OPENAI_MODULES: tuple[tuple[str, str], ...] = (
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("sympy", "sympy"),
    ("pandas", "pandas"),
    ("rapidfuzz", "rapidfuzz"),
    ("scikit-learn", "sklearn"),
    ("rouge-score", "rouge_score"),
    ("deepdiff", "deepdiff"),
    ("jsonschema", "jsonschema"),
    ("pydantic", "pydantic"),
    ("pyyaml", "yaml"),
    ("nltk", "nltk"),
    ("sqlparse", "sqlparse"),
    ("rdkit", "rdkit"),
    ("scikit-bio", "skbio"),
    ("ast-grep-py", "ast_grep_py"),
)
"""(PyPI distribution, import name) of every module OpenAI's python grader runtime lists."""

INSTALL_HINT = "pip install 'openrft[grader-runtime]'"


@dataclass(frozen=True)
class ModuleStatus:
    """One of OpenAI's modules on this machine."""

    distribution: str
    module: str
    version: str | None
    """The installed distribution's version, None when it is not installed."""
    importable: bool | None
    """Whether a sandboxed worker imported it; None when not probed (no sandbox, not installed)."""
    why: str = ""
    """Why it is missing or cannot be imported."""

    @property
    def ok(self) -> bool:
        return self.version is not None and self.importable is not False


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def probe_source(modules: list[str]) -> str:
    """A grader that imports `modules` and scores the bitmask of those that imported: one
    worker's answer carries every verdict (a score is all a worker may send back)."""
    names = repr(modules)
    return (
        "import importlib\n"
        "MASK = 0\n"
        f"for _i, _name in enumerate({names}):\n"
        "    try:\n"
        "        importlib.import_module(_name)\n"
        "        MASK |= 1 << _i\n"
        "    except Exception:  # a module that fails to import is the verdict, not a crash\n"
        "        pass\n"
        "def grade(sample, item):\n"
        "    return float(MASK)\n"
    )


def runtime_report(
    limits: SandboxLimits | None = None, layers: Layers | None = None
) -> list[ModuleStatus]:
    """Each of OpenAI's modules: installed version and (given `layers`) whether a worker under
    `limits` imports it. Importing all of them costs a few seconds of CPU."""
    versions = {dist: installed_version(dist) for dist, _ in OPENAI_MODULES}
    present = [module for dist, module in OPENAI_MODULES if versions[dist] is not None]
    imported, failure = _probe(present, limits or SandboxLimits(), layers) if layers else ({}, "")
    statuses = []
    for dist, module in OPENAI_MODULES:
        version = versions[dist]
        if version is None:
            statuses.append(
                ModuleStatus(dist, module, None, None, f"not installed: {INSTALL_HINT}")
            )
            continue
        ok = imported.get(module)
        why = ""
        if ok is False and layers is not None:
            why = failure or import_error(module, limits or SandboxLimits(), layers)
            why = why or "installed, but the sandboxed import failed"
        statuses.append(ModuleStatus(dist, module, version, ok, why))
    return statuses


def _probe(
    modules: list[str], limits: SandboxLimits, layers: Layers
) -> tuple[dict[str, bool], str]:
    """Module → imported in a real sandboxed worker, and why the probe failed (if it did)."""
    outcome = _grade_once(probe_source(modules), limits, layers)
    if outcome.kind != "ok":
        return dict.fromkeys(modules, False), f"the probe failed: {outcome.details[-300:]}"
    mask = int(outcome.score)
    return {name: bool(mask >> i & 1) for i, name in enumerate(modules)}, ""


def import_error(module: str, limits: SandboxLimits, layers: Layers) -> str:
    """The last line of the traceback a sandboxed `import module` ends with ("" if it works)."""
    outcome = _grade_once(
        f"import {module}\ndef grade(sample, item):\n    return 0.0\n", limits, layers
    )
    lines = outcome.details.strip().splitlines() if outcome.kind != "ok" else []
    return lines[-1] if lines else ""


def _grade_once(source: str, limits: SandboxLimits, layers: Layers) -> Outcome:
    worker = SandboxWorker(source, limits, layers)
    try:
        failure = worker.start()
        if failure is not None:
            return failure
        return next(iter(worker.stream([b'{"sample": {}, "item": {}}'])))
    except WorkerLost as lost:
        return lost.outcome
    finally:
        worker.stop()
