"""Eval runs with a `completions` data source on a real `openrft serve`: rows sampled in a
worker from a registered base model and from a job's `ft:` model, graded, with their samples and
usage; tenancy; bad sources refused at their path; a model that cannot load fails the run; a
run whose worker is killed mid-way is finished by the next, each row sampled once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.service.conftest import EXACT, Server, wait_for
from tests.service.test_chat import finished_job

pytestmark = pytest.mark.slow

ITEM_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
CUSTOM = {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True}
EXACT_ANSWER = {**EXACT, "reference": "{{ item.answer }}"}
ANSWERED = {
    "type": "python",
    "name": "answered",
    "source": "def grade(sample, item):\n    return 1.0 if 'output_text' in sample else 0.0\n",
    "pass_threshold": 0.5,
}
ITEMS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(3)]
TEMPLATE = {
    "type": "template",
    "template": [
        {"role": "system", "content": "Answer with a number."},
        {"role": "user", "content": "{{ item.question }}"},
    ],
}
SAMPLING = {"temperature": 0, "max_completion_tokens": 4, "seed": 1}


def completions(model: str, **extra: Any) -> dict[str, Any]:
    content = [{"item": item} for item in ITEMS]
    return {
        "type": "completions",
        "model": model,
        "input_messages": TEMPLATE,
        "sampling_params": SAMPLING,
        "source": {"type": "file_content", "content": content},
        **extra,
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    """A server with one worker, the tiny model registered as `tiny` (and one that cannot load
    as `broken`), and one finished LoRA job of project `alpha`."""
    from openrft.training.models import build_tiny_model

    root = tmp_path_factory.mktemp("eval-completions")
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    server = Server(root / "data", workers=1)
    try:
        server.register_model("tiny", str(build_tiny_model(root / "tiny")))
        server.register_model("broken", str(broken))
        with server.client("alpha") as client:
            job = finished_job(client)
        assert job.status == "succeeded", (server.data_dir / "server.log").read_text()
        yield server, job
    finally:
        server.stop()


@pytest.fixture
def alpha(served: tuple[Server, Any]) -> Iterator[openai.OpenAI]:
    with served[0].client("alpha") as client:
        yield client


def make_eval(client: openai.OpenAI) -> Any:
    return client.evals.create(
        data_source_config=CUSTOM,  # type: ignore[arg-type]
        testing_criteria=[EXACT_ANSWER, ANSWERED],  # type: ignore[list-item]
    )


def run_to_end(client: openai.OpenAI, data_source: dict[str, Any]) -> tuple[Any, Any]:
    made = make_eval(client)
    run = client.evals.runs.create(made.id, data_source=data_source)  # type: ignore[arg-type]

    def done() -> Any:
        got = client.evals.runs.retrieve(run.id, eval_id=made.id)
        return got if got.status not in ("queued", "in_progress") else None

    return made, wait_for(done)


def chat_text(client: openai.OpenAI, model: str, item: dict[str, Any]) -> str:
    messages = [
        {"role": "system", "content": "Answer with a number."},
        {"role": "user", "content": item["question"]},
    ]
    reply = client.chat.completions.create(model=model, messages=messages, **SAMPLING)  # type: ignore[arg-type]
    return reply.choices[0].message.content or ""


def check_completed(client: openai.OpenAI, made: Any, run: Any, model: str) -> None:
    assert run.status == "completed", run.error
    assert run.model == model
    assert run.result_counts.total == len(ITEMS)
    assert run.result_counts.errored == 0
    per = {r.testing_criteria: r.passed for r in run.per_testing_criteria_results}
    assert per["answered"] == len(ITEMS)

    items = list(client.evals.runs.output_items.list(run.id, eval_id=made.id))
    assert [i.datasource_item_id for i in items] == list(range(len(ITEMS)))
    for item in items:
        sample = item.sample
        assert sample.model == model
        assert [m.content for m in sample.input] == [
            "Answer with a number.",
            ITEMS[item.datasource_item_id]["question"],
        ]
        # the worker's own model server answers as the API's does (greedy, same weights)
        assert sample.output[0].content == chat_text(client, model, item.datasource_item)
        assert sample.usage.prompt_tokens > 0
        assert 0 < sample.usage.completion_tokens <= 5
        assert sample.max_completion_tokens == 4

    [usage] = run.per_model_usage
    assert usage.model_name == model
    assert usage.invocation_count == len(ITEMS)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"):
        assert getattr(usage, key) == sum(getattr(i.sample.usage, key) for i in items)


def test_a_completions_run_over_a_registered_base_model(alpha: openai.OpenAI) -> None:
    made, run = run_to_end(alpha, completions("tiny"))
    check_completed(alpha, made, run, "tiny")


def test_a_completions_run_over_a_jobs_ft_model(
    served: tuple[Server, Any], alpha: openai.OpenAI
) -> None:
    _, job = served
    made, run = run_to_end(alpha, completions(job.fine_tuned_model))
    check_completed(alpha, made, run, job.fine_tuned_model)


def test_a_completions_run_over_item_messages(alpha: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"messages": {"type": "array"}}}
    made = alpha.evals.create(
        data_source_config={"type": "custom", "item_schema": schema},
        testing_criteria=[ANSWERED],  # type: ignore[list-item]
    )
    rows = [{"item": {"messages": [{"role": "user", "content": "Hi"}]}}]
    source = {
        **completions("tiny"),
        "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
        "source": {"type": "file_content", "content": rows},
    }
    run = alpha.evals.runs.create(made.id, data_source=source)  # type: ignore[arg-type]
    final = ("completed", "failed", "canceled")
    wait_for(lambda: alpha.evals.runs.retrieve(run.id, eval_id=made.id).status in final)
    done = alpha.evals.runs.retrieve(run.id, eval_id=made.id)
    assert done.status == "completed", done.error
    [item] = alpha.evals.runs.output_items.list(run.id, eval_id=made.id)
    assert [(m.role, m.content) for m in item.sample.input] == [("user", "Hi")]


def test_another_projects_ft_model_is_not_found(served: tuple[Server, Any]) -> None:
    server, job = served
    with server.client("beta") as beta:
        made = make_eval(beta)
        for model in (job.fine_tuned_model, "no-such-model"):
            with pytest.raises(openai.NotFoundError) as refused:
                beta.evals.runs.create(made.id, data_source=completions(model))  # type: ignore[arg-type]
            assert refused.value.code == "model_not_found"
        assert beta.evals.runs.list(made.id).data == []


def test_bad_completions_sources_are_refused_at_their_path(alpha: openai.OpenAI) -> None:
    made = make_eval(alpha)
    template = {
        "type": "template",
        "template": [
            {"role": "robot", "content": "hi"},
            {"role": "user", "content": "{{ sample.output_text }}"},
            {"role": "user", "content": "{{ item.missing }}"},
        ],
    }
    bad = completions("tiny", input_messages=template, sampling_params={"tools": []})
    with pytest.raises(openai.BadRequestError) as refused:
        alpha.evals.runs.create(made.id, data_source=bad)  # type: ignore[arg-type]
    message = refused.value.message
    assert "data_source.input_messages.template[0].role" in message
    assert "data_source.input_messages.template[1].content" in message
    assert "data_source.sampling_params.tools" in message

    missing = completions("tiny", input_messages={**template, "template": template["template"][2:]})
    with pytest.raises(openai.BadRequestError) as refused:
        alpha.evals.runs.create(made.id, data_source=missing)  # type: ignore[arg-type]
    assert "row 0" in refused.value.message
    assert "`item.missing` does not exist" in refused.value.message


def test_a_model_that_fails_to_load_fails_the_run(alpha: openai.OpenAI) -> None:
    _, run = run_to_end(alpha, completions("broken"))
    assert run.status == "failed"
    assert run.error.code == "model_load_failed"
    assert "no-such-architecture" in run.error.message


SLOW = {
    "type": "python",
    "name": "slow",
    "source": "import time\n\ndef grade(sample, item):\n    time.sleep(0.1)\n    return 1.0\n",
    "pass_threshold": 0.5,
}


def test_a_run_whose_worker_is_killed_midway_is_sampled_once_per_row(
    make_server: Any, tmp_path: Path
) -> None:
    from openrft.training.models import build_tiny_model

    server: Server = make_server(workers=0)
    server.register_model("tiny", str(build_tiny_model(tmp_path / "tiny")))
    rows = [{"item": {"question": f"{i}?", "answer": str(i)}} for i in range(64)]
    source = {**completions("tiny"), "source": {"type": "file_content", "content": rows}}
    with server.client() as client:
        made = client.evals.create(
            data_source_config=CUSTOM,  # type: ignore[arg-type]
            testing_criteria=[SLOW],  # type: ignore[list-item]
        )
        run = client.evals.runs.create(made.id, data_source=source)  # type: ignore[arg-type]
        worker = server.start_worker()

        def partly_graded() -> bool:
            got = client.evals.runs.retrieve(run.id, eval_id=made.id)
            return got.status == "in_progress" and 0 < got.result_counts.total < len(rows)

        wait_for(partly_graded, interval=0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        server.start_worker()

        final = ("completed", "failed", "canceled")
        wait_for(lambda: client.evals.runs.retrieve(run.id, eval_id=made.id).status in final)
        done = client.evals.runs.retrieve(run.id, eval_id=made.id)
        assert done.status == "completed", done.error
        assert done.result_counts.total == len(rows)
        items = list(client.evals.runs.output_items.list(run.id, eval_id=made.id, limit=100))
        assert sorted(i.datasource_item_id for i in items) == list(range(len(rows)))
        # usage counts each stored row once (the chunk the dead worker was sampling is
        # sampled again by the next, and counted only then)
        assert done.per_model_usage[0].invocation_count == len(rows)
        assert done.per_model_usage[0].completion_tokens == sum(
            i.sample.usage.completion_tokens for i in items
        )
