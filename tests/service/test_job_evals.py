"""A reinforcement job's eval: a real tiny job through `openrft serve` and a worker whose
evaluations (baseline, every 2 steps, final) become runs of the job's eval, read back with the
`openai` SDK. The worker is killed (-9) mid-training and another resumes the job: no step is
imported twice. One job for the module; the store-level tests below need no training."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.service.conftest import (
    MULTI,
    Server,
    arithmetic_rows,
    jsonl,
    tiny_training,
    wait_for,
)

from openrft.service import job_evals
from openrft.service.store import Store, eval_runs, jobs
from openrft.training import rundir

STEPS = 12
EVALUATED = [0, 2, 4, 6, 8, 10, 12]
VALID = arithmetic_rows(4)
FAST_REAP = {"OPENRFT_STALE_SECONDS": "2"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from openrft.training.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("job-evals") / "data", workers=0, **FAST_REAP)
    running.register_model("tiny", tiny_model)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return server.client("alpha")


def eval_of(client: openai.OpenAI, job_id: str) -> str | None:
    found = getattr(client.fine_tuning.jobs.retrieve(job_id), "eval_id", None)  # an extension
    return None if found is None else str(found)


def run_steps(client: openai.OpenAI, eval_id: str) -> list[int]:
    runs = client.evals.runs.list(eval_id, limit=100).data
    return [int((run.metadata or {})["openrft_step"]) for run in runs]


@pytest.fixture(scope="module")
def job(server: Server, client: openai.OpenAI) -> str:
    """A 12-step job evaluated every 2 steps whose first worker is killed after two of its
    evaluations are runs; a second worker finishes it."""
    train = client.files.create(file=("t.jsonl", jsonl(arithmetic_rows(16))), purpose="fine-tune")
    valid = client.files.create(file=("v.jsonl", jsonl(VALID)), purpose="fine-tune")
    native = {**tiny_training(STEPS, 6), "eval_interval": 2}
    created = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        validation_file=valid.id,
        method={"type": "reinforcement", "reinforcement": {"grader": MULTI}},  # type: ignore[typeddict-item]
        extra_body={"openrft": native},
    )
    first = server.start_worker(**FAST_REAP)
    eval_id = wait_for(lambda: eval_of(client, created.id))
    wait_for(lambda: len(run_steps(client, eval_id)) >= 2)
    first.kill()  # SIGKILL mid-training: the next worker re-reads the whole run dir
    first.wait()
    server.start_worker(**FAST_REAP)
    final = ("succeeded", "failed", "cancelled")
    wait_for(lambda: client.fine_tuning.jobs.retrieve(created.id).status in final)
    assert client.fine_tuning.jobs.retrieve(created.id).status == "succeeded", server_log(server)
    return created.id


def server_log(server: Server) -> str:
    log = Path(server.data_dir / "server.log").read_text(errors="replace")[-3000:]
    return f"server log:\n{log}"


@pytest.mark.slow
def test_the_job_eval_is_an_eval_of_the_grader_and_the_validation_rows(
    client: openai.OpenAI, job: str
) -> None:
    eval_id = eval_of(client, job)
    assert eval_id is not None
    found = client.evals.retrieve(eval_id)
    assert found.name == f"{job} validation"
    assert found.metadata == {"openrft_job_id": job}
    assert [c.type for c in found.testing_criteria] == ["multi"]  # the job's own grader
    schema = found.data_source_config.schema_["properties"]["item"]  # type: ignore[union-attr]
    assert schema["properties"] == {
        "messages": {"type": "array"},
        "reference_answer": {"type": "string"},
    }
    assert eval_id in [e.id for e in client.evals.list(limit=100).data]


@pytest.mark.slow
def test_every_evaluation_is_one_completed_run_even_after_a_worker_restart(
    server: Server, client: openai.OpenAI, job: str
) -> None:
    eval_id = eval_of(client, job)
    assert eval_id is not None
    runs = client.evals.runs.list(eval_id, limit=100).data
    assert sorted(run_steps(client, eval_id)) == EVALUATED  # none missing, none twice
    by_step = {int((r.metadata or {})["openrft_step"]): r for r in runs}
    assert by_step[0].name == "baseline (step 0)"
    assert by_step[4].name == "step 4"
    assert by_step[STEPS].name == f"final (step {STEPS})"
    assert {r.status for r in runs} == {"completed"}
    assert by_step[0].model == "tiny"
    fine_tuned = client.fine_tuning.jobs.retrieve(job).fine_tuned_model
    assert by_step[STEPS].model == f"{fine_tuned}:ckpt-step-{STEPS}"
    for step in EVALUATED[1:]:
        assert by_step[step].model in (
            f"{fine_tuned}:ckpt-step-{step}",
            f"{fine_tuned} at step {step}",
        )
    final = by_step[STEPS]
    assert final.result_counts.total == 2  # eval_samples
    assert final.result_counts.passed + final.result_counts.failed == 2
    assert [c.testing_criteria for c in final.per_testing_criteria_results] == ["answer"]
    [usage] = final.per_model_usage  # the tokens training counted per evaluation sample
    assert (usage.model_name, usage.invocation_count) == (final.model, 2)
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    report = f"http://127.0.0.1:{server.port}/dashboard/evals/{eval_id}/runs/{final.id}"
    assert final.report_url == report
    assert client.evals.runs.retrieve(final.id, eval_id=eval_id).report_url == report


@pytest.mark.slow
def test_output_items_carry_the_rows_the_samples_and_the_rewards_training_gave(
    server: Server, client: openai.OpenAI, job: str
) -> None:
    eval_id = eval_of(client, job)
    assert eval_id is not None
    runs = client.evals.runs.list(eval_id, limit=100).data
    final = next(r for r in runs if r.name.startswith("final"))
    items = client.evals.runs.output_items.list(final.id, eval_id=eval_id).data
    path = rundir.eval_samples_path(server.data_dir / "jobs" / job, STEPS)
    written = rundir.read_eval_samples(path)
    assert [i.datasource_item_id for i in items] == [0, 1]
    for item, sample in zip(items, written, strict=True):
        assert item.datasource_item == VALID[item.datasource_item_id]
        assert item.sample.output[0].content == sample["completion"]
        assert item.sample.model == final.model
        (result,) = item.results
        assert (result.name, result.type) == ("answer", "multi")
        assert result.score == sample["reward"]
        assert getattr(result, "sub_rewards", None) == sample["sub_rewards"]  # an extension
        assert item.status == ("pass" if result.passed else "fail")


@pytest.mark.slow
def test_another_project_sees_none_of_it(server: Server, client: openai.OpenAI, job: str) -> None:
    eval_id = eval_of(client, job)
    assert eval_id is not None
    other = server.client("beta")
    with pytest.raises(openai.NotFoundError):
        other.evals.retrieve(eval_id)
    with pytest.raises(openai.NotFoundError):
        other.evals.runs.list(eval_id)
    assert eval_id not in [e.id for e in other.evals.list().data]
    compare = f"http://127.0.0.1:{server.port}/dashboard/api/evals/{eval_id}/compare"
    outsider = {"Authorization": f"Bearer {other.api_key}"}
    assert httpx.get(compare, headers=outsider).status_code == 404
    mine = httpx.get(compare, headers={"Authorization": f"Bearer {client.api_key}"}).json()
    names = {r["id"]: r["name"] for r in mine["runs"]}
    assert (names[mine["base"]], names[mine["tuned"]]) == (
        "baseline (step 0)",
        f"final (step {STEPS})",
    )
    assert [row["item"] for row in mine["rows"]] == VALID[:2]
    assert all(row["base"] and row["tuned"] for row in mine["rows"])


@pytest.mark.slow
def test_importing_a_step_again_adds_nothing(
    server: Server, client: openai.OpenAI, job: str
) -> None:
    """What a re-claimed job's worker does with steps already imported."""
    store = server.store()
    try:
        row = store.one(jobs.select().where(jobs.c.id == job))
        assert row is not None
        before = store.count(eval_runs)
        steps = dict.fromkeys(EVALUATED, STEPS)
        jobdir = server.data_dir / "jobs" / job
        done = job_evals.import_steps(store, row, row["eval_id"], jobdir, steps)
        assert done == set(EVALUATED)
        assert store.count(eval_runs) == before
        assert job_evals.ensure_eval(store, row) == row["eval_id"]
    finally:
        store.engine.dispose()


