"""Workers under faults, through a real `openrft serve` on a real SQLite file:
- the store held locked (`BEGIN EXCLUSIVE` from this process) past its busy timeout, idle and
  mid-job: the worker lives on, `/health` answers, and jobs are still claimed and finished;
- a worker killed with SIGKILL mid-training: the supervisor restarts it, its training dies with
  it, the job is re-queued at once (not after `stale_seconds`) and ends at exactly its planned
  steps, 0..40, none twice;
- the training side of that: resuming skips a half-saved checkpoint and a finished run trains no
  step past its total ("step 41 of 40"); and `/health`'s 503 and degraded answers."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

STORE_ERROR = "store unavailable"
"""What a worker logs when a store call fails (then it backs off and retries)."""

GATED_STAND_IN = """
import json, pathlib, sys, time
out = pathlib.Path(sys.argv[sys.argv.index("--output-dir") + 1])
while not (out.parent.parent / "go").exists():
    time.sleep(0.05)
line = {"step": 1, "total_steps": 1, "scores": {"train_reward_mean": 1.0}}
with open(out / "metrics.jsonl", "a") as metrics:
    metrics.write(json.dumps(line) + "\\n")
"""
"""A training stand-in that follows the worker protocol: it waits until `DATA_DIR/go` exists,
then writes one metrics line and exits 0."""


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan may wait a while for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def health(server: Server) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def job_row(server: Server, job_id: str) -> Any:
    store = server.store()
    try:
        return store.job(job_id)
    finally:
        store.engine.dispose()


def worker_pid(server: Server, job_id: str) -> int:
    return int(job_row(server, job_id)["worker"].rsplit(":", 1)[1])


def log_count(server: Server, text: str) -> int:
    return (server.data_dir / "server.log").read_text(errors="replace").count(text)


def messages(client: openai.OpenAI, job_id: str) -> list[str]:
    return [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=100)]


def metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    """The metrics events' steps, oldest first."""
    found = list(client.fine_tuning.jobs.list_events(job_id, limit=7))  # follows the pages
    return [e.data["step"] for e in reversed(found) if e.type == "metrics"]


def create(client: openai.OpenAI, model: str, **openrft: Any) -> str:
    train = client.files.create(file=("t.jsonl", jsonl(arithmetic_rows(16))), purpose="fine-tune")
    valid = client.files.create(file=("v.jsonl", jsonl(arithmetic_rows(4))), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=train.id,
        validation_file=valid.id,
        method={"type": "reinforcement", "reinforcement": {"grader": MULTI}},  # type: ignore[typeddict-item]
        extra_body={"openrft": openrft},
    )
    return job.id


def wait_status(client: openai.OpenAI, job_id: str, *wanted: str) -> str:
    final = ("succeeded", "failed", "cancelled", *wanted)
    found = wait_for(lambda: (s := client.fine_tuning.jobs.retrieve(job_id).status) in final and s)
    return str(found)


