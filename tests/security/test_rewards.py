"""Absurd rewards from user code are the sample's error flag, never a crash: a python grader
returning 1e308 (whose sum overflows a step's statistics), an endpoint answering 1e308 or a
400-digit integer, a formula whose value is astronomically large; and the training-side reward
function over such a batch."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from openrft.graders import GradeContext, grade_batch, load_grader
from openrft.graders.result import MAX_ABS_REWARD
from openrft.graders.sandbox import SandboxLimits, detect_layers
from openrft.training.rewards import GraderReward

_layers = detect_layers()
needs_sandbox = pytest.mark.skipif(
    bool(_layers.missing_requirements(SandboxLimits())),
    reason=f"the sandbox refuses untrusted code here ({_layers.reasons})",
)

HUGE = "def grade(sample, item):\n    return 1e308 if sample['output_text'] == 'big' else 0.5\n"


@needs_sandbox
def test_a_python_grader_returning_1e308_is_flagged() -> None:
    spec = load_grader({"type": "python", "name": "huge", "source": HUGE})
    results = grade_batch(spec, ["big", "fine", "big"], [{}] * 3)
    assert results.rewards == [0.0, 0.5, 0.0]
    flagged = results[0]
    assert flagged.errors.any()
    assert "outside the allowed range" in (flagged.errors.python_grader_runtime_error_details or "")
    assert not results[1].errors.any()


@needs_sandbox
def test_training_rewards_over_huge_scores_stay_finite() -> None:
    """The reward function TRL calls: before, `fmean` of [1e308, 1e308, …] raised OverflowError."""
    reward = GraderReward({"type": "python", "name": "huge", "source": HUGE})
    results = reward.grade(["big"] * 8, [{}] * 8)
    assert all(math.isfinite(r) for r in results.rewards)
    assert math.isfinite(math.fsum(results.rewards))


class _Answers(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = self.server.answer  # type: ignore[attr-defined]
        body = answer.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "answer", ['{"score": 1e308}', '{"score": ' + "9" * 400 + "}", "1e300", '{"score": -2e6}']
)
def test_endpoint_scores_out_of_range_are_other_errors(
    endpoint: ThreadingHTTPServer, answer: str
) -> None:
    endpoint.answer = answer  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/grade"
    spec = load_grader({"type": "endpoint", "name": "remote", "url": url})
    result = grade_batch(spec, ["x"], [{}], GradeContext(options={"endpoint_backoff": 0.01}))[0]
    assert result.reward == 0.0
    assert result.errors.other_error
    assert "finite number within" in (result.errors.other_error_details or "")


def test_endpoint_scores_at_the_bound_are_kept(endpoint: ThreadingHTTPServer) -> None:
    endpoint.answer = json.dumps({"score": -MAX_ABS_REWARD})  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/grade"
    spec = load_grader({"type": "endpoint", "name": "remote", "url": url})
    assert grade_batch(spec, ["x"], [{}]).rewards == [-MAX_ABS_REWARD]


def test_a_formula_with_an_astronomic_value_is_a_formula_error() -> None:
    spec = load_grader(
        {
            "type": "multi",
            "name": "m",
            "graders": {
                "a": {
                    "type": "string_check",
                    "name": "a",
                    "operation": "eq",
                    "input": "{{ sample.output_text }}",
                    "reference": "x",
                }
            },
            "calculate_output": "exp(700) * (a + 1)",
        }
    )
    result = grade_batch(spec, ["x"], [{}])[0]
    assert result.reward == 0.0
    assert result.errors.formula_parse_error or result.errors.other_error
