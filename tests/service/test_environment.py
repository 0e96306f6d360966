"""The environment a worker gives a job's training: a minimal base, the operator's `pass_env`,
the job's own grading context — never the server's credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from openrft.graders.context import CONTEXT_ENV, GradeContext
from openrft.service.environment import training_environment
from openrft.service.settings import Settings
from openrft.service.store import Store, jobs


@pytest.fixture
def job(tmp_path: Path) -> object:
    store = Store.open(f"sqlite:///{tmp_path / 'db'}")
    wandb = {"type": "wandb", "wandb": {"project": "rft", "tags": ["a", "b"]}}
    row = {"id": "ftjob-1", "project": "alpha", "status": "queued", "model": "m",
           "training_file": "file-1", "seed": 1, "created_at": 0, "control": "", "attempts": 0,
           "integrations": [wandb]}  # fmt: skip
    store.add_job(row, {})
    found = store.one(select(jobs).where(jobs.c.id == "ftjob-1"))
    store.engine.dispose()
    return found


def test_only_locations_and_passed_variables_are_inherited(
    job: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "OPENAI_API_KEY": "sk-operator",
        "HF_TOKEN": "hf-operator",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "JUDGE_KEY": "judge-key",
        "HF_HOME": "/cache/hf",
        "OPENRFT_SECRET_TOKEN": "local-only",
        CONTEXT_ENV: '{"owner": "project:someone-else"}',
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=tmp_path, pass_env=["JUDGE_KEY"])
    context = GradeContext.for_project("alpha", {"TOKEN": "alpha-secret"})
    env = training_environment(job, context, settings)  # type: ignore[arg-type]
    for leaked in ("OPENAI_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "OPENRFT_SECRET_TOKEN"):
        assert leaked not in env
    assert env["JUDGE_KEY"] == "judge-key"
    assert env["HF_HOME"] == "/cache/hf"
    assert "PATH" in env
    context = json.loads(env[CONTEXT_ENV])
    assert context["owner"] == "project:alpha"
    assert context["secrets"] == {"TOKEN": "alpha-secret"}
    assert env["WANDB_PROJECT"] == "rft"
    assert env["WANDB_TAGS"] == "a,b"
