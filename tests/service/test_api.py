"""The API without training: files, graders, jobs' bookkeeping, auth and every error path,
driven through a real `openrft serve` with the official `openai` SDK (no worker running)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.service.conftest import EXACT, MULTI, PYTHON, Server, arithmetic_rows, jsonl, wait_for
from typer.testing import CliRunner

from openrft.cli import jobs as jobs_cli
from openrft.service.settings import Settings
from openrft.service.store import Store

LIMIT = 50_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("api") / "data",
        OPENRFT_MAX_FILE_BYTES=str(LIMIT),
        OPENRFT_MAX_ACTIVE_JOBS="1000",  # these jobs stay queued: no worker runs here
    )
    for name in ("tiny-test-model", "m"):  # validation never loads them
        running.register_model(name, f"/models/{name}")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[openai.OpenAI]:
    with server.client("alpha") as alpha:  # closed, not left to the GC (ResourceWarning)
        yield alpha


@pytest.fixture(scope="module")
def train_file(client: openai.OpenAI) -> str:
    uploaded = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(8))), purpose="fine-tune"
    )
    return uploaded.id


def rl_job(
    client: openai.OpenAI, train_file: str, **extra: object
) -> openai.types.fine_tuning.FineTuningJob:
    return client.fine_tuning.jobs.create(
        model="tiny-test-model",
        training_file=train_file,
        method={"type": "reinforcement", "reinforcement": {"grader": MULTI}},
        **extra,  # type: ignore[arg-type]
    )


def settled(client: openai.OpenAI, job_id: str) -> str:
    """Wait until validation is over; return the status."""
    return str(
        wait_for(
            lambda: (
                (s := client.fine_tuning.jobs.retrieve(job_id).status) != "validating_files" and s
            ),
        )
    )


# --- files --------------------------------------------------------------------------------------


def test_upload_list_retrieve_download_delete(client: openai.OpenAI) -> None:
    data = jsonl(arithmetic_rows(3))
    uploaded = client.files.create(file=("rows.jsonl", data), purpose="reinforcement-fine-tune")
    assert (uploaded.object, uploaded.bytes, uploaded.filename) == ("file", len(data), "rows.jsonl")
    assert uploaded.purpose == "reinforcement-fine-tune"
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.retrieve(uploaded.id).bytes == len(data)
    assert client.files.content(uploaded.id).read() == data
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe{}\n", "line 1: not UTF-8"),
        (b'{"a": 1}\n[1, 2]\nnot json\n', "line 2: expected a JSON object"),
        (b"", "the file is empty"),
    ],
)
def test_bad_file_is_refused_with_line_numbers(
    client: openai.OpenAI, content: bytes, expected: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("bad.jsonl", content), purpose="fine-tune")
    assert expected in caught.value.message
    assert caught.value.code == "invalid_file_format"
    assert caught.value.param == "file"


def test_non_json_line_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("bad.jsonl", b'{"a": 1}\nnot json\n'), purpose="fine-tune")
    assert "line 2: invalid JSON" in caught.value.message


def test_file_size_limit_and_purpose(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(
            file=("big.jsonl", b'{"a": 1}\n' * (LIMIT // 9 + 1)), purpose="fine-tune"
        )
    assert caught.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch")
    assert caught.value.param == "purpose"


# --- graders ------------------------------------------------------------------------------------


def test_run_grader_matches_the_engine(client: openai.OpenAI) -> None:
    from openrft.graders import grade, load_grader

    response = client.fine_tuning.alpha.graders.run(
        grader=MULTI,  # type: ignore[arg-type]
        model_sample="the answer is 4",
        item={"reference_answer": "4"},
    )
    expected = grade(load_grader(MULTI), "the answer is 4", {"reference_answer": "4"})
    assert response.reward == expected.reward == 0.5
    assert response.metadata.name == "answer"
    assert response.sub_rewards == expected.sub_rewards


def test_validate_grader_normalizes(client: openai.OpenAI) -> None:
    response = client.fine_tuning.alpha.graders.validate(grader={**EXACT, "operation": "neq"})  # type: ignore[arg-type]
    assert response.grader.operation == "ne"  # type: ignore[union-attr]


def test_bad_grader_is_400_with_its_path(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.alpha.graders.validate(grader={**EXACT, "operation": "equals"})  # type: ignore[arg-type]
    assert caught.value.param == "operation"
    assert "operation" in caught.value.message


# --- jobs ---------------------------------------------------------------------------------------


def test_job_lifecycle_without_a_worker(client: openai.OpenAI, train_file: str) -> None:
    job = rl_job(client, train_file, metadata={"team": "red"}, suffix="demo", seed=7)
    assert (job.object, job.status, job.seed, job.organization_id) == (
        "fine_tuning.job",
        "validating_files",
        7,
        "alpha",
    )
    assert settled(client, job.id) == "queued"
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(job.id)
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert messages[0] == "Job cancelled"
    assert messages[-1].startswith("Created fine-tuning job")


def test_list_jobs_by_metadata_and_pages(client: openai.OpenAI, train_file: str) -> None:
    made = [
        rl_job(client, train_file, metadata={"batch": "pages", "n": str(i)}).id for i in range(3)
    ]
    first = client.fine_tuning.jobs.list(limit=2, metadata={"batch": "pages"})
    assert [j.id for j in first.data] == made[::-1][:2]
    assert first.has_more
    everything = [j.id for j in client.fine_tuning.jobs.list(limit=2, metadata={"batch": "pages"})]
    assert everything == made[::-1]  # the SDK followed `after` to the last page
    one = client.fine_tuning.jobs.list(metadata={"batch": "pages", "n": "1"})
    assert [j.id for j in one.data] == [made[1]]


def test_dataset_missing_grader_field_fails_validation(client: openai.OpenAI) -> None:
    rows = [{"messages": [{"role": "user", "content": "hi"}]}] * 2
    data = client.files.create(file=("no_ref.jsonl", jsonl(rows)), purpose="fine-tune")
    job = rl_job(client, data.id)
    assert settled(client, job.id) == "failed"
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.error is not None
    assert failed.error.param == "training_file"
    assert failed.error.code == "invalid_training_file"
    assert "reference_answer" in failed.error.message


def test_create_errors(client: openai.OpenAI, train_file: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        rl_job(client, "file-unknown")
    assert caught.value.param == "training_file"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model="m",
            training_file=train_file,
            method={
                "type": "reinforcement",
                "reinforcement": {"grader": {**EXACT, "operation": "x"}},
            },
        )
    assert caught.value.param is not None
    assert "grader" in caught.value.param
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="m", training_file=train_file, method={"type": "dpo"})


def test_unknown_ids_are_404(client: openai.OpenAI) -> None:
    for call in (
        lambda: client.fine_tuning.jobs.retrieve("ftjob-nope"),
        lambda: client.fine_tuning.jobs.cancel("ftjob-nope"),
        lambda: client.fine_tuning.jobs.list_events("ftjob-nope"),
        lambda: client.fine_tuning.jobs.checkpoints.list("ftjob-nope"),
        lambda: client.files.retrieve("file-nope"),
        lambda: client.models.retrieve("nope"),
    ):
        with pytest.raises(openai.NotFoundError):
            call()


# --- auth ---------------------------------------------------------------------------------------


def test_other_projects_objects_are_not_found(
    server: Server, client: openai.OpenAI, train_file: str
) -> None:
    job = rl_job(client, train_file)
    other = server.client("beta")
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.list_events(job.id)
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(train_file)
    with pytest.raises(openai.BadRequestError):
        rl_job(other, train_file)  # cannot train on another project's file
    assert job.id not in [j.id for j in other.fine_tuning.jobs.list()]
    assert train_file not in [f.id for f in other.files.list()]


def test_missing_or_wrong_key_is_401(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/fine_tuning/jobs")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    wrong = openai.OpenAI(base_url=server.base_url, api_key="ork-0000-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.files.list()


def test_keys_create_cli_prints_key_last(server: Server) -> None:
    command = [PYTHON, "-m", "openrft.cli.serve", "keys", "create", "--project", "gamma"]
    done = subprocess.run(
        [*command, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("ork-")
    gamma = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    assert gamma.files.list().data == []


# --- models, health, docs ----------------------------------------------------------------------


def test_models_health_and_docs(server: Server, client: openai.OpenAI, train_file: str) -> None:
    rl_job(client, train_file)
    ids = [m.id for m in client.models.list()]
    assert "smollm2-135m-instruct" in ids
    assert "tiny-test-model" in ids
    root = server.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/health").json()["status"] == "ok"
    assert httpx.get(f"{root}/docs").status_code == 200
    paths = httpx.get(f"{root}/openapi.json").json()["paths"]
    assert "/v1/fine_tuning/jobs/{job_id}/checkpoints" in paths


def test_no_auth_mode(tmp_path: Path) -> None:
    server = Server(tmp_path / "open", OPENRFT_AUTH="false")
    try:
        anyone = openai.OpenAI(base_url=server.base_url, api_key="anything", max_retries=0)
        uploaded = anyone.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
        assert anyone.files.retrieve(uploaded.id).id == uploaded.id
    finally:
        server.stop()


def test_wandb_integration_reaches_the_training_config(
    server: Server, client: openai.OpenAI, train_file: str
) -> None:
    wandb = [{"type": "wandb", "wandb": {"project": "rft", "tags": ["a"]}}]
    job = rl_job(client, train_file, integrations=wandb)
    assert job.integrations is not None
    assert job.integrations[0].wandb.project == "rft"
    store = Store.open(Settings(data_dir=server.data_dir).url)
    try:
        assert store.job(job.id)["config"]["report_to"] == ["wandb"]  # type: ignore[index]
    finally:
        store.engine.dispose()


def test_jobs_cli_over_http(server: Server, tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(arithmetic_rows(4)))
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(MULTI))
    auth = ["--base-url", server.base_url, "--api-key", server.key("cli")]
    made = runner.invoke(
        jobs_cli.app,
        ["create", "--model", "m", "--training-file", str(data), "--grader", str(grader), *auth],
    )
    assert made.exit_code == 0, made.output
    job_id = json.loads(made.stdout)["id"]
    listed = runner.invoke(jobs_cli.app, ["list", *auth])
    assert job_id in listed.stdout
    assert runner.invoke(jobs_cli.app, ["cancel", job_id, *auth]).exit_code == 0
    followed = runner.invoke(jobs_cli.app, ["events", job_id, "--follow", *auth])
    assert followed.exit_code == 0, followed.output
    assert "Job cancelled" in followed.stdout
    assert f"{job_id}: cancelled" in followed.stdout
    missing = runner.invoke(jobs_cli.app, ["get", "ftjob-nope", *auth])
    assert missing.exit_code == 5  # EXIT_API: the API refused the request
    assert "No such fine-tuning job" in missing.output


def test_serve_stops_its_workers(tmp_path: Path) -> None:
    server = Server(tmp_path / "with-worker", workers=1)
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1
    server.stop()
    wait_for(lambda: not running(int(children[0])))


def running(pid: int) -> bool:
    """Alive and not a zombie (orphans may wait a while for init to reap them)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_server_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    server = Server(tmp_path / "pg", OPENRFT_DATABASE_URL=postgres_url)
    try:
        server.register_model("tiny-test-model", "/models/tiny")
        with server.client("pg") as client:  # closed here, not by the GC (ResourceWarning)
            uploaded = client.files.create(
                file=("t.jsonl", jsonl(arithmetic_rows(4))), purpose="fine-tune"
            )
            job = rl_job(client, uploaded.id, metadata={"db": "pg"})
            assert settled(client, job.id) == "queued"
            listed = client.fine_tuning.jobs.list(metadata={"db": "pg"})
            assert [j.id for j in listed] == [job.id]
        assert not (tmp_path / "pg" / "openrft.db").exists()  # the state is in PostgreSQL
    finally:
        server.stop()
