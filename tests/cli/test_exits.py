"""One exit code per kind of error, the same from every command (`cli/exits.py`)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import openrft
from openrft.cli import app
from openrft.cli.client import ApiCallError
from openrft.cli.exits import (
    EXIT_API,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_GRADING,
    EXIT_INVALID,
    EXIT_PAUSED,
    EXIT_UNAVAILABLE,
    exit_code,
)
from openrft.errors import (
    ConfigError,
    DatasetError,
    FormulaError,
    GradingError,
    MissingResourceError,
    OpenRFTError,
    SandboxError,
    SpecError,
    TemplateError,
)

SRC = Path(openrft.__file__).parent
runner = CliRunner()


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Name):
        return base.id
    return base.attr if isinstance(base, ast.Attribute) else ""


def modules_defining_errors() -> list[str]:
    """Every module with a class whose base is named `…Error`, found by reading the source (so
    nothing is imported that a library user would not import)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
        if any(_base_name(b).endswith("Error") for c in classes for b in c.bases):
            parts = path.relative_to(SRC.parent).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def _subclasses(kind: type[OpenRFTError]) -> set[type[OpenRFTError]]:
    found = set(kind.__subclasses__())
    return found.union(*(_subclasses(k) for k in list(found)))


def test_every_openrft_error_has_an_exit_code() -> None:
    modules = modules_defining_errors()
    assert {"openrft.errors", "openrft.api_errors"} <= set(modules)
    for name in modules:
        importlib.import_module(name)
    kinds = _subclasses(OpenRFTError)
    assert len(kinds) > 10
    for kind in [*kinds, ApiCallError]:
        assert exit_code(kind.__new__(kind)) is not None, f"{kind.__name__} has no exit code"


def test_each_kind_of_error_has_its_own_code() -> None:
    caller = {SpecError, ConfigError, DatasetError, TemplateError, FormulaError}
    assert {EXIT_CODES[k] for k in caller} == {EXIT_INVALID}
    assert EXIT_CODES[MissingResourceError] == EXIT_CODES[SandboxError] == EXIT_UNAVAILABLE
    assert EXIT_CODES[GradingError] == EXIT_GRADING
    assert EXIT_CODES[ApiCallError] == EXIT_API
    codes = [0, EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_GRADING, EXIT_API, EXIT_PAUSED]
    assert len(set(codes)) == len(codes)


def test_missing_resource_exits_the_same_from_two_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty-model").mkdir()
    (tmp_path / "not-wordnet").mkdir()
    (tmp_path / "not-wordnet" / "README").write_text("hello")
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    no_tokenizer = runner.invoke(
        app, ["data", "validate", str(data), "--model", str(tmp_path / "empty-model")]
    )
    no_wordnet = runner.invoke(
        app,
        ["setup", "wordnet", "--source", str(tmp_path / "not-wordnet"), "--data-dir", "x"],
    )
    assert no_tokenizer.exit_code == no_wordnet.exit_code == EXIT_UNAVAILABLE
    assert "error: cannot load the tokenizer of" in no_tokenizer.stderr
    assert "error: " in no_wordnet.stderr
    assert "is not a WordNet dict folder" in no_wordnet.stderr


def test_a_refused_sandbox_is_unavailable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise SandboxError("refusing to run python grader code: missing everything")

    # `openrft.cli.doctor` the attribute is the command; the module is in sys.modules
    monkeypatch.setattr(sys.modules["openrft.cli.doctor"], "check_policy", refuse)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "untrusted python graders: refused" in result.stdout
    assert "error: refusing to run python grader code: missing everything" in result.stderr


def test_an_unreachable_api_is_an_api_error() -> None:
    result = runner.invoke(app, ["jobs", "list", "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == EXIT_API
    assert "error: cannot reach http://127.0.0.1:9/v1" in result.stderr


def test_problems_print_one_per_line_unwrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("a-long-directory-name-" * 4)
    deep.mkdir()
    bad = deep / "bad.json"
    bad.write_text('{"type": "string_check", "name": "x"}')
    result = runner.invoke(app, ["graders", "validate", str(bad)])
    assert result.exit_code == EXIT_INVALID
    head, *problems = result.stderr.splitlines()
    assert head.startswith("error: ")
    assert problems
    assert all(line.startswith("  ") for line in problems)
    assert any("required key 'input' is missing" in line for line in problems)
