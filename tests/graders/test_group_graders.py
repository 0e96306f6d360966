"""Group graders: python `grade_group` in the real sandbox, and a `score_model` judge that ranks
or scores a whole group, against a real HTTP server on 127.0.0.1 standing in for the LLM."""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openrft.cli import app
from openrft.errors import SpecError
from openrft.graders import GradeContext, grade_batch, is_group_wise, load_grader

LONGEST = """
def grade_group(samples, item):
    lengths = [len(s["output_text"]) for s in samples]
    return [1.0 if n == max(lengths) else 0.0 for n in lengths]
"""


def python(source: str, name: str = "group") -> Any:
    return load_grader({"type": "python", "name": name, "source": source})


def errors_of(data: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_grader(data)
    return [f"{p.where}: {p.message}" for p in caught.value.problems]


# --- python grade_group ----------------------------------------------------------------------


def test_grade_group_scores_each_group_against_itself() -> None:
    grader = python(LONGEST)
    texts = ["a", "abc", "ab", "xyz", "x"]
    results = grade_batch(grader, texts, [{"q": 1}] * 3 + [{"q": 2}] * 2, groups=[3, 2])
    assert results.rewards == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert not any(r.errors.any() for r in results)
    assert is_group_wise(grader)


def test_grade_group_runs_once_per_group_and_sees_the_item() -> None:
    # A call counter: every sample of one group gets the same call number, so one call per group.
    source = """
calls = [0]
def grade_group(samples, item):
    calls[0] += 1
    return [calls[0] + item["bonus"]] * len(samples)
"""
    results = grade_batch(python(source, "counter"), list("abcdef"), [{"bonus": 0.5}] * 6)
    singles = results.rewards  # no groups given: six groups of one, six calls
    assert [b - a for a, b in itertools.pairwise(singles)] == [1.0] * 5
    grouped = grade_batch(
        python(source, "counter"), list("abcdef"), [{"bonus": 0.5}] * 6, groups=[4, 2]
    )
    first, second = grouped.rewards[:4], grouped.rewards[4:]
    assert len(set(first)) == 1
    assert len(set(second)) == 1
    assert second[0] == first[0] + 1
    assert first[0] % 1 == 0.5  # the item reached grade_group


def test_a_wrong_length_flags_every_sample_of_the_group_with_a_clear_message() -> None:
    grader = python("def grade_group(samples, item):\n    return [1.0]\n", "short")
    results = grade_batch(grader, ["a", "b", "c"], [{}] * 3, groups=[2, 1])
    assert results.rewards == [0.0, 0.0, 1.0]
    for result in results[:2]:
        assert result.errors.flags() == ["python_grader_invalid_output_error"]
        assert result.errors.python_grader_runtime_error_details == (
            "grade_group returned 1 scores for a group of 2 samples; return one float per "
            "sample, in order"
        )
    assert not results[2].errors.any()


def test_a_non_number_flags_only_its_own_sample() -> None:
    grader = python("def grade_group(samples, item):\n    return [0.5, 'high', None]\n", "bad")
    results = grade_batch(grader, ["a", "b", "c"], [{}] * 3, groups=[3])
    assert results.rewards == [0.5, 0.0, 0.0]
    assert not results[0].errors.any()
    details = [r.errors.python_grader_runtime_error_details or "" for r in results[1:]]
    assert "'high' (str) for sample 1" in details[0]
    assert "'None' (NoneType) for sample 2" in details[1]
    assert all(r.errors.python_grader_invalid_output_error for r in results[1:])


def test_a_non_list_flags_the_group() -> None:
    grader = python("def grade_group(samples, item):\n    return 1.0\n", "scalar")
    results = grade_batch(grader, ["a", "b"], [{}] * 2, groups=[2])
    assert [r.errors.python_grader_runtime_error_details for r in results] == [
        "grade_group returned float; return a list of 2 floats, one per sample, in order"
    ] * 2


def test_a_raising_grade_group_shows_only_the_users_frames() -> None:
    source = "def grade_group(samples, item):\n    return [1 / 0 for s in samples]\n"
    results = grade_batch(python(source, "boom"), ["a", "b"], [{}] * 2, groups=[2])
    for result in results:
        assert result.errors.python_grader_runtime_error
        details = result.errors.python_grader_runtime_error_details or ""
        assert "ZeroDivisionError" in details
        assert "line 2, in grade_group" in details
        assert "_openrft" not in details
        assert re.findall(r"line (\d+)", details) == ["2", "2"]  # grade_group and its listcomp


def test_with_grade_too_a_group_of_one_is_graded_by_grade() -> None:
    source = LONGEST + "\ndef grade(sample, item):\n    return 0.25\n"
    results = grade_batch(python(source, "both"), ["solo", "ab", "abc"], [{}] * 3, groups=[1, 2])
    assert results.rewards == [0.25, 0.0, 1.0]
    alone = grade_batch(python(LONGEST, "alone"), ["solo"], [{}])  # no grade: grade_group([s])
    assert alone.rewards == [1.0]


def test_source_with_neither_function_is_refused_with_its_json_path() -> None:
    problems = errors_of(
        {
            "type": "multi",
            "calculate_output": "g",
            "graders": {"g": {"type": "python", "source": "def score(s, i):\n    return 1\n"}},
        }
    )
    assert len(problems) == 1
    assert problems[0].startswith("$.graders.g.source")
    assert "`def grade(sample, item) -> float`" in problems[0]
    assert "`def grade_group(samples, item) -> list[float]`" in problems[0]


def test_grade_group_needs_two_arguments() -> None:
    problems = errors_of(
        {"type": "python", "source": "x = 1\ndef grade_group(samples):\n  return []"}
    )
    assert problems == [
        "$.source: `grade_group` must take two arguments: def grade_group(samples, item) (line 2)"
    ]


def test_multi_combines_a_group_grader_per_sample() -> None:
    grader = load_grader(
        {
            "type": "multi",
            "name": "total",
            "calculate_output": "0.5 * longest + 0.5 * has_x",
            "graders": {
                "longest": {"type": "python", "source": LONGEST},
                "has_x": {
                    "type": "string_check",
                    "input": "{{ sample.output_text }}",
                    "reference": "x",
                    "operation": "like",
                },
            },
        }
    )
    assert is_group_wise(grader)
    results = grade_batch(grader, ["x", "abcd", "xy", "b"], [{}] * 4, groups=[2, 2])
    assert results.rewards == [0.5, 0.5, 1.0, 0.0]
    assert results[0].sub_rewards == {"longest": 0.0, "has_x": 1.0}


def test_an_item_that_is_not_json_fails_only_its_group() -> None:
    items = [{"a": 1}, {"a": 1}, {"a": {1, 2}}, {"a": {1, 2}}]
    results = grade_batch(python(LONGEST), ["a", "bb", "c", "dd"], items, groups=[2, 2])
    assert results.rewards == [0.0, 1.0, 0.0, 0.0]
    assert [r.errors.other_error for r in results] == [False, False, True, True]
    assert "not JSON-serializable" in (results[2].errors.other_error_details or "")


def test_groups_must_cover_the_batch() -> None:
    with pytest.raises(ValueError, match="positive sizes summing to the 3 samples"):
        grade_batch(python(LONGEST), ["a", "b", "c"], [{}] * 3, groups=[2, 2])


def test_calling_a_grader_groups_completions_by_prompt() -> None:
    grader = python(LONGEST, "longest")
    prompts = ["p1", "p1", "p1", "p2", "p2"]
    completions = ["a", "abc", "ab", "xy", "x"]
    assert grader(prompts, completions, answer=["1"] * 5) == [0.0, 1.0, 0.0, 1.0, 0.0]
    # a group_size of 2 cuts p1's run of three into 2 + 1 (a prompt sampled twice in a row)
    fn = grader.as_fn(group_size=2)
    assert fn(prompts, completions, answer=["1"] * 5) == [0.0, 1.0, 1.0, 1.0, 0.0]


# --- score_model with `group` ----------------------------------------------------------------

_LISTED = re.compile(r"<completion (\d+)>\n(.*?)\n</completion \1>", re.DOTALL)


class _Judge(BaseHTTPRequestHandler):
    """A stand-in LLM: ranks (or scores) the listed completions by length, longest best; a
    completion saying `refuse` or `garbage` makes it refuse or answer nonsense."""

    requests: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        listed = [text for _, text in _LISTED.findall(body["messages"][-1]["content"])]
        rank = "Rank these" in body["messages"][-1]["content"]
        order = sorted(range(len(listed)), key=lambda k: -len(listed[k]))
        result: list[Any] = [k + 1 for k in order] if rank else [len(text) / 10 for text in listed]
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if "refuse" in listed:
            message["refusal"] = "I will not grade this."
        elif "garbage" in listed:
            message["content"] = json.dumps({"steps": [], "result": result[:-1]})
        else:
            message["content"] = json.dumps({"steps": [{"description": "d"}], "result": result})
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        payload = {"model": "stand-in", "choices": [{"message": message}], "usage": usage}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def judge() -> Iterator[tuple[GradeContext, list[dict[str, Any]]]]:
    handler = type("Judge", (_Judge,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield GradeContext(judges={"judge": {"base_url": base, "max_retries": 0}}), handler.requests
    server.shutdown()
    server.server_close()


def judge_spec(mode: str, **extra: Any) -> Any:
    return load_grader(
        {
            "type": "score_model",
            "name": "ranked",
            "model": "judge",
            "group": mode,
            "input": [{"role": "system", "content": "Rank answers to {{ item.question }}."}],
            **extra,
        }
    )


def test_a_ranking_judge_scores_each_group_from_best_to_worst(judge: Any) -> None:
    context, requests = judge
    items = [{"question": "q1"}] * 3 + [{"question": "q2"}] * 2
    texts = ["bb", "a", "cccc", "x", "yyy"]
    results = grade_batch(judge_spec("rank", range=[0, 4]), texts, items, context, [3, 2])
    assert results.rewards == [2.0, 0.0, 4.0, 0.0, 4.0]
    assert [r.metadata.scores["result"] for r in results] == [2, 3, 1, 2, 1]
    assert [r.metadata.scores["group_size"] for r in results] == [3, 3, 3, 2, 2]
    assert len(requests) == 2  # one call per group
    first = requests[0] if "q1" in requests[0]["messages"][0]["content"] else requests[1]
    assert first["messages"][0] == {"role": "system", "content": "Rank answers to q1."}
    assert "<completion 3>\ncccc\n</completion 3>" in first["messages"][1]["content"]
    schema = first["response_format"]["json_schema"]["schema"]["properties"]["result"]
    assert schema == {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 3},
        "minItems": 3,
        "maxItems": 3,
    }
    # the call's usage is counted once, on the group's first sample
    assert [r.metadata.token_usage for r in results] == [15, None, None, 15, None]


def test_a_scoring_judge_compares_the_group_and_clamps_to_range(judge: Any) -> None:
    context, _ = judge
    texts = ["abcdefghijkl", "abc"]
    results = grade_batch(
        judge_spec("score", pass_threshold=0.5), texts, [{"question": "q"}] * 2, context, [2]
    )
    assert results.rewards == [1.0, 0.3]
    assert [r.metadata.scores["passed"] for r in results] == [True, False]
    assert results[0].metadata.scores["result"] == 1.2


def test_a_group_of_one_is_asked_for_a_score(judge: Any) -> None:
    context, requests = judge
    results = grade_batch(judge_spec("rank"), ["abcd"], [{"question": "q"}], context)
    assert results.rewards == [0.4]
    assert "Score this completion from 0 to 1" in requests[0]["messages"][-1]["content"]


def test_an_unusable_answer_flags_the_whole_group(judge: Any) -> None:
    context, _ = judge
    items = [{"question": "q"}] * 4
    texts = ["garbage", "b", "refuse", "d"]
    results = grade_batch(judge_spec("rank"), texts, items, context, [2, 2])
    assert results.rewards == [0.0] * 4
    assert [r.errors.flags() for r in results] == [["model_grader_parse_error"]] * 2 + [
        ["model_grader_refusal_error"]
    ] * 2
    assert (
        results[0]
        .metadata.scores["problem"]
        .startswith(
            "expected `result` to rank the 2 completions: each of 1…2 once, best first, got [1]"
        )
    )


def test_a_missing_item_variable_flags_the_group(judge: Any) -> None:
    context, requests = judge
    results = grade_batch(judge_spec("rank"), ["a", "b"], [{}, {}], context, [2])
    assert [r.errors.flags() for r in results] == [["invalid_variable_error"]] * 2
    assert requests == []


def test_a_group_judge_may_not_template_a_sample() -> None:
    problems = errors_of(
        {
            "type": "score_model",
            "model": "judge",
            "group": "rank",
            "input": [
                {"role": "system", "content": "Rank."},
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "{{ sample.output_text }}"}],
                },
            ],
        }
    )
    assert len(problems) == 1
    assert problems[0].startswith("$: ")
    assert "input[1] uses {{ sample.… }}" in problems[0]
    assert "drop `group`" in problems[0]


def test_group_must_be_score_or_rank() -> None:
    problems = errors_of(
        {
            "type": "score_model",
            "model": "j",
            "group": "pairwise",
            "input": [{"role": "user", "content": "x"}],
        }
    )
    assert problems[0].startswith("$.group")


# --- the shipped example, from the CLI -------------------------------------------------------

EXAMPLE = Path(__file__).parents[2] / "examples" / "graders" / "concise_correct.yaml"


def test_cli_grades_repeated_samples_as_one_group() -> None:
    texts = ["<answer>6</answer>", "So: <answer>6</answer>", "<answer>7</answer>"]
    args = ["graders", "run", str(EXAMPLE), "--item", '{"reference_answer": "6"}']
    result = CliRunner().invoke(app, [*args, *(a for t in texts for a in ("--sample", t))])
    assert result.exit_code == 0, result.output
    rewards = [r["reward"] for r in json.loads(result.stdout)]
    assert rewards == pytest.approx([1.0, 0.8 + 0.2 * 18 / 22, 0.0])
    alone = CliRunner().invoke(app, [*args, "--sample", texts[1]])  # a group of one
    assert json.loads(alone.stdout)["reward"] == 1.0