@contextmanager
def store_locked(server: Server) -> Iterator[None]:
    """Another process's `BEGIN EXCLUSIVE` on the server's database, held until the block ends."""
    conn = sqlite3.connect(server.data_dir / "openrft.db", timeout=600, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def hold_until_failures(server: Server, failures: int) -> None:
    """Keep holding until the worker has logged `failures` more store errors: each is one
    wait past the busy timeout, so the lock outlasted it that many times, however slow the
    machine."""
    seen = log_count(server, STORE_ERROR)
    wait_for(lambda: log_count(server, STORE_ERROR) >= seen + failures)


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[Server]:
    env = {
        "OPENRFT_TRAIN_COMMAND": shlex.join([sys.executable, "-c", GATED_STAND_IN]),
        "OPENRFT_STORE_BUSY_SECONDS": "0.5",
        "OPENRFT_STALE_SECONDS": "3600",  # only a dead worker could be reaped, and none dies
    }
    server = Server(tmp_path / "data", workers=1, **env)
    server.register_model("tiny", "/models/tiny")  # the stand-in never loads it
    yield server
    server.stop()


def test_a_locked_store_neither_kills_the_worker_nor_loses_its_jobs(locked_server: Server) -> None:
    server, client = locked_server, locked_server.client()
    (server.data_dir / "go").touch()
    first = create(client, "tiny")
    assert wait_status(client, first) == "succeeded"
    pid = worker_pid(server, first)

    with store_locked(server):  # idle: every claim waits out the busy timeout and fails
        hold_until_failures(server, 2)
        assert "workers" in health(server)  # readers are not blocked (WAL): /health answers
    second = create(client, "tiny")
    assert wait_status(client, second) == "succeeded"
    assert worker_pid(server, second) == pid
    assert running(pid)

    (server.data_dir / "go").unlink()
    third = create(client, "tiny")
    assert wait_status(client, third, "running") == "running"
    training = wait_for(lambda: job_row(server, third)["pid"])
    with store_locked(server):  # busy: heartbeats and progress fail, the training goes on
        hold_until_failures(server, 2)
        (server.data_dir / "go").touch()
        wait_for(lambda: not running(training))
        hold_until_failures(server, 1)  # the finished job's bookkeeping waits for the store
    assert wait_status(client, third) == "succeeded"
    assert metric_steps(client, third) == [1]
    assert worker_pid(server, third) == pid
    assert running(pid)
    state = wait_for(lambda: (h := health(server))["workers"]["alive"] == 1 and h)
    assert state["status"] == "ok"
    assert state["workers"]["restarts"] == 0
    assert log_count(server, "restarted worker") == 0


@pytest.mark.slow
def test_a_lock_outlasting_stale_seconds_gets_no_running_job_reaped(tmp_path: Path) -> None:
    # the case: the lock outlasts the busy timeout *and* `stale_seconds`; once it is
    # released the job's own worker heartbeats again before another worker would reap it
    stale = 10
    env = {
        "OPENRFT_TRAIN_COMMAND": shlex.join([sys.executable, "-c", GATED_STAND_IN]),
        "OPENRFT_STORE_BUSY_SECONDS": "0.5",
        "OPENRFT_STALE_SECONDS": str(stale),
    }
    server = Server(tmp_path / "data", workers=2, **env)
    try:
        server.register_model("tiny", "/models/tiny")
        client = server.client()
        job = create(client, "tiny")
        assert wait_status(client, job, "running") == "running"
        training = wait_for(lambda: job_row(server, job)["pid"])
        with store_locked(server):
            age = lambda: time.time() - job_row(server, job)["heartbeat_at"]  # noqa: E731
            wait_for(lambda: age() > stale + 1)
            hold_until_failures(server, 1)
        wait_for(lambda: health(server)["workers"]["alive"] == 2)
        assert running(training)
        (server.data_dir / "go").touch()
        assert wait_status(client, job) == "succeeded"
        assert job_row(server, job)["attempts"] == 1
        assert not any("stopped responding" in m for m in messages(client, job))
        assert log_count(server, "restarted worker") == 0
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from openrft.training.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny"))


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_job_resumes_to_the_planned_step(
    tmp_path: Path, tiny_model: str
) -> None:
    # a stale heartbeat would take an hour to re-queue the job: only the dead-pid path can
    env = {"OPENRFT_STALE_SECONDS": "3600", "OPENRFT_RESTART_BACKOFF_SECONDS": "0.5"}
    server = Server(tmp_path / "data", workers=1, **env)
    try:
        server.register_model("tiny", tiny_model)
        client = server.client()
        job = create(client, "tiny", **tiny_training(steps=40, checkpoints=8))
        wait_for(lambda: list(client.fine_tuning.jobs.checkpoints.list(job)))
        killed, orphan = worker_pid(server, job), job_row(server, job)["pid"]
        assert running(orphan)
        os.kill(killed, signal.SIGKILL)

        wait_for(lambda: not running(orphan))  # the training died with it
        wait_for(lambda: any("re-queued" in m for m in messages(client, job)))
        wait_for(lambda: health(server)["workers"]["restarts"] == 1)
        assert wait_status(client, job) == "succeeded", (server.data_dir / "server.log").read_text()
        assert worker_pid(server, job) != killed
        assert metric_steps(client, job) == list(range(41))  # gap-free, duplicate-free, no 41
        said = messages(client, job)
        assert any(m.startswith("Resuming from the latest checkpoint") for m in said)
        assert any("its process on this host is gone" in m for m in said)
        results = client.fine_tuning.jobs.retrieve(job).result_files[0]
        lines = client.files.content(results).text.splitlines()
        assert [json.loads(line)["step"] for line in lines] == list(range(41))
        name = f"{socket.gethostname()}:{killed}"
        assert log_count(server, f"worker {name} was killed by SIGKILL") == 1
        assert health(server)["status"] == "ok"
    finally:
        server.stop()


def test_health_is_503_in_openai_envelope_when_the_store_cannot_answer(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine

    from openrft.service.app import create_app
    from openrft.service.settings import Settings
    from openrft.service.store import Store

    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app) as http:
        assert http.get("/health").json()["status"] == "ok"
        working = app.state.store
        # a store whose file cannot be opened: every query fails at once
        app.state.store = Store(create_engine(f"sqlite:///{tmp_path}/missing/dir/openrft.db"))
        try:
            response = http.get("/health")
        finally:
            app.state.store.engine.dispose()
            app.state.store = working
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.json()["error"]["type"] == "server_error"


def test_health_is_degraded_only_while_a_worker_is_dead_or_silent() -> None:
    from openrft.service.supervisor import Backoff, worker_health

    now = 1000.0

    def row(name: str, state: str, beat: float, **extra: Any) -> dict[str, Any]:
        found = {"name": name, "pid": 1, "state": state, "heartbeat_at": beat}
        return found | {"restarts": 0, "exit_code": None, **extra}

    fine = worker_health([row("a", "idle", now - 1), row("b", "busy", now)], now, 30)
    assert fine == {
        "status": "ok",
        "workers": {"alive": 2, "restarts": 0, "dead": [], "stale": []},
    }
    dead = worker_health([row("a", "dead", now - 1, exit_code=-9, restarts=2)], now, 30)
    assert dead["status"] == "degraded"
    assert dead["workers"]["dead"][0]["why"] == "its process was killed by SIGKILL"
    assert dead["workers"]["restarts"] == 2
    silent = worker_health([row("a", "busy", now - 45)], now, 30)
    assert silent["status"] == "degraded"
    assert silent["workers"]["stale"][0]["why"] == "no heartbeat for 45 s"
    backoff = Backoff(0.5, 30.0)
    assert [backoff.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.next() == 0.5


@pytest.mark.slow
def test_resume_passes_over_a_half_saved_checkpoint_and_never_trains_past_the_total(
    tmp_path: Path, tiny_model: str
) -> None:
    from openrft.training.dialects import load
    from openrft.training.grpo import run

    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(arithmetic_rows(16)))
    native = tiny_training(steps=4, checkpoints=4) | {"budget": {"max_steps": 2}}
    config = load({"model": tiny_model, "training_file": str(data), "grader": MULTI, **native})
    out = tmp_path / "run"
    assert run(config, out).paused  # checkpoint-2
    # killed while saving step 3: the weights are there, the trainer state is not
    half = out / "checkpoints" / "checkpoint-3"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    unbudgeted = config.model_copy(
        update={"budget": config.budget.model_copy(update={"max_steps": None})}
    )
    assert run(unbudgeted, out, resume=out).steps == 4
    # the worker died after the last checkpoint but before recording success: run it again
    again = run(unbudgeted, out, resume=out)
    assert (again.steps, again.total_steps) == (4, 4)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 1, 2, 3, 4]  # no "step 5 of 4"
