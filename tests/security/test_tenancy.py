"""Hostile tenants against a real `openrft serve` on 127.0.0.1 with two projects (alpha, beta):
what a job may name (files, models, accelerate configs), absurd settings, quotas, the secrets
route, the environment a job's training gets, and the modes of the files at rest."""

from __future__ import annotations

import json
import shlex
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.service.conftest import EXACT, Server, arithmetic_rows, jsonl, wait_for

from openrft.service import tenancy
from openrft.service.store import files, now

REINFORCEMENT = {"type": "reinforcement", "reinforcement": {"grader": EXACT}}

ENV_DUMP = "import json, os, sys; json.dump(dict(os.environ), open('env.json', 'w')); sys.exit(0)"
"""A stand-in training command: writes the environment it was given into the job dir."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No worker until a test starts one: the jobs made here stay where the API put them."""
    running = Server(
        tmp_path_factory.mktemp("tenancy") / "data",
        OPENAI_API_KEY="sk-operator-secret",
        OPENRFT_TRAIN_COMMAND=shlex.join([sys.executable, "-c", ENV_DUMP]),
        OPENRFT_MAX_ACTIVE_JOBS="1000",
    )
    running.register_model("tiny", "/models/tiny")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def alpha(server: Server) -> Iterator[openai.OpenAI]:
    with server.client("alpha") as client:
        yield client


@pytest.fixture(scope="module")
def beta(server: Server) -> Iterator[openai.OpenAI]:
    with server.client("beta") as client:
        yield client


def upload(client: openai.OpenAI, rows: int = 4) -> str:
    return client.files.create(
        file=("rows.jsonl", jsonl(arithmetic_rows(rows))), purpose="fine-tune"
    ).id


def create(client: openai.OpenAI, training_file: str, **extra: Any) -> Any:
    return client.fine_tuning.jobs.create(
        model=extra.pop("model", "tiny"),
        training_file=training_file,
        method=REINFORCEMENT,  # type: ignore[arg-type]
        **extra,
    )


def refused(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    return caught.value


# --- resources a job names ----------------------------------------------------------------------


def test_another_projects_file_is_unknown(alpha: openai.OpenAI, beta: openai.OpenAI) -> None:
    theirs = upload(alpha)
    mine = upload(beta)
    for field in ("training_file", "validation_file"):
        files = {"training_file": mine, field: theirs}
        error = refused(lambda f=files: create(beta, **f))  # type: ignore[misc]
        assert error.param == field
        assert "no such file" in error.message
    error = refused(
        lambda: create(
            beta, mine, extra_body={"openrft": {"sft_warmup": {"training_file": theirs}}}
        )
    )
    assert error.param == "openrft.sft_warmup.training_file"


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("validation_file", "/etc/passwd", "openrft.validation_file"),
        ("validation_file", "/dev/zero", "openrft.validation_file"),
        ("sft_warmup", {"training_file": "/etc/hostname"}, "openrft.sft_warmup.training_file"),
        ("model", "/root", "model"),
        ("accelerate_config", "/etc/passwd", "openrft.accelerate_config"),
        ("output_dir", "/tmp/elsewhere", "openrft.output_dir"),
    ],
)
def test_server_paths_are_refused(beta: openai.OpenAI, field: str, value: Any, param: str) -> None:
    error = refused(lambda: create(beta, upload(beta), extra_body={"openrft": {field: value}}))
    assert error.param == param, error.message


def test_models_are_registered_ones_or_the_projects_own(
    server: Server, alpha: openai.OpenAI, beta: openai.OpenAI
) -> None:
    train = upload(beta)
    for model in ("HuggingFaceTB/SmolLM2-360M", "/models/tiny", "../tiny"):
        error = refused(lambda m=model: create(beta, train, model=m))  # type: ignore[misc]
        assert error.param == "model"
        assert "unknown model" in error.message
    # alpha's fine-tuned model, and its checkpoint, are unknown to beta but usable by alpha
    job = create(alpha, upload(alpha))
    checkpoint = server.data_dir / "jobs" / job.id / "checkpoints" / "checkpoint-3"
    ft = f"ft:tiny::{job.id.removeprefix('ftjob-')}"
    _finish_with_checkpoint(server, job.id, ft, checkpoint)
    for model in (ft, f"{ft}:ckpt-step-3"):
        error = refused(lambda m=model: create(beta, train, model=m))  # type: ignore[misc]
        assert error.param == "model"
        own = create(alpha, upload(alpha), model=model)
        assert _stored_config(server, own.id)["model"] == str(checkpoint)


def test_accelerate_configs_are_chosen_by_name(server: Server, beta: openai.OpenAI) -> None:
    offered = server.data_dir / "accelerate"
    offered.mkdir(exist_ok=True)
    (offered / "zero2.yaml").write_text("distributed_type: DEEPSPEED\n")
    job = create(beta, upload(beta), extra_body={"openrft": {"accelerate_config": "zero2"}})
    assert _stored_config(server, job.id)["accelerate_config"] == str(offered / "zero2.yaml")
    error = refused(
        lambda: create(beta, upload(beta), extra_body={"openrft": {"accelerate_config": "zero3"}})
    )
    assert "zero2" in error.message  # says what is offered


