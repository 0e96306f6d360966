"""The Evals API through a real `openrft serve` and its workers, with the official `openai` SDK:
evals' lifecycle and validation, runs over inline rows and uploaded files graded in a worker,
output items, tenancy, cancel, and a run whose worker is killed mid-way."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from sqlalchemy import select
from tests.service.conftest import EXACT, MULTI, Server, jsonl, wait_for

from openrft.service.store import eval_runs

ITEM_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}
CUSTOM = {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True}
EXACT_ANSWER = {**EXACT, "reference": "{{ item.answer }}"}
DIGITS = {
    "type": "python",
    "name": "digits",
    "source": "def grade(sample, item):\n    return float(sample['output_text'].isdigit())\n",
    "pass_threshold": 0.5,
}
ROWS = [  # exact: pass pass fail fail; digits: pass pass fail pass
    {"item": {"answer": "4"}, "sample": {"output_text": "4"}},
    {"item": {"answer": "6"}, "sample": {"output_text": "6"}},
    {"item": {"answer": "1"}, "sample": {"output_text": "x"}},
    {"item": {"answer": "9"}, "sample": {"output_text": "10"}},
]
INLINE = {"type": "jsonl", "source": {"type": "file_content", "content": ROWS}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("evals") / "data", workers=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[openai.OpenAI]:
    with server.client("alpha") as alpha:
        yield alpha


def make_eval(client: openai.OpenAI, *criteria: dict[str, Any], **extra: Any) -> Any:
    return client.evals.create(
        data_source_config=CUSTOM,  # type: ignore[arg-type]
        testing_criteria=list(criteria or (EXACT_ANSWER, DIGITS)),  # type: ignore[arg-type]
        **extra,
    )


def finished(client: openai.OpenAI, eval_id: str, run_id: str) -> Any:
    def done() -> Any:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        return run if run.status not in ("queued", "in_progress") else None

    return wait_for(done)


def test_an_eval_is_created_listed_retrieved_updated_and_deleted(client: openai.OpenAI) -> None:
    created = make_eval(client, name="arith", metadata={"team": "rl"})
    assert created.object == "eval"
    assert created.name == "arith"
    assert created.metadata == {"team": "rl"}
    assert created.data_source_config.type == "custom"
    schema = created.data_source_config.schema_
    assert schema["properties"]["item"] == ITEM_SCHEMA
    assert schema["required"] == ["item", "sample"]
    assert [c.name for c in created.testing_criteria] == ["exact", "digits"]

    assert client.evals.retrieve(created.id).testing_criteria[1].type == "python"
    updated = client.evals.update(created.id, name="renamed", metadata={"team": "evals"})
    assert (updated.name, updated.metadata) == ("renamed", {"team": "evals"})

    second = make_eval(client, EXACT_ANSWER)
    first_page = client.evals.list(limit=1, order="desc")
    assert [e.id for e in first_page.data] == [second.id]
    assert first_page.has_more
    assert {created.id, second.id} <= {e.id for e in client.evals.list(limit=1)}  # all pages

    deleted = client.evals.delete(created.id)
    assert (deleted.deleted, deleted.eval_id) == (True, created.id)
    with pytest.raises(openai.NotFoundError):
        client.evals.retrieve(created.id)


def test_a_run_over_inline_rows_completes_with_counts_per_criterion(
    client: openai.OpenAI,
) -> None:
    made = make_eval(client)
    run = client.evals.runs.create(made.id, data_source=INLINE, name="inline")  # type: ignore[arg-type]
    assert run.object == "eval.run"
    assert run.status == "queued"
    assert f"/dashboard/evals/{made.id}/runs/{run.id}" in run.report_url

    done = finished(client, made.id, run.id)
    assert done.status == "completed", done.error
    counts = done.result_counts
    assert (counts.total, counts.passed, counts.failed, counts.errored) == (4, 2, 2, 0)
    per = {r.testing_criteria: (r.passed, r.failed) for r in done.per_testing_criteria_results}
    assert per == {"exact": (2, 2), "digits": (3, 1)}
    assert done.per_model_usage == []
    assert [r.id for r in client.evals.runs.list(made.id)] == [run.id]


def test_output_items_are_listed_filtered_and_retrieved(client: openai.OpenAI) -> None:
    made = make_eval(client)
    run = client.evals.runs.create(made.id, data_source=INLINE)  # type: ignore[arg-type]
    finished(client, made.id, run.id)

    items = list(client.evals.runs.output_items.list(run.id, eval_id=made.id, limit=3))
    assert [i.datasource_item_id for i in items] == [0, 1, 2, 3]
    assert [i.status for i in items] == ["pass", "pass", "fail", "fail"]
    last = items[3]
    assert last.datasource_item == {"answer": "9"}
    assert last.sample.output[0].content == "10"
    results = {r.name: (r.score, r.passed) for r in last.results}
    assert results == {"exact": (0.0, False), "digits": (1.0, True)}

    passing = client.evals.runs.output_items.list(run.id, eval_id=made.id, status="pass")
    assert [i.datasource_item_id for i in passing] == [0, 1]
    failing = client.evals.runs.output_items.list(run.id, eval_id=made.id, status="fail")
    assert [i.datasource_item_id for i in failing] == [2, 3]

    one = client.evals.runs.output_items.retrieve(last.id, eval_id=made.id, run_id=run.id)
    assert (one.id, one.run_id, one.eval_id) == (last.id, run.id, made.id)


def test_a_run_on_an_uploaded_file_completes(client: openai.OpenAI) -> None:
    uploaded = client.files.create(file=("rows.jsonl", jsonl(ROWS)), purpose="evals")
    made = make_eval(client, EXACT_ANSWER)
    source = {"type": "jsonl", "source": {"type": "file_id", "id": uploaded.id}}
    run = client.evals.runs.create(made.id, data_source=source)  # type: ignore[arg-type]
    done = finished(client, made.id, run.id)
    assert done.status == "completed", done.error
    assert (done.result_counts.total, done.result_counts.passed) == (4, 2)


def test_a_criterion_that_errors_counts_the_row_as_errored(client: openai.OpenAI) -> None:
    broken = {"type": "python", "name": "broken", "source": "def grade(s, i):\n    1 / 0\n"}
    made = make_eval(client, EXACT_ANSWER, broken)
    run = client.evals.runs.create(made.id, data_source=INLINE)  # type: ignore[arg-type]
    done = finished(client, made.id, run.id)
    assert done.status == "completed"
    counts = done.result_counts
    assert (counts.total, counts.passed, counts.failed, counts.errored) == (4, 0, 0, 4)
    item = next(iter(client.evals.runs.output_items.list(run.id, eval_id=made.id)))
    assert item.results[1].error["python_grader_runtime_error"] is True


def test_another_projects_evals_and_runs_are_not_found(
    server: Server, client: openai.OpenAI
) -> None:
    made = make_eval(client)
    run = client.evals.runs.create(made.id, data_source=INLINE)  # type: ignore[arg-type]
    with server.client("beta") as beta:
        with pytest.raises(openai.NotFoundError):
            beta.evals.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            beta.evals.runs.retrieve(run.id, eval_id=made.id)
        with pytest.raises(openai.NotFoundError):
            beta.evals.runs.create(made.id, data_source=INLINE)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            beta.evals.delete(made.id)
        assert made.id not in {e.id for e in beta.evals.list()}
        uploaded = client.files.create(file=("rows.jsonl", jsonl(ROWS)), purpose="fine-tune")
        theirs = make_eval(beta, EXACT_ANSWER)
        source = {"type": "jsonl", "source": {"type": "file_id", "id": uploaded.id}}
        with pytest.raises(openai.BadRequestError, match="no such file"):
            beta.evals.runs.create(theirs.id, data_source=source)  # type: ignore[arg-type]


def test_bad_evals_are_refused_with_the_place_at_fault(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="multi") as refused:
        make_eval(client, EXACT_ANSWER, MULTI)
    assert refused.value.body["param"] == "testing_criteria[1].type"  # type: ignore[index]

    with pytest.raises(openai.BadRequestError) as refused:
        make_eval(client, {**EXACT_ANSWER, "operation": "equals-ish"})
    assert refused.value.body["param"].startswith("testing_criteria[0]")  # type: ignore[index]

    with pytest.raises(openai.BadRequestError, match="stored_completions"):
        client.evals.create(
            data_source_config={"type": "stored_completions"},
            testing_criteria=[EXACT_ANSWER],  # type: ignore[list-item]
        )


def test_bad_runs_are_refused_with_every_bad_row(client: openai.OpenAI) -> None:
    made = make_eval(client)
    rows = [ROWS[0], {"item": {"answer": 4}, "sample": {"output_text": "4"}}, {"item": {}}]
    content = {"type": "jsonl", "source": {"type": "file_content", "content": rows}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.evals.runs.create(made.id, data_source=content)  # type: ignore[arg-type]
    message = refused.value.message
    assert "row 1" in message
    assert "item schema" in message
    assert "row 2" in message
    assert "row 0" not in message

    completions = {"type": "completions", "source": INLINE["source"], "model": "m"}
    with pytest.raises(openai.NotFoundError) as unknown:
        client.evals.runs.create(made.id, data_source=completions)  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found"


def test_a_queued_run_is_canceled_and_deleted(make_server: Any) -> None:
    server: Server = make_server(workers=0)  # nobody grades: the run stays queued
    with server.client() as client:
        made = make_eval(client)
        run = client.evals.runs.create(made.id, data_source=INLINE)  # type: ignore[arg-type]
        assert client.evals.runs.cancel(run.id, eval_id=made.id).status == "canceled"
        assert client.evals.runs.list(made.id, status="canceled").data[0].id == run.id
        assert client.evals.runs.delete(run.id, eval_id=made.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.evals.runs.retrieve(run.id, eval_id=made.id)


SLOW = {
    "type": "python",
    "name": "slow",
    "source": "import time\n\ndef grade(sample, item):\n    time.sleep(0.25)\n    return 1.0\n",
    "pass_threshold": 0.5,
}


def test_a_run_whose_worker_is_killed_midway_completes_on_the_next(make_server: Any) -> None:
    server: Server = make_server(workers=0)
    rows = [{"item": {"answer": str(i)}, "sample": {"output_text": str(i)}} for i in range(64)]
    with server.client() as client:
        made = make_eval(client, EXACT_ANSWER, SLOW)
        source = {"type": "jsonl", "source": {"type": "file_content", "content": rows}}
        run = client.evals.runs.create(made.id, data_source=source)  # type: ignore[arg-type]
        worker = server.start_worker()

        def partly_graded() -> bool:
            got = client.evals.runs.retrieve(run.id, eval_id=made.id)
            return got.status == "in_progress" and 0 < got.result_counts.total < len(rows)

        wait_for(partly_graded, interval=0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        server.start_worker()

        done = finished(client, made.id, run.id)
        assert done.status == "completed", done.error
        assert (done.result_counts.total, done.result_counts.passed) == (64, 64)
        items = list(client.evals.runs.output_items.list(run.id, eval_id=made.id, limit=100))
        assert sorted(i.datasource_item_id for i in items) == list(range(64))
    store = server.store()
    try:
        row = store.one(select(eval_runs.c.attempts).where(eval_runs.c.id == run.id))
    finally:
        store.engine.dispose()
    assert row is not None
    assert row["attempts"] == 2  # re-claimed once, the graded rows kept
