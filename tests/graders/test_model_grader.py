"""score_model / label_model against a real local judge: `openrft serve-model`'s scripted backend
served by uvicorn on 127.0.0.1, so every number below is exact and every call is real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from openrft.graders import GradeContext, grade_batch, load_grader
from openrft.graders.model_grader import parse_output
from openrft.inference.app import create_app
from openrft.inference.local import serve_in_thread
from openrft.inference.scripted import Script, ScriptedBackend

RULES: list[dict[str, Any]] = [
    {
        "match": r"answer: (\S+)",
        "reply": '{"steps": [{"description": "d", "conclusion": "c"}], "result": $1}',
    },
    {"match": r"label: (\w+)", "reply": '{"steps": [], "result": "$1"}'},
    {"match": "fenced", "reply": 'Here you go:\n```json\n{"steps": [], "result": 0.25}\n```'},
    {"match": "bare", "reply": "0.5"},
    {"match": "garbage", "reply": "I think it is rather good."},
    {"match": "refuse", "refusal": "I cannot grade this."},
    {"match": "flaky", "status": 429, "times": 2, "reply": '{"steps": [], "result": 1}'},
    {"match": "broken", "status": 500},
]
FAST_RETRIES = {"backoff": 0.01, "max_backoff": 0.05}


@contextmanager
def judge(
    rules: list[dict[str, Any]] = RULES, delay: float = 0.0, **settings: Any
) -> Iterator[tuple[GradeContext, ScriptedBackend]]:
    backend = ScriptedBackend(Script.model_validate({"rules": rules, "delay": delay}))
    with serve_in_thread(create_app(backend)) as url:
        config = {"base_url": f"{url}/v1", **FAST_RETRIES, **settings}
        yield GradeContext(judges={"judge-a": config}), backend


def score_spec(**extra: Any) -> Any:
    return load_grader(
        {
            "type": "score_model",
            "name": "quality",
            "model": "judge-a",
            "input": [
                {"role": "developer", "content": "Grade against {{ item.reference_answer }}."},
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "{{ sample.output_text }}"}],
                },
            ],
            **extra,
        }
    )


def label_spec() -> Any:
    return load_grader(
        {
            "type": "label_model",
            "name": "verdict",
            "model": "judge-a",
            "input": [{"role": "user", "content": "{{ sample.output_text }}"}],
            "labels": ["good", "bad"],
            "passing_labels": ["good"],
        }
    )


def run(spec: Any, texts: list[str], context: GradeContext) -> list[Any]:
    return grade_batch(spec, texts, [{"reference_answer": "42"}] * len(texts), context)


def test_score_is_clamped_to_range() -> None:
    texts = ["answer: 0.7", "answer: 7", "answer: -3"]
    with judge() as (context, _):
        default = run(score_spec(), texts, context)
        wide = run(score_spec(range=[0, 5], pass_threshold=4), texts, context)
    assert [r.reward for r in default] == [0.7, 1.0, 0.0]
    assert [r.reward for r in wide] == [0.7, 5.0, 0.0]
    assert wide[1].metadata.scores["result"] == 7.0
    assert [r.metadata.scores["passed"] for r in wide] == [False, True, False]
    assert default[0].metadata.scores["steps"] == [{"description": "d", "conclusion": "c"}]
    assert not any(r.errors.any() for r in default + wide)


def test_request_renders_templates_and_passes_sampling_params() -> None:
    params = {"temperature": 0.2, "seed": 3, "max_completions_tokens": 50, "top_p": 0.9}
    with judge() as (context, backend):
        run(score_spec(sampling_params=params), ["answer: 1"], context)
    body = backend.requests[0]
    assert body["messages"][0] == {"role": "system", "content": "Grade against 42."}
    assert body["messages"][1]["content"] == [{"type": "text", "text": "answer: 1"}]
    assert (body["temperature"], body["seed"], body["top_p"]) == (0.2, 3, 0.9)
    assert body["max_completion_tokens"] == 50
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["properties"]["result"] == {"type": "number"}
    assert schema["required"] == ["steps", "result"]


def test_token_usage_is_recorded_per_model() -> None:
    with judge() as (context, _):
        result = run(score_spec(), ["answer: 1"], context)[0]
    # Scripted usage counts words: "Grade against 42." + "answer: 1" = 5; the reply has 7.
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert result.model_grader_token_usage_per_model == {"judge-a": usage}
    assert result.metadata.token_usage == 12
    assert result.metadata.sampled_model_name == "scripted"


def test_label_model_pass_fail_and_unknown_label() -> None:
    with judge() as (context, backend):
        results = run(label_spec(), ["label: good", "label: BAD", "label: meh"], context)
    assert [r.reward for r in results] == [1.0, 0.0, 0.0]
    assert results[1].metadata.scores["label"] == "bad"
    assert results[2].errors.model_grader_parse_error
    assert backend.requests[0]["response_format"]["json_schema"]["schema"]["properties"][
        "result"
    ] == {
        "type": "string",
        "enum": ["good", "bad"],
    }


def test_lenient_parsing_and_parse_error() -> None:
    with judge() as (context, _):
        fenced, bare, garbage = run(score_spec(), ["fenced", "bare", "garbage"], context)
    assert (fenced.reward, bare.reward) == (0.25, 0.5)
    assert garbage.reward == 0.0
    assert garbage.errors.flags() == ["model_grader_parse_error"]
    assert garbage.metadata.scores["output"] == "I think it is rather good."
    assert garbage.model_grader_token_usage_per_model["judge-a"]["completion_tokens"] == 6


def test_refusal_sets_the_refusal_flag() -> None:
    with judge() as (context, _):
        result = run(score_spec(), ["please refuse"], context)[0]
    assert result.errors.flags() == ["model_grader_refusal_error"]
    assert result.metadata.scores["refusal"] == "I cannot grade this."


def test_429_is_retried_until_success() -> None:
    with judge() as (context, backend):
        result = run(score_spec(), ["flaky"], context)[0]
    assert result.reward == 1.0
    assert not result.errors.any()
    assert len(backend.requests) == 3


def test_persistent_500_is_a_server_error_after_retries() -> None:
    with judge(max_retries=2) as (context, backend):
        result = run(score_spec(), ["broken"], context)[0]
    assert result.errors.flags() == ["model_grader_server_error"]
    details = result.errors.model_grader_server_error_details or ""
    assert "HTTP 500" in details
    assert "3 attempt" in details
    assert len(backend.requests) == 3


def test_wrong_base_url_hints_at_v1() -> None:
    with judge() as (context, _):
        base = context.judges["judge-a"]["base_url"].removesuffix("/v1")
        context.judges["judge-a"]["base_url"] = base
        result = run(score_spec(), ["answer: 1"], context)[0]
    assert result.errors.model_grader_server_error
    assert "/v1" in (result.errors.model_grader_server_error_details or "")


def test_concurrency_bound_is_respected() -> None:
    with judge(delay=0.3, concurrency=3) as (context, backend):
        results = run(score_spec(), [f"answer: 0.{i}" for i in range(12)], context)
    assert [r.reward for r in results] == [float(f"0.{i}") for i in range(12)]
    assert backend.max_in_flight == 3


def test_unconfigured_judge_is_flagged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENRFT_JUDGES", "OPENRFT_JUDGE_BASE_URL", "OPENRFT_JUDGE_API_KEY_ENV"):
        monkeypatch.delenv(name, raising=False)
    results = run(score_spec(), ["answer: 1", "answer: 2"], GradeContext())
    assert [r.errors.flags() for r in results] == [["model_grader_server_error"]] * 2
    assert "OPENRFT_JUDGE_BASE_URL" in (results[0].errors.model_grader_server_error_details or "")


def test_judges_file_and_env_fallbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with judge() as (context, _):
        url = context.judges["judge-a"]["base_url"]
        path = tmp_path / "judges.yaml"
        path.write_text(json.dumps({"judges": {"*": {"base_url": url}}}))
        monkeypatch.setenv("OPENRFT_JUDGES", str(path))
        from_file = run(score_spec(), ["answer: 0.3"], GradeContext())[0]
        monkeypatch.delenv("OPENRFT_JUDGES")
        monkeypatch.setenv("OPENRFT_JUDGE_BASE_URL", url)
        from_env = run(score_spec(), ["answer: 0.4"], GradeContext())[0]
    assert (from_file.reward, from_env.reward) == (0.3, 0.4)


def test_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ScriptedBackend(Script.model_validate({"rules": RULES}))
    with serve_in_thread(create_app(backend, api_key="sekrit")) as url:
        config = {"base_url": f"{url}/v1", "api_key_env": "JUDGE_KEY", **FAST_RETRIES}
        context = GradeContext(judges={"judge-a": config})
        monkeypatch.delenv("JUDGE_KEY", raising=False)
        unset = run(score_spec(), ["answer: 1"], context)[0]
        monkeypatch.setenv("JUDGE_KEY", "wrong")
        wrong = run(score_spec(), ["answer: 1"], context)[0]
        monkeypatch.setenv("JUDGE_KEY", "sekrit")
        right = run(score_spec(), ["answer: 1"], context)[0]
    assert "JUDGE_KEY" in (unset.errors.model_grader_server_error_details or "")
    assert "HTTP 401" in (wrong.errors.model_grader_server_error_details or "")
    assert right.reward == 1.0


def test_missing_template_variable_is_flagged() -> None:
    with judge() as (context, _):
        result = grade_batch(score_spec(), ["answer: 1"], [{}], context)[0]
    assert result.errors.flags() == ["invalid_variable_error"]


def test_works_from_inside_a_running_event_loop() -> None:
    with judge() as (context, _):

        async def main() -> float:
            return run(score_spec(), ["answer: 0.9"], context)[0].reward

        assert asyncio.run(main()) == 0.9


def test_multi_grader_sums_judge_usage() -> None:
    spec = load_grader(
        {
            "type": "multi",
            "name": "combo",
            "graders": {
                "a": score_spec().model_dump(),
                "b": {**score_spec().model_dump(), "name": "again"},
            },
            "calculate_output": "a + b",
        }
    )
    with judge() as (context, _):
        result = run(spec, ["answer: 0.5"], context)[0]
    assert result.reward == 1.0
    assert result.model_grader_token_usage_per_model["judge-a"]["total_tokens"] == 24


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"result": 1, "steps": []}', {"result": 1, "steps": []}),
        ('Sure. {"steps": [], "result": 2} Done.', {"steps": [], "result": 2}),
        ('```\n{"result": 3}\n```', {"result": 3}),
        ("no json here", None),
        ('{"other": 1}  {"result": 4}', {"result": 4}),
    ],
)
def test_parse_output(text: str, expected: Any) -> None:
    assert parse_output(text) == expected


SEEKR_LLM = {
    "reward_components": {
        "format_reward_weight": 0.1,
        "graders": [{"type": "llm", "weight": 0.9, "temperature": 0}],
    }
}


@pytest.mark.parametrize("kind", ["score_model", "label_model", "seekr_llm"])
def test_graders_run_cli_uses_the_env_judge(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from openrft.cli import app

    specs = {
        "score_model": score_spec().model_dump(exclude_none=True),
        "label_model": label_spec().model_dump(exclude_none=True),
        "seekr_llm": SEEKR_LLM,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(specs[kind]))
    sample = {
        "score_model": "answer: 1",
        "label_model": "label: good",
        "seekr_llm": "<think>t</think><answer>answer: 1</answer>",
    }[kind]
    monkeypatch.delenv("OPENRFT_JUDGES", raising=False)
    with judge() as (context, backend):
        monkeypatch.setenv("OPENRFT_JUDGE_BASE_URL", context.judges["judge-a"]["base_url"])
        args = [
            "graders",
            "run",
            str(path),
            "--sample",
            sample,
            "--item",
            '{"reference_answer": "1"}',
        ]
        outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.stdout)
    assert result["reward"] == 1.0
    assert not any(v is True for v in result["metadata"]["errors"].values())
    assert len(backend.requests) == 1
