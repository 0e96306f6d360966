"""The python graders' runtime against OpenAI's published list, and the 1 GiB scratch disk.

Graders run in the real sandbox (all layers, and without bubblewrap, where the worker mounts its
own tmpfs); a layer set this machine lacks is skipped with the reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openrft.cli import app
from openrft.graders import GradeContext, GradeResult, grade_batch, load_grader
from openrft.graders.sandbox import POOL, SandboxLimits, detect_layers
from openrft.graders.sandbox.runtime import OPENAI_MODULES, installed_version, probe_source

ROOT = Path(__file__).parents[3]
CONFIGS = {"all-layers": [], "without-bubblewrap": ["bubblewrap"]}

# One real computation per package new to the runtime, each checked against a known answer.
NEW_PACKAGES = {
    "rdkit": """
from rdkit import Chem
from rdkit.Chem import Descriptors
def grade(sample, item):
    mol = Chem.MolFromSmiles(sample["output_text"])  # ethanol: C2H6O
    return float(mol.GetNumAtoms() == 3 and round(Descriptors.MolWt(mol), 2) == 46.07)
""",
    "scikit-bio": """
from skbio import DNA
def grade(sample, item):
    return float(str(DNA(sample["output_text"]).reverse_complement()) == item["expected"])
""",
    "ast-grep-py": """
from ast_grep_py import SgRoot
def grade(sample, item):
    root = SgRoot(sample["output_text"], "python").root()
    calls = [m.get_match("A").text() for m in root.find_all(pattern="print($A)")]
    return float(calls == ["1", "x"])
""",
}
CASES = {
    "rdkit": ("CCO", {}),
    "scikit-bio": ("AACG", {"expected": "CGTT"}),
    "ast-grep-py": ("print(1)\ny = 2\nprint(x)\n", {}),
}


def options(disable: list[str], **limits: Any) -> GradeContext:
    return GradeContext(owner="parity", options={"python_grader": {"disable": disable, **limits}})


@pytest.fixture(params=list(CONFIGS))
def disable(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    disabled = CONFIGS[request.param]
    layers, limits = detect_layers(), SandboxLimits(disable=disabled)
    if layers.missing_requirements(limits):
        reasons = "; ".join(f"{k}: {v}" for k, v in layers.reasons.items())
        pytest.skip(f"{request.param}: {layers.missing_requirements(limits)} ({reasons})")
    yield disabled
    POOL.close()


def run(
    source: str, texts: list[str], items: list[dict[str, Any]], context: GradeContext
) -> list[GradeResult]:
    spec = load_grader({"type": "python", "name": "parity", "source": source})
    results = grade_batch(spec, texts, items, context)
    return [results[i] for i in range(len(texts))]


def test_the_runtime_extra_is_openais_list() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert sorted(extras["grader-runtime"]) == sorted(dist for dist, _ in OPENAI_MODULES)


@pytest.mark.parametrize("package", list(NEW_PACKAGES))
def test_new_packages_run_in_the_sandbox(package: str, disable: list[str]) -> None:
    if installed_version(package) is None:  # each has a cp311 manylinux wheel: install it
        pytest.fail(f"{package} is not installed: pip install 'openrft[grader-runtime]'")
    text, item = CASES[package]
    (result,) = run(NEW_PACKAGES[package], [text], [item], options(disable))
    assert not result.errors.any(), result.errors.python_grader_runtime_error_details
    assert result.reward == 1.0


def test_every_openai_module_imports_in_one_worker(disable: list[str]) -> None:
    """All sixteen at once, as a grader could: the training stack sharing the interpreter stays
    hidden (scikit-bio imports torch when it can, which overran the address-space limit)."""
    modules = [module for _, module in OPENAI_MODULES]
    (result,) = run(probe_source(modules), ["x"], [{}], options(disable))
    assert result.reward == 2 ** len(modules) - 1, result.errors.python_grader_runtime_error_details
    hidden = "def grade(sample, item):\n    import torch\n    return 1.0\n"
    (refused,) = run(hidden, ["x"], [{}], options(disable))
    details = refused.errors.python_grader_runtime_error_details or ""
    assert "No module named 'torch' (not part of the python grader runtime)" in details


def test_default_scratch_is_one_gib() -> None:
    assert SandboxLimits().scratch_mb << 20 == 1 << 30


WRITER = """
import os, tempfile
def grade(sample, item):
    for k in range(item["files"]):
        with open(os.path.join(tempfile.gettempdir(), f"{item['tag']}-{k}"), "wb") as out:
            out.write(b"x" * (item["mib"] << 20))
    return 1.0
"""


def test_scratch_total_is_capped_with_a_clear_error(disable: list[str]) -> None:
    items = [
        {"tag": "under", "files": 2, "mib": 1},  # 2 MiB of the 4: fine
        {"tag": "over", "files": 2, "mib": 2},  # 2 more files of 2 MiB: each under, total over
    ]
    under, over = run(WRITER, ["x", "x"], items, options(disable, scratch_mb=4))
    assert under.reward == 1.0, under.errors
    assert not under.errors.any()
    assert over.errors.python_grader_runtime_error
    details = over.errors.python_grader_runtime_error_details or ""
    assert "No space left on device" in details
    assert "scratch space is full" in details
    assert "may hold 4 MiB in all (`scratch_mb`)" in details


def test_worker_reports_how_its_scratch_is_bounded(disable: list[str]) -> None:
    from openrft.graders.sandbox import SandboxWorker

    worker = SandboxWorker(WRITER, SandboxLimits(disable=disable, scratch_mb=4), detect_layers())
    try:
        assert worker.start() is None
        assert worker.layers_applied["scratch"].endswith("of 4 MiB")
    finally:
        worker.stop()


def test_doctor_lists_the_runtime_against_openais_list() -> None:
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for dist, module in OPENAI_MODULES:
        version = installed_version(dist)
        assert version is not None, f"{dist} missing: pip install 'openrft[grader-runtime]'"
        line = next(line for line in result.stdout.splitlines() if f"│ {dist} " in line)
        assert module in line, line
        assert version in line, line
        assert "yes" in line, line
    assert f"grader runtime: {len(OPENAI_MODULES)} of {len(OPENAI_MODULES)} OpenAI modules" in (
        result.stdout
    )
