"""The python grader end to end through the real sandbox: scores, failures as data, worker reuse
and isolation between graders/owners, the refusal policy, the error-rate check, the CLI, and the
code-execution example."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from openrft.errors import ConfigError, GradingError, SandboxError
from openrft.graders import GradeContext, GradeResult, Sample, grade_batch, load_grader
from openrft.graders.python_grader import check_error_rate
from openrft.graders.sandbox import INSECURE_ENV, POOL, SandboxLimits, detect_layers

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "graders"

_layers = detect_layers()
if _layers.missing_requirements(SandboxLimits()):
    pytest.skip(
        f"the sandbox refuses untrusted code here: {_layers.missing_requirements(SandboxLimits())}"
        f" ({_layers.reasons})",
        allow_module_level=True,
    )


def run(
    source: str,
    samples: list[str] | None = None,
    items: list[dict[str, Any]] | None = None,
    owner: str | None = None,
    name: str = "g",
    **options: Any,
) -> list[GradeResult]:
    spec = load_grader({"type": "python", "name": name, "source": source})
    items = items if items is not None else [{}] * len(samples or ["x"])
    samples = samples if samples is not None else ["x"] * len(items)
    context = GradeContext(owner=owner or uuid.uuid4().hex, options={"python_grader": options})
    return grade_batch(spec, [Sample.from_text(s) for s in samples], items, context)


def test_scores_a_batch_with_sample_and_item_as_dicts() -> None:
    source = (
        "def grade(sample, item):\n"
        "    assert set(sample) >= {'output_text', 'output_tools', 'output_answer'}\n"
        "    if 'output_json' in sample:\n"
        "        return float(sample['output_json']['n'] == item['ref']['n'])\n"
        "    return float(sample['output_answer'] == item['ref']['answer'])\n"
    )
    samples = ["<answer>4</answer>", "<answer>5</answer>", '{"n": 3}']
    items = [{"ref": {"answer": "4"}}, {"ref": {"answer": "4"}}, {"ref": {"n": 3}}]
    results = run(source, samples, items)
    assert [r.reward for r in results] == [1.0, 0.0, 1.0]
    assert all(not r.errors.any() and r.metadata.type == "python" for r in results)


def test_allowed_libraries_import_inside_the_sandbox() -> None:
    source = (
        "import numpy, rapidfuzz, yaml, pydantic, sqlparse, jsonschema, deepdiff\n"
        "from rapidfuzz import fuzz\n"
        "def grade(sample, item):\n"
        "    return fuzz.ratio(sample['output_text'], item['ref']) / 100 + numpy.float64(0)\n"
    )
    assert run(source, ["kitten"], [{"ref": "kitten"}])[0].reward == 1.0


def test_an_exception_is_a_runtime_error_with_the_users_traceback() -> None:
    source = "def helper(x):\n    return x['missing']\n\n"
    source += "def grade(sample, item):\n    return helper(item)\n"
    (result,) = run(source)
    assert result.reward == 0.0
    assert result.errors.flags() == ["python_grader_runtime_error"]
    details = str(result.errors.python_grader_runtime_error_details)
    assert 'File "grader.py", line 2, in helper' in details
    assert "KeyError: 'missing'" in details
    assert "sandbox/worker" not in details  # our frames are trimmed away


def test_printed_output_comes_with_the_traceback() -> None:
    (result,) = run(
        "def grade(sample, item):\n    print('debug', 42)\n    raise ValueError('no')\n"
    )
    assert "debug 42" in str(result.errors.python_grader_runtime_error_details)


@pytest.mark.parametrize(
    "value", ["'1.0'", "None", "[1.0]", "float('nan')", "float('inf')", "-float('inf')"]
)
def test_non_float_or_non_finite_is_invalid(value: str) -> None:
    (result,) = run(f"def grade(sample, item):\n    return {value}\n")
    assert result.reward == 0.0
    assert result.errors.flags() == ["python_grader_invalid_output_error"]
    assert "grade() returned" in str(result.errors.python_grader_runtime_error_details)


@pytest.mark.parametrize("value", ["1", "True", "__import__('numpy').float32(0.25)"])
def test_numbers_of_any_real_type_are_scores(value: str) -> None:
    (result,) = run(f"def grade(sample, item):\n    return {value}\n")
    assert not result.errors.any()
    assert result.reward in (1.0, 0.25)


def test_timeout_is_flagged_and_the_batch_goes_on() -> None:
    source = "import time\ndef grade(sample, item):\n    time.sleep(item['s'])\n    return 1.0\n"
    results = run(source, items=[{"s": 0}, {"s": 30}, {"s": 0}], timeout_seconds=1)
    assert [r.reward for r in results] == [1.0, 0.0, 1.0]
    assert results[1].errors.flags() == ["python_grader_timeout_error"]


def test_a_grader_that_hangs_on_every_sample_does_not_hold_the_batch() -> None:
    source = "import time\ndef grade(sample, item):\n    time.sleep(item['s'])\n    return 1.0\n"
    delays = [0, 30, 0, 30, 30, 0, 0, 0]  # one timeout, a success, then two in a row
    items = [{"s": s} for s in delays]
    results = run(source, items=items, timeout_seconds=0.5, max_consecutive_timeouts=2)
    assert [r.reward for r in results] == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert {tuple(r.errors.flags()) for r in results[3:]} == {("python_grader_timeout_error",)}
    details = [r.errors.python_grader_runtime_error_details or "" for r in results]
    assert ["not run" in d for d in details] == [False] * 5 + [True] * 3


def test_memory_is_flagged() -> None:
    source = "def grade(sample, item):\n    return len(bytearray(item['mb'] << 20)) and 1.0\n"
    results = run(source, items=[{"mb": 1024}, {"mb": 1}], memory_mb=256)
    assert results[0].errors.flags() == ["python_grader_memory_error"]
    assert results[1].reward == 1.0


def test_a_module_that_fails_to_load_fails_every_sample() -> None:
    results = run(
        "raise ImportError('nope')\ndef grade(sample, item):\n    return 1.0\n", ["a", "b"]
    )
    assert all(r.errors.python_grader_runtime_error for r in results)
    assert "ImportError: nope" in str(results[1].errors.python_grader_runtime_error_details)


def test_scratch_is_writable_and_bounded() -> None:
    source = (
        "import os, tempfile\n"
        "def grade(sample, item):\n"
        "    with open(os.path.join(tempfile.gettempdir(), 'f'), 'wb') as f:\n"
        "        f.write(b'x' * (item['mb'] << 20))\n"
        "    return 1.0\n"
    )
    results = run(source, items=[{"mb": 1}, {"mb": 64}], scratch_mb=8)
    assert results[0].reward == 1.0
    assert results[1].errors.python_grader_runtime_error  # no space left (or file too large)


def test_pass_threshold_is_reported() -> None:
    spec = load_grader(
        {
            "type": "python",
            "name": "p",
            "source": "def grade(s, i):\n    return i['v']\n",
            "pass_threshold": 0.5,
        }
    )
    results = grade_batch(spec, ["a", "b"], [{"v": 0.7}, {"v": 0.2}])
    assert [r.metadata.scores["passed"] for r in results] == [True, False]


STATEFUL = "import random\nTOKEN = random.random()\ndef grade(sample, item):\n    return TOKEN\n"


def test_one_worker_serves_a_grader_across_calls_but_never_two_owners_or_graders() -> None:
    owner = uuid.uuid4().hex
    first = run(STATEFUL, ["a", "b"], owner=owner)
    again = run(STATEFUL, ["c"], owner=owner)
    other_owner = run(STATEFUL, ["c"], owner=owner + "-other")
    other_grader = run(STATEFUL, ["c"], owner=owner, name="another")
    assert first[0].reward == first[1].reward == again[0].reward  # the same warm worker
    assert other_owner[0].reward != first[0].reward
    assert other_grader[0].reward != first[0].reward


def test_a_lost_worker_is_replaced_mid_batch() -> None:
    source = (
        "import os, random\nTOKEN = random.random()\n"
        "def grade(sample, item):\n"
        "    if item.get('die'):\n"
        "        os._exit(1)\n"
        "    return TOKEN\n"
    )
    results = run(source, items=[{}, {"die": True}, {}])
    assert "died" in str(results[1].errors.python_grader_runtime_error_details)
    assert results[0].reward != results[2].reward  # a fresh worker graded the last sample


def test_invalid_options_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="timeout_seconds"):
        run("def grade(s, i):\n    return 1.0\n", timeout_seconds=-1)


def test_refuses_without_filesystem_or_network_layer() -> None:
    with pytest.raises(SandboxError, match="filesystem layer"):
        run("def grade(s, i):\n    return 1.0\n", disable=["bubblewrap", "landlock"])
    with pytest.raises(SandboxError, match="network layer"):
        run("def grade(s, i):\n    return 1.0\n", disable=["bubblewrap", "seccomp"])


def test_insecure_override_runs_and_logs_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="openrft.graders.sandbox"):
        (result,) = run(
            "def grade(s, i):\n    return 1.0\n",
            disable=["bubblewrap", "landlock", "seccomp"],
            allow_insecure=True,
        )
    assert result.reward == 1.0
    assert "RUNNING UNTRUSTED PYTHON GRADER CODE WITHOUT" in caplog.text


def failing(n: int, details: str = "Traceback: boom") -> list[GradeResult]:
    results = []
    for _ in range(n):
        result = GradeResult.failed("g", "python", "python_grader_runtime_error", details)
        results.append(result)
    return results


def ok(n: int) -> list[GradeResult]:
    return [GradeResult.of("g", "python", 1.0) for _ in range(n)]


def test_error_rate_below_threshold_passes() -> None:
    check_error_rate(ok(95) + failing(5))
    check_error_rate(ok(3) + failing(1))  # 25 %, but one failure in a small batch is noise
    check_error_rate(ok(10))
    check_error_rate(failing(5), total=100)  # only the failures, as training passes them


def test_error_rate_above_threshold_fails_with_sample_tracebacks() -> None:
    with pytest.raises(GradingError, match=r"30 of 100 samples") as caught:
        check_error_rate(ok(70) + failing(25, "KeyError: 'a'") + failing(5, "ValueError: b"))
    assert "KeyError: 'a'" in str(caught.value)
    assert "ValueError: b" in str(caught.value)
    with pytest.raises(GradingError):
        check_error_rate(failing(2))  # every sample failed
    with pytest.raises(GradingError, match=r"30 of 100 samples"):
        check_error_rate(failing(30), total=100)


def test_openrft_graders_run_works_for_python_graders(tmp_path: Path) -> None:
    spec = tmp_path / "g.yaml"
    spec.write_text(
        "type: python\nname: py\nsource: |\n  def grade(sample, item):\n"
        "      return float(sample['output_text'] == item['a'])\n"
    )
    cli = Path(sys.executable).with_name("openrft")  # the installed console script
    argv = [str(cli), "graders", "run", str(spec), "--sample", "42", "--item", '{"a": "42"}']
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reward"] == 1.0


def test_doctor_prints_the_layers_in_force(capsys: pytest.CaptureFixture[str]) -> None:
    from openrft.cli.doctor import doctor

    doctor()
    out = capsys.readouterr().out
    for layer in ("bubblewrap", "landlock", "seccomp", "cgroups", "rlimits", "uid"):
        assert layer in out
    assert "untrusted python graders: allowed" in out


def test_code_exec_example_gives_partial_credit_and_zero_for_shortcuts() -> None:
    from openrft.graders import load_grader_file

    spec = load_grader_file(EXAMPLES / "code_exec.yaml")
    rows = [json.loads(line) for line in (EXAMPLES / "code_exec.jsonl").read_text().splitlines()]
    items = [{k: v for k, v in row.items() if k != "messages"} for row in rows]
    cases = json.loads((EXAMPLES / "code_exec_completions.json").read_text())
    samples = [Sample.from_text(case["completion"]) for case in cases]
    results = grade_batch(spec, samples, [items[case["item"]] for case in cases])
    assert {c["label"]: r.reward for c, r in zip(cases, results, strict=True)} == {
        c["label"]: c["reward"] for c in cases
    }
    assert not any(r.errors.any() for r in results)
    labels = {c["label"] for c in cases}
    assert {"no-op shortcut", "reference-returning shortcut"} <= labels
    assert any(0 < c["reward"] < 1 for c in cases)  # partial credit is exercised


def test_the_no_op_shortcut_would_fool_a_naive_harness() -> None:
    """Why the example poisons the output buffer: with a stale (already correct) buffer, the
    no-op passes every test."""
    spec = json.loads(json.dumps(load_grader_file_dict(EXAMPLES / "code_exec.yaml")))
    naive = spec["source"].replace("lambda i: POISON", "lambda i: test['expected'][i]")
    assert naive != spec["source"]
    rows = [json.loads(line) for line in (EXAMPLES / "code_exec.jsonl").read_text().splitlines()]
    item = {k: v for k, v in rows[0].items() if k != "messages"}
    no_op = "```python\ndef scale_into(out, xs, k):\n    pass\n```"
    grader = load_grader({**spec, "source": naive})
    assert grade_batch(grader, [no_op], [item])[0].reward == 1.0
    assert grade_batch(load_grader(spec), [no_op], [item])[0].reward == 0.0


def load_grader_file_dict(path: Path) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_insecure_env_var_is_documented() -> None:
    assert INSECURE_ENV in (ROOT / "docs" / "sandbox.md").read_text()


@pytest.fixture(autouse=True, scope="module")
def _close_pool() -> Any:
    yield
    POOL.close()
