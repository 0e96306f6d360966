"""Promoting a checkpoint to a job's `fine_tuned_model` on a real `openrft serve` (one worker, a
tiny reinforcement job with two checkpoints whose adapters differ): the `ft:` id then resolves to
that checkpoint for chat (on the model server that already holds the old adapter), export and
`serve-model`; promoting again moves it; the refusals; `openrft jobs promote`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.fine_tuning import FineTuningJob
from tests.service.conftest import Server, arithmetic_rows, jsonl, tiny_training, wait_for
from typer.testing import CliRunner

from openrft.cli import jobs as jobs_cli
from openrft.cli.exits import EXIT_API
from openrft.cli.service_models import service_checkpoint
from openrft.service.resources import checkpoint_path

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "cancelled")
HELLO = [{"role": "user", "content": "What is 2 + 2?"}]


PARTIAL = {
    "type": "text_similarity",
    "name": "similar",
    "evaluation_metric": "fuzzy_match",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
}


def upload(client: openai.OpenAI, rows: list[dict[str, Any]]) -> str:
    return client.files.create(file=("rows.jsonl", jsonl(rows)), purpose="fine-tune").id


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    """A server with one worker, the tiny model as `tiny`, and a succeeded reinforcement job
    with two checkpoints whose adapters differ (a partial-credit grader gives the groups
    different rewards, and a large learning rate moves the weights)."""
    from openrft.training.models import build_tiny_model

    root = tmp_path_factory.mktemp("promote")
    tiny = build_tiny_model(root / "tiny")
    server = Server(root / "data", workers=1)
    try:
        server.register_model("tiny", str(tiny))
        native = {**tiny_training(3, 2), "num_generations": 4, "learning_rate": 0.05}
        with server.client("alpha") as client:
            job = client.fine_tuning.jobs.create(
                model="tiny",
                training_file=upload(client, arithmetic_rows(8)),
                suffix="promo",
                method={"type": "reinforcement", "reinforcement": {"grader": PARTIAL}},  # type: ignore[typeddict-item]
                extra_body={"openrft": native},
            )
            wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status in FINAL)
            job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", (job.error, (root / "data" / "server.log").read_text())
        yield server, job
    finally:
        server.stop()


@pytest.fixture
def alpha(served: tuple[Server, Any]) -> Iterator[openai.OpenAI]:
    with served[0].client("alpha") as client:
        yield client


def promote(client: openai.OpenAI, job_id: str, checkpoint_id: str) -> FineTuningJob:
    path = f"/fine_tuning/jobs/{job_id}/checkpoints/{checkpoint_id}/promote"
    return client.post(path, cast_to=FineTuningJob)


def resolved(server: Server, name: str) -> str | None:
    store = server.store()
    try:
        return checkpoint_path(store, name, project="alpha")
    finally:
        store.engine.dispose()


def answer(client: openai.OpenAI, model: str) -> str | None:
    reply = client.chat.completions.create(
        model=model, messages=HELLO, temperature=0, max_completion_tokens=8
    )
    assert reply.model == model
    return reply.choices[0].message.content


def test_a_promoted_checkpoint_serves_the_fine_tuned_model(
    served: tuple[Server, Any], alpha: openai.OpenAI
) -> None:
    server, job = served
    first, last = sorted(
        alpha.fine_tuning.jobs.checkpoints.list(job.id), key=lambda c: c.step_number
    )
    first_path = resolved(server, first.fine_tuned_model_checkpoint)
    last_path = resolved(server, last.fine_tuned_model_checkpoint)
    assert first_path is not None
    assert last_path is not None
    assert first_path != last_path
    adapter = "adapter_model.safetensors"
    assert (Path(first_path) / adapter).read_bytes() != (Path(last_path) / adapter).read_bytes()

    # before: the last checkpoint (and the model server now holds its adapter)
    assert alpha.fine_tuning.jobs.retrieve(job.id).promoted_checkpoint is None  # type: ignore[attr-defined]
    assert resolved(server, job.fine_tuned_model) == last_path
    assert answer(alpha, job.fine_tuned_model) == answer(alpha, last.fine_tuned_model_checkpoint)

    promoted = promote(alpha, job.id, first.id)
    assert promoted.promoted_checkpoint == first.id  # type: ignore[attr-defined]
    assert promoted.fine_tuned_model == job.fine_tuned_model
    assert promoted.metadata is None  # where it is kept does not show in the user's metadata
    assert resolved(server, job.fine_tuned_model) == first_path
    assert answer(alpha, job.fine_tuned_model) == answer(alpha, first.fine_tuned_model_checkpoint)
    # the checkpoint models keep their steps; export and serve-model follow the promotion
    assert resolved(server, last.fine_tuned_model_checkpoint) == last_path
    assert str(service_checkpoint(job.fine_tuned_model, server.data_dir, None)) == first_path
    listed = alpha.fine_tuning.jobs.list().data
    assert [getattr(j, "promoted_checkpoint", None) for j in listed if j.id == job.id] == [first.id]
    messages = [e.message for e in alpha.fine_tuning.jobs.list_events(job.id)]
    assert any(m.startswith(f"Promoted checkpoint {first.id}") for m in messages)

    again = promote(alpha, job.id, last.id)
    assert again.promoted_checkpoint == last.id  # type: ignore[attr-defined]
    assert resolved(server, job.fine_tuned_model) == last_path
    assert answer(alpha, job.fine_tuned_model) == answer(alpha, last.fine_tuned_model_checkpoint)


def test_promote_refusals(served: tuple[Server, Any], alpha: openai.OpenAI) -> None:
    server, job = served
    (checkpoint, *_) = alpha.fine_tuning.jobs.checkpoints.list(job.id)
    with pytest.raises(openai.NotFoundError) as no_job:
        promote(alpha, "ftjob-nope", checkpoint.id)
    assert no_job.value.code == "job_not_found"
    with pytest.raises(openai.NotFoundError) as no_checkpoint:
        promote(alpha, job.id, "ftckpt-nope")
    assert no_checkpoint.value.code == "checkpoint_not_found"
    assert no_checkpoint.value.param == "checkpoint_id"
    with server.client("beta") as other, pytest.raises(openai.NotFoundError) as foreign:
        promote(other, job.id, checkpoint.id)
    assert foreign.value.code == "job_not_found"

    # a job that did not succeed has no fine_tuned_model to promote to
    failed = alpha.fine_tuning.jobs.create(
        model="tiny",
        training_file=upload(alpha, arithmetic_rows(4)),  # prompts only: SFT refuses them
        method={"type": "supervised"},
    )
    wait_for(lambda: alpha.fine_tuning.jobs.retrieve(failed.id).status == "failed")
    with pytest.raises(openai.BadRequestError) as unfinished:
        promote(alpha, failed.id, checkpoint.id)
    assert unfinished.value.code == "job_not_succeeded"
    assert "has status 'failed'" in unfinished.value.message


def test_jobs_promote_cli(served: tuple[Server, Any]) -> None:
    server, job = served
    checkpoints = server.client("alpha").fine_tuning.jobs.checkpoints.list(job.id).data
    auth = ["--base-url", server.base_url, "--api-key", server.key("alpha")]
    runner = CliRunner()
    done = runner.invoke(jobs_cli.app, ["promote", job.id, checkpoints[-1].id, *auth])
    assert done.exit_code == 0, done.output
    assert f"{job.fine_tuned_model} → {checkpoints[-1].id}" in done.output
    assert resolved(server, job.fine_tuned_model) == resolved(
        server, checkpoints[-1].fine_tuned_model_checkpoint
    )
    missing = runner.invoke(jobs_cli.app, ["promote", job.id, "ftckpt-nope", *auth])
    assert missing.exit_code == EXIT_API
    assert "No such checkpoint" in missing.output
