"""The pre-flight through the service: a job whose grader gives no reward variance fails fast
with `preflight_failed` and a `preflight` event; `openrft jobs create --preflight` makes a job
that runs only the pre-flight and succeeds with its report as the result file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.service.conftest import EXACT, Server, arithmetic_rows, jsonl, tiny_training, wait_for
from typer.testing import CliRunner

from openrft.cli import app

pytestmark = pytest.mark.slow

HAS_E = {**EXACT, "name": "has_e", "reference": "e", "operation": "like"}
"""Random completions contain an `e` often enough for most groups to differ."""
PREFLIGHT = {"prompts": 4}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from openrft.training.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny"))


@pytest.fixture
def server(make_server: Any, tiny_model: str) -> Server:
    running: Server = make_server(workers=1)
    running.register_model("tiny", tiny_model)
    return running


def settled(client: openai.OpenAI, job_id: str) -> Any:
    final = ("succeeded", "failed", "cancelled")
    return wait_for(
        lambda: (job := client.fine_tuning.jobs.retrieve(job_id)).status in final and job,
    )


def events(client: openai.OpenAI, job_id: str) -> list[Any]:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=50))))


def test_a_grader_without_variance_fails_the_job_fast_with_preflight_failed(
    server: Server,
) -> None:
    client = server.client()
    train = client.files.create(file=("t.jsonl", jsonl(arithmetic_rows(8))), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        method={"type": "reinforcement", "reinforcement": {"grader": EXACT}},  # type: ignore[typeddict-item]
        extra_body={"openrft": tiny_training(4, 1) | {"preflight": PREFLIGHT}},
    )
    done = settled(client, job.id)
    assert done.status == "failed"
    assert done.error is not None
    assert (done.error.code, done.error.param) == ("preflight_failed", "preflight")
    assert "`eq` never matches" in done.error.message
    assert "sample: " in done.error.message
    [found] = [e for e in events(client, job.id) if (e.data or {}).get("preflight")]
    assert found.level == "error"
    assert found.data["preflight"]["passed"] is False
    assert found.data["preflight"]["zero_variance_share"] == 1.0
    assert not any(e.type == "metrics" for e in events(client, job.id))  # it never trained


def test_jobs_create_preflight_succeeds_with_the_report_and_no_model(
    server: Server, tmp_path: Path
) -> None:
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(HAS_E))
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps(tiny_training(4, 1) | {"preflight": PREFLIGHT}))
    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(arithmetic_rows(8)))
    key = server.key("alpha")
    where = ["--base-url", server.base_url, "--api-key", key]
    args = ["jobs", "create", "--model", "tiny", "--training-file", str(data)]
    args += ["--grader", str(grader), "--config", str(overrides), "--preflight", *where]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["id"]
    with server.client("alpha", key) as client:
        done = settled(client, job_id)
        assert done.status == "succeeded"
        assert done.fine_tuned_model is None
        [file_id] = done.result_files
        report = json.loads(client.files.content(file_id).read())
        [found] = [e for e in events(client, job_id) if (e.data or {}).get("preflight")]
    assert report["passed"] is True
    assert report["samples"] == 4 * 2  # prompts × tiny_training's num_generations
    assert found.level == "info"
    assert found.data["preflight"] == report
    assert "passed" in found.message