@pytest.mark.slow
def test_deleting_the_job_eval_unlinks_it(client: openai.OpenAI, job: str) -> None:
    """Last of the module's job tests: it deletes what the others read."""
    eval_id = eval_of(client, job)
    assert eval_id is not None
    assert client.evals.delete(eval_id).deleted
    assert eval_of(client, job) is None
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.list(eval_id)


# --- no training needed -----------------------------------------------------------------------


def fake_job(store: Store, tmp_path: Path, **config: Any) -> Any:
    valid = tmp_path / "valid.jsonl"
    valid.write_text("\n".join(json.dumps(r) for r in VALID) + "\n")
    native = {"grader": MULTI, "validation_file": str(valid), **config}
    row = {
        "id": "ftjob-fake",
        "project": "p",
        "status": "running",
        "model": "tiny",
        "training_file": "file-t",
        "validation_file": "file-v",
        "seed": 1,
        "config": {k: v for k, v in native.items() if v is not None},
        "created_at": 0,
    }
    store.add_job(row, {})
    return store.job("ftjob-fake")


def test_a_job_without_a_validation_file_or_not_reinforcement_gets_no_eval(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert job_evals.ensure_eval(store, fake_job(store, tmp_path, validation_file=None)) is None
    finally:
        store.engine.dispose()
    store = Store.open(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        assert job_evals.ensure_eval(store, fake_job(store, tmp_path, method="supervised")) is None
    finally:
        store.engine.dispose()


def test_a_job_gets_one_eval_however_often_it_is_claimed(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        job = fake_job(store, tmp_path)
        first = job_evals.ensure_eval(store, job)
        assert first is not None
        assert job_evals.ensure_eval(store, job) == first  # the stale row: linked already
        assert job_evals.ensure_eval(store, store.job(job["id"])) == first
    finally:
        store.engine.dispose()


def test_the_item_schema_is_derived_from_the_rows() -> None:
    rows = [{"a": 1, "b": "x", "c": True}, {"a": 1.5, "b": "y"}]
    assert job_evals.item_schema(rows) == {
        "type": "object",
        "properties": {
            "a": {"type": ["integer", "number"]},
            "b": {"type": "string"},
            "c": {"type": "boolean"},
        },
        "required": ["a", "b"],
    }
    assert job_evals.item_schema([]) == {"type": "object"}
