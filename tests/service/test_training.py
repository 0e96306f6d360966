"""Real training through the service: the `openai` SDK creates reinforcement jobs (multi grader,
tiny local model) that a worker runs as `openrft train` subprocesses — to success, through
pause/resume, cancel, and a kill -9 of the worker in the middle of training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from openrft.training.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny"))


def create(
    client: openai.OpenAI, model: str, steps: int, checkpoints: int, **extra: Any
) -> openai.types.fine_tuning.FineTuningJob:
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(16))), purpose="fine-tune"
    )
    valid = client.files.create(
        file=("valid.jsonl", jsonl(arithmetic_rows(4))), purpose="fine-tune"
    )
    return client.fine_tuning.jobs.create(
        model=model,
        training_file=train.id,
        validation_file=valid.id,
        method={"type": "reinforcement", "reinforcement": {"grader": MULTI}},  # type: ignore[typeddict-item]
        extra_body={"openrft": tiny_training(steps, checkpoints)},
        **extra,
    )


def status(client: openai.OpenAI, job_id: str) -> str:
    return client.fine_tuning.jobs.retrieve(job_id).status


def wait_status(client: openai.OpenAI, job_id: str, *wanted: str) -> str:
    found = wait_for(lambda: (s := status(client, job_id)) in wanted + FINAL and s)
    return str(found)


def all_events(client: openai.OpenAI, job_id: str) -> list[Any]:
    """Every event, oldest first (the SDK follows the newest-first pages)."""
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=7))))


def metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    return [e.data["step"] for e in all_events(client, job_id) if e.type == "metrics"]


def wait_step(client: openai.OpenAI, job_id: str, step: int) -> None:
    wait_for(lambda: any(s >= step for s in metric_steps(client, job_id)))


def test_reinforcement_job_succeeds(make_server: Any, tiny_model: str) -> None:
    server: Server = make_server(workers=1)
    server.register_model("tiny", tiny_model)
    client = server.client()
    job = create(client, "tiny", steps=4, checkpoints=2, suffix="e2e", metadata={"k": "v"})
    assert wait_status(client, job.id) == "succeeded", server_log(server)
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model == f"ft:tiny:e2e:{job.id.removeprefix('ftjob-')}"
    assert done.finished_at is not None
    assert done.trained_tokens
    events = all_events(client, job.id)
    metrics = [e for e in events if e.type == "metrics"]
    assert [e.data["step"] for e in metrics] == [0, 1, 2, 3, 4]
    assert metrics[0].data["scores"]["valid_reward_mean"] is not None  # the baseline eval
    assert "train reward" in metrics[-1].message
    assert [e.message for e in events][-1] == "The job has successfully completed"
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert [c.step_number for c in checkpoints] == [4, 2]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-4"
    assert "valid_reward_mean" in checkpoints[0].metrics.model_dump()
    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    results = client.files.content(done.result_files[0]).text.splitlines()
    assert [json.loads(line)["step"] for line in results] == [0, 1, 2, 3, 4]


def test_pause_then_resume_continues_from_the_checkpoint(make_server: Any, tiny_model: str) -> None:
    server: Server = make_server(workers=1)
    server.register_model("tiny", tiny_model)
    client = server.client()
    job = create(client, "tiny", steps=30, checkpoints=3)
    wait_step(client, job.id, 2)
    client.fine_tuning.jobs.pause(job.id)
    assert wait_status(client, job.id, "paused") == "paused", server_log(server)
    paused_at = max(metric_steps(client, job.id))
    assert paused_at < 30
    assert list(client.fine_tuning.jobs.checkpoints.list(job.id))  # pause wrote one
    client.fine_tuning.jobs.resume(job.id)
    assert wait_status(client, job.id) == "succeeded", server_log(server)
    assert metric_steps(client, job.id) == list(range(31))  # no gap, no repeat


def test_a_budget_pause_is_paused_with_its_reason_and_resumes(
    make_server: Any, tiny_model: str
) -> None:
    server: Server = make_server(workers=1)
    server.register_model("tiny", tiny_model)
    client = server.client()
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(16))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        method={"type": "reinforcement", "reinforcement": {"grader": MULTI}},  # type: ignore[typeddict-item]
        extra_body={"openrft": tiny_training(4, 2) | {"budget": {"max_steps": 2}}},
    )
    assert wait_status(client, job.id, "paused") == "paused", server_log(server)
    paused = client.fine_tuning.jobs.retrieve(job.id)
    assert paused.fine_tuned_model is None
    why = [e.message for e in all_events(client, job.id) if "budget" in e.message]
    assert why
    assert why[-1].startswith("Job paused at step 2: it reached its budget (max_steps 2)")
    client.fine_tuning.jobs.resume(job.id)
    assert wait_status(client, job.id) == "succeeded", server_log(server)
    assert metric_steps(client, job.id) == [0, 1, 2, 3, 4]


def test_cancel_stops_a_running_job(make_server: Any, tiny_model: str) -> None:
    server: Server = make_server(workers=1)
    server.register_model("tiny", tiny_model)
    client = server.client()
    job = create(client, "tiny", steps=200, checkpoints=2)
    wait_step(client, job.id, 1)
    assert client.fine_tuning.jobs.cancel(job.id).status == "running"  # the worker stops it
    assert wait_status(client, job.id) == "cancelled"
    steps = metric_steps(client, job.id)
    assert max(steps) < 200
    assert steps == list(range(len(steps)))
    assert (server.data_dir / "jobs" / job.id / "metrics.jsonl").exists()  # kept on cancel
    assert all_events(client, job.id)[-1].message == "Job cancelled"


def test_worker_killed_mid_training_resumes_from_checkpoint(
    make_server: Any, tiny_model: str
) -> None:
    fast_reap = {"OPENRFT_STALE_SECONDS": "2"}
    server: Server = make_server(workers=0, **fast_reap)
    server.register_model("tiny", tiny_model)
    client = server.client()
    job = create(client, "tiny", steps=40, checkpoints=8)
    first = server.start_worker(**fast_reap)
    wait_for(lambda: list(client.fine_tuning.jobs.checkpoints.list(job.id)))
    first.kill()  # SIGKILL: no cleanup, the training process is orphaned
    first.wait()
    killed_at = max(metric_steps(client, job.id))
    assert killed_at < 40
    server.start_worker(**fast_reap)
    assert wait_status(client, job.id) == "succeeded", server_log(server)
    events = all_events(client, job.id)
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps == list(range(41))  # gap-free and duplicate-free
    assert len({e.id for e in events}) == len(events)
    messages = [e.message for e in events]
    assert any("stopped responding; job re-queued" in m for m in messages)
    assert any(m.startswith("Resuming from the latest checkpoint") for m in messages)


BROKEN = {
    "type": "python",
    "name": "broken",
    "source": "def grade(sample, item):\n    raise ValueError('boom')\n",
}
"""A grader that fails on every sample."""


def test_a_grader_failing_too_often_fails_the_job_with_its_code(
    make_server: Any, tiny_model: str
) -> None:
    server: Server = make_server(workers=1)
    server.register_model("tiny", tiny_model)
    client = server.client()
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(8))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        method={"type": "reinforcement", "reinforcement": {"grader": BROKEN}},  # type: ignore[typeddict-item]
        extra_body={"openrft": tiny_training(2, 1) | {"max_grader_error_rate": 0.5}},
    )
    assert wait_status(client, job.id) == "failed", server_log(server)
    error = client.fine_tuning.jobs.retrieve(job.id).error
    assert error is not None
    assert error.code == "grader_error_rate"
    assert "samples failed to grade" in error.message
    assert "boom" in error.message
    assert error.param is None
    assert any(e.level == "error" for e in all_events(client, job.id))


def test_a_model_that_cannot_be_loaded_fails_the_job_as_invalid_model(
    make_server: Any, tmp_path: Path
) -> None:
    server: Server = make_server(workers=1)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    server.register_model("broken", str(empty))
    client = server.client()
    job = create(client, "broken", steps=2, checkpoints=1)
    assert wait_status(client, job.id) == "failed", server_log(server)
    error = client.fine_tuning.jobs.retrieve(job.id).error
    assert error is not None
    assert (error.code, error.param) == ("invalid_model", "model")
    assert "tokenizer" in error.message  # transformers' own words, not a traceback
    assert "Traceback" not in error.message


def server_log(server: Server) -> str:
    log = Path(server.data_dir / "server.log").read_text(errors="replace")[-3000:]
    stderr = sorted((server.data_dir / "jobs").glob("*/stderr.log"))
    tail = stderr[-1].read_text(errors="replace")[-3000:] if stderr else ""
    return f"server log:\n{log}\ntraining stderr:\n{tail}"
