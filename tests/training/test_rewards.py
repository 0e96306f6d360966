"""Grader trees as TRL reward functions."""

import asyncio
import inspect
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from openrft.graders import load_grader
from openrft.training.rewards import (
    ITEM_COLUMN,
    GraderReward,
    completion_text,
    reasoning_tokens,
    reward_functions,
    reward_weights,
)

MULTI = {
    "type": "multi",
    "name": "total",
    "calculate_output": "0.25 * exact + 0.75 * has",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        },
        "has": {
            "type": "string_check",
            "name": "has",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "like",
        },
    },
}


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def items(*answers: str) -> list[str]:
    return [json.dumps({"answer": a}) for a in answers]


def test_one_function_per_top_level_grader_plus_the_combined_reward() -> None:
    funcs = reward_functions(load_grader(MULTI))
    assert [f.__name__ for f in funcs] == ["total", "total/exact", "total/has"]
    assert reward_weights(funcs) == [1.0, 0.0, 0.0]
    completions = [chat("7"), chat("it is 7"), chat("8")]
    kwargs: dict[str, Any] = {ITEM_COLUMN: items("7", "7", "7")}
    assert funcs[0](completions=completions, **kwargs) == [1.0, 0.75, 0.0]
    assert funcs[1](completions=completions, **kwargs) == [1.0, 0.0, 0.0]
    assert funcs[2](completions=completions, **kwargs) == [1.0, 1.0, 0.0]


def test_a_batch_is_graded_once_for_all_functions() -> None:
    shared = GraderReward(load_grader(MULTI))
    funcs = reward_functions(shared)
    completions = [chat("7"), chat("9")]
    for func in funcs:
        func(completions=completions, **{ITEM_COLUMN: items("7", "7")})
    assert shared.stats.samples == 2


def test_plain_trl_columns_become_the_item() -> None:
    reward = GraderReward(MULTI)  # a dict spec works too: the BaseReward pattern for TRL users
    assert reward(completions=["7", "x"], answer=["7", "7"]) == [1.0, 0.0]


def test_error_flags_are_logged_as_metrics() -> None:
    spec = {
        "type": "string_check",
        "name": "s",
        "input": "{{ item.missing }}",
        "reference": "x",
        "operation": "eq",
    }
    logged: dict[str, float] = {}
    reward = GraderReward(spec)
    rewards = reward(completions=["a", "b"], answer=["1", "2"], log_metric=logged.__setitem__)
    assert rewards == [0.0, 0.0]
    assert logged == {"errors/invalid_variable_error": 1.0}
    assert reward.stats.failed == 2


def test_response_format_mismatch_is_a_sample_parse_error() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    spec = {
        "type": "string_check",
        "name": "s",
        "input": "{{ sample.output_text }}",
        "reference": "x",
        "operation": "ne",
    }
    reward = GraderReward(spec, response_format=schema)
    results = reward.grade(['{"n": 3}', '{"n": "three"}', "plain"], [{}, {}, {}])
    assert [r.reward for r in results] == [1.0, 0.0, 0.0]
    assert [r.errors.sample_parse_error for r in results] == [False, True, True]


class _Scorer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        score = 1.0 if body["sample"]["output_text"] == "good" else 0.0
        payload = json.dumps({"score": score}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scorer_url() -> Any:
    server = HTTPServer(("127.0.0.1", 0), _Scorer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/grade"
    server.shutdown()
    server.server_close()


def test_io_bound_graders_get_async_reward_functions(scorer_url: str) -> None:
    spec = {"type": "endpoint", "name": "judge", "url": scorer_url}
    [func] = reward_functions(load_grader(spec))
    assert inspect.iscoroutinefunction(func)
    rewards = asyncio.run(
        func(completions=[chat("good"), chat("bad")], **{ITEM_COLUMN: items("", "")})
    )
    assert rewards == [1.0, 0.0]


def test_completion_text_reads_strings_and_messages() -> None:
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"


def test_reasoning_tokens_are_the_think_share_of_each_completion() -> None:
    texts = ["<think>abcdef</think>x", "no reasoning here", ""]
    ids = [[0] * 10, [0] * 4, []]
    share = len("abcdef") / len(texts[0])
    assert reasoning_tokens(texts, ids) == pytest.approx(10 * share)
    assert reasoning_tokens(texts, None) == 0.0