def _finish_with_checkpoint(server: Server, job_id: str, model: str, path: Path) -> None:
    store = server.store()
    try:
        store.set_job(job_id, status="succeeded", fine_tuned_model=model, finished_at=now())
        store.sync_checkpoints(
            job_id,
            [
                {
                    "name": path.name,
                    "step": 3,
                    "metrics": {},
                    "model": f"{model}:ckpt-step-3",
                    "path": str(path),
                }
            ],
        )
    finally:
        store.engine.dispose()


def _stored_config(server: Server, job_id: str) -> dict[str, Any]:
    store = server.store()
    try:
        row = store.job(job_id)
        assert row is not None
        return dict(row["config"])
    finally:
        store.engine.dispose()


# --- absurd settings and quotas -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"n_epochs": 10**9}, "openrft.n_epochs"),
        ({"max_steps": 10**12}, "openrft.max_steps"),
        ({"num_processes": 1000, "batch_size": 1000, "num_generations": 2}, "num_processes"),
        ({"learning_rate": "Infinity"}, "openrft.learning_rate"),
        ({"learning_rate": "NaN"}, "openrft.learning_rate"),
        ({"seed": 10**30}, "openrft.seed"),
    ],
)
def test_absurd_settings_are_clear_errors(
    beta: openai.OpenAI, overrides: dict[str, Any], param: str | None
) -> None:
    error = refused(lambda: create(beta, upload(beta), extra_body={"openrft": overrides}))
    assert error.status_code == 400
    if param is not None:
        assert param in (error.param or "") or param.removeprefix("openrft.") in error.message


def test_seed_over_the_top_in_the_body_is_a_400(beta: openai.OpenAI) -> None:
    error = refused(lambda: create(beta, upload(beta), seed=10**30))
    assert error.param == "seed"


def test_quotas_bound_each_job_and_the_active_jobs(
    server: Server, request: pytest.FixtureRequest
) -> None:
    client = server.client("quota")
    request.addfinalizer(client.close)
    store = server.store()
    try:
        tenancy.set_quota(store, "quota", max_active_jobs=2, max_job_steps=10, max_job_epochs=3)
    finally:
        store.engine.dispose()
    train = upload(client)
    error = refused(lambda: create(client, train, extra_body={"openrft": {"max_steps": 11}}))
    assert "limit of 10" in error.message
    error = refused(lambda: create(client, train, extra_body={"openrft": {"n_epochs": 4}}))
    assert "limit of 3" in error.message
    # a plan computed from the rows (40 rows / batch 1 × 1 epoch = 40 steps) fails validation
    many = upload(client, rows=40)
    planned = create(client, many, extra_body={"openrft": {"batch_size": 1, "num_generations": 2}})
    failed = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(planned.id)).error and j)
    assert failed.status == "failed"
    assert failed.error.code == "quota_exceeded"
    paused = create(client, train, extra_body={"openrft": {"max_steps": 5}})
    wait_for(lambda: client.fine_tuning.jobs.retrieve(paused.id).status == "queued")
    client.fine_tuning.jobs.pause(paused.id)  # a paused job is not active
    for _ in range(2):
        create(client, train, extra_body={"openrft": {"max_steps": 5}})
    with pytest.raises(openai.RateLimitError) as caught:
        create(client, train, extra_body={"openrft": {"max_steps": 5}})
    assert caught.value.code == "quota_exceeded"


def test_a_projects_files_stay_within_its_storage_quota(
    server: Server, request: pytest.FixtureRequest
) -> None:
    client = server.client("storage")
    request.addfinalizer(client.close)
    one = jsonl(arithmetic_rows(20))
    store = server.store()
    try:
        tenancy.set_quota(store, "storage", max_project_bytes=len(one) + 100)
    finally:
        store.engine.dispose()
    first = client.files.create(file=("a.jsonl", one), purpose="fine-tune")
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("b.jsonl", one), purpose="fine-tune")
    assert caught.value.status_code == 413
    assert "storage quota" in caught.value.message
    assert len(list((server.data_dir / "files").glob("*.jsonl"))) == len(_all_files(server))
    rest = b"{}\n" * 33 + b"\n"  # exactly the 100 bytes left
    client.files.create(file=("c.jsonl", rest), purpose="fine-tune")
    with pytest.raises(openai.RateLimitError) as full:
        client.files.create(file=("d.jsonl", one), purpose="fine-tune")
    assert full.value.code == "quota_exceeded"
    client.files.delete(first.id)  # deleting makes room again
    client.files.create(file=("e.jsonl", one), purpose="fine-tune")


def _all_files(server: Server) -> list[Any]:
    store = server.store()
    try:
        return store.all(files.select())
    finally:
        store.engine.dispose()


def test_a_huge_json_body_is_refused_before_it_is_read(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.key('beta')}"}
    url = f"{server.base_url}/fine_tuning/jobs"

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "tiny", "training_file": "'
        for _ in range(40):
            yield b"x" * (1 << 20)

    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # headers, no body
        head = "POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\n"
        head += f"Authorization: {headers['Authorization']}\r\nContent-Length: {17 << 20}"
        sock.sendall(f"{head}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    with httpx.Client(timeout=60) as http:
        try:
            streamed = http.post(url, headers=headers, content=chunks())
        except httpx.HTTPError:  # the server may close the connection before reading the rest
            pass
        else:
            assert streamed.status_code == 413
            assert streamed.json()["error"]["code"] == "request_too_large"
    assert httpx.get(f"{server.base_url.removesuffix('/v1')}/health").status_code == 200


# --- secrets ------------------------------------------------------------------------------------


def test_secrets_route_is_per_project_and_never_returns_values(server: Server) -> None:
    def call(project: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {server.key(project)}"}
        return httpx.request(method, f"{server.base_url}/secrets{path}", headers=headers, **kw)

    made = call("alpha", "PUT", "/GRADER_TOKEN", json={"value": "tok-alpha"})
    assert made.status_code == 200, made.text
    assert "tok-alpha" not in made.text
    listed = call("alpha", "GET", "")
    assert [s["name"] for s in listed.json()["data"]] == ["GRADER_TOKEN"]
    assert "tok-alpha" not in listed.text
    assert call("beta", "GET", "").json()["data"] == []
    assert call("beta", "DELETE", "/GRADER_TOKEN").status_code == 404
    bad = call("alpha", "PUT", "/not-a-name", json={"value": "x"})
    assert bad.status_code == 400
    assert "not a secret name" in bad.json()["error"]["message"]
    assert call("alpha", "DELETE", "/GRADER_TOKEN").status_code == 200
    assert call("alpha", "GET", "").json()["data"] == []


def test_training_gets_a_minimal_environment_and_only_its_projects_secrets(
    server: Server, request: pytest.FixtureRequest
) -> None:
    store = server.store()
    try:
        tenancy.set_secret(store, "envcheck", "TOKEN", "envcheck-secret")
        tenancy.set_secret(store, "other", "TOKEN", "other-secret")
    finally:
        store.engine.dispose()
    client = server.client("envcheck")
    request.addfinalizer(client.close)
    job = create(client, upload(client))
    server.start_worker(OPENAI_API_KEY="sk-operator-secret")
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "succeeded")
    env = json.loads((server.data_dir / "jobs" / job.id / "env.json").read_text())
    assert "OPENAI_API_KEY" not in env
    assert "sk-operator-secret" not in json.dumps(env)
    assert "other-secret" not in json.dumps(env)
    context = json.loads(env["OPENRFT_GRADE_CONTEXT"])
    assert context["owner"] == "project:envcheck"
    assert context["secrets"] == {"TOKEN": "envcheck-secret"}
    assert context["outbound"] == []  # restricted: nothing allow-listed on this server


# --- files at rest ------------------------------------------------------------------------------


def test_data_dir_database_and_uploads_are_private(server: Server, alpha: openai.OpenAI) -> None:
    upload(alpha)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(server.data_dir) == 0o700
    assert mode(server.data_dir / "files") == 0o700
    assert mode(server.data_dir / "openrft.db") == 0o600
    assert {mode(p) for p in (server.data_dir / "files").iterdir()} == {0o600}


# --- validation never stalls the server -----------------------------------------------------------


def test_a_device_as_dataset_fails_its_job_and_never_blocks_start_up(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A single-user server (server paths allowed) given `/dev/zero`: the job fails with a
    reason, and a job left `validating_files` on it by a crash does not stop the next start."""
    data = tmp_path / "data"
    first = Server(data, OPENRFT_AUTH="false")
    try:
        client = openai.OpenAI(base_url=first.base_url, api_key="-", max_retries=0)
        request.addfinalizer(client.close)
        train = upload(client)
        job = create(client, train, validation_file="/dev/zero", model="smollm2-135m-instruct")
        done = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).error and j)
        assert done.error.code == "invalid_validation_file"
        assert "not a regular file" in done.error.message
        store = first.store()
        try:  # as if the API process had died mid-validation
            store.set_job(job.id, status="validating_files", error=None)
        finally:
            store.engine.dispose()
    finally:
        first.stop()
    second = Server(data, OPENRFT_AUTH="false")  # waits for /health: start-up completed
    try:
        client = openai.OpenAI(base_url=second.base_url, api_key="-", max_retries=0)
        request.addfinalizer(client.close)
        wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "failed")
    finally:
        second.stop()
