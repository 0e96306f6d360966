"""SeekrFlow's API on a real `openrft serve`, driven by the real `seekrai` SDK (0.35.1, in its
own venv `.venv-seekrai`, which `make install` builds: the SDK pins httpx and typer versions
OpenRFT outgrew): files, projects, fine-tunes from the reinforcement-tuning guide's
`TrainingConfig` examples, events, cancel, placement, one job through both APIs, a tiny model
trained to completion, promote / deploy, and chat with the result."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.service.conftest import Server, jsonl, wait_for

pytestmark = pytest.mark.slow

SEEKRAI_PYTHON = Path(__file__).parents[2] / ".venv-seekrai" / "bin" / "python"

PRELUDE = """
import json, sys
from seekrai import SeekrFlow
from seekrai import error as errors
from seekrai.types import InfrastructureConfig, TrainingConfig
from seekrai.types.finetune import (
    FineTuneType, Grader, GraderType, LoRAConfig, RewardComponents, StringOperation,
    TextSimilarityOperation,
)

args = json.loads(sys.stdin.read())
client = SeekrFlow(base_url=args["base_url"], api_key=args["key"], max_retries=0, timeout=60)


def dump(obj):
    if isinstance(obj, list):
        return [dump(o) for o in obj]
    return json.loads(obj.model_dump_json()) if hasattr(obj, "model_dump_json") else obj


def refused(call):
    try:
        call()
    except errors.SeekrFlowException as exc:
        return {"class": type(exc).__name__, "status": exc.http_status, "message": str(exc)}
    raise AssertionError("the call was not refused")


result = None
"""

SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think><answer> answer here </answer>"
)
"""The system prompt of SeekrFlow's reinforcement-tuning guide."""


def guide_rows(n: int) -> list[dict[str, Any]]:
    """Rows in the guide's format: its system prompt, a question, `reference_answer`."""
    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"What is {i} + {i % 3}?"},
            ],
            "reference_answer": str(i + i % 3),
        }
        for i in range(n)
    ]


TINY = {
    "num_generations": 2,
    "max_steps": 2,
    "max_completion_length": 6,
    "eval_interval": None,
    "eval_samples": 2,
    "keep_best_k": 2,
    # a random model earns (almost) no reward: the pre-flight would refuse the job
    "preflight": {"enabled": False},
}
"""Native settings (the `openrft` extension) that keep the tiny model's steps short."""


def sdk(server: Server, key: str, code: str, **values: Any) -> Any:
    """Run `code` with the real seekrai SDK against `server` (as `key`): `client` is a
    `SeekrFlow`, `args` holds `values`, and what the code sets `result` to comes back."""
    assert SEEKRAI_PYTHON.exists(), "the seekrai venv is missing: run `make install`"
    script = PRELUDE + textwrap.dedent(code) + '\nprint("RESULT " + json.dumps(result))\n'
    payload = {"base_url": f"http://127.0.0.1:{server.port}/", "key": key, **values}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKR_")}
    proc = subprocess.run(
        [str(SEEKRAI_PYTHON), "-c", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env={**env, "TQDM_DISABLE": "1"},
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    from openrft.training.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny"))


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, tiny: str) -> Iterator[Server]:
    """A server with no workers (jobs stay queued) and the tiny model registered."""
    server = Server(tmp_path_factory.mktemp("flow-idle") / "data", workers=0)
    try:
        server.register_model("tiny", tiny)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def key(idle: Server) -> str:
    return idle.key("alpha")


@pytest.fixture(scope="module")
def train_file(idle: Server, key: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rows") / "math.jsonl"
    path.write_bytes(jsonl(guide_rows(8)))
    found = sdk(
        idle,
        key,
        """
        result = dump(client.files.upload(args["path"], purpose="reinforcement-fine-tune"))
        """,
        path=str(path),
    )
    return str(found["id"])


def test_files_upload_list_retrieve_rename_content_delete(
    idle: Server, key: str, tmp_path: Path
) -> None:
    path = tmp_path / "math.jsonl"
    path.write_bytes(jsonl(guide_rows(3)))
    found = sdk(
        idle,
        key,
        """
        made = client.files.upload(args["path"], purpose="reinforcement-fine-tune")
        listed = client.files.list(purpose="reinforcement-fine-tune", sort_by="filename")
        renamed = client.files.rename(made.id, "renamed.jsonl")
        content = client.files.retrieve_content(made.id, output=args["out"])
        result = {
            "made": dump(made),
            "listed": [f.id for f in listed.data],
            "retrieved": dump(client.files.retrieve(made.id)),
            "renamed": dump(renamed),
            "content": dump(content),
            "deleted": dump(client.files.delete(made.id)),
            "gone": refused(lambda: client.files.retrieve(made.id)),
        }
        """,
        path=str(path),
        out=str(tmp_path / "back.jsonl"),
    )
    made = found["made"]
    assert made["id"].startswith("file-")
    assert made["object"] == "file"
    assert made["purpose"] == "reinforcement-fine-tune"
    assert made["filename"] == "math.jsonl"
    assert made["bytes"] == path.stat().st_size
    assert made["type"] == "jsonl"
    assert made["id"] in found["listed"]
    assert found["retrieved"]["id"] == made["id"]
    assert found["renamed"]["filename"] == "renamed.jsonl"
    assert (tmp_path / "back.jsonl").read_bytes() == path.read_bytes()
    assert found["content"]["size"] == path.stat().st_size
    assert found["deleted"] == {"id": made["id"], "object": "file", "deleted": True}
    gone = found["gone"]
    assert gone["class"] == "InvalidRequestError"
    assert gone["status"] == 404
    assert "No such file" in gone["message"]


def test_bulk_upload_keeps_all_or_none(idle: Server, key: str, tmp_path: Path) -> None:
    good, other, bad = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "bad.jsonl"
    good.write_bytes(jsonl(guide_rows(2)))
    other.write_bytes(jsonl(guide_rows(3)))
    bad.write_text('{"messages": []}\nnot json\n')
    before = _file_count(idle)
    found = sdk(
        idle,
        key,
        """
        made = client.files.bulk_upload(args["good"], purpose="fine-tune")
        result = {
            "made": dump(made),
            "refused": refused(lambda: client.files.bulk_upload(args["bad"], purpose="fine-tune")),
        }
        """,
        good=[str(good), str(other)],
        bad=[str(good), str(bad)],
    )
    assert [f["filename"] for f in found["made"]] == ["a.jsonl", "b.jsonl"]
    assert {f["purpose"] for f in found["made"]} == {"fine-tune"}
    refused = found["refused"]
    assert refused["status"] == 400
    assert "'bad.jsonl'" in refused["message"]
    assert "line 2: invalid JSON" in refused["message"]
    assert _file_count(idle) == before + 2  # the refused pair left nothing behind
    assert len(list((idle.data_dir / "files").iterdir())) == before + 2
    # the single upload takes one file part
    two = [("files", ("a.jsonl", good.read_bytes())), ("files", ("b.jsonl", other.read_bytes()))]
    answer = httpx.put(
        f"http://127.0.0.1:{idle.port}/v1/flow/files",
        data={"purpose": "fine-tune"},
        files=two,
        headers={"Authorization": key},
    )
    assert answer.status_code == 400
    assert answer.json()["detail"] == "Send one `files` part, not several"
    assert _file_count(idle) == before + 2


def _file_count(server: Server) -> int:
    from openrft.service.store import files

    store = server.store()
    try:
        return store.count(files)
    finally:
        store.engine.dispose()


def test_purposes_openrft_cannot_train_with_are_refused_with_the_reason(
    idle: Server, key: str, tmp_path: Path
) -> None:
    path = tmp_path / "pref.jsonl"
    path.write_bytes(jsonl(guide_rows(1)))
    found = sdk(
        idle,
        key,
        """
        result = {
            "upload": refused(
                lambda: client.files.upload(args["path"], purpose="preference-fine-tune")
            ),
            "ok": dump(client.files.validate_align_file_metadata("fine-tune", "jsonl", 10)),
            "bad": dump(client.files.validate_align_file_metadata("alignment", "pdf", 0)),
        }
        """,
        path=str(path),
    )
    assert found["upload"]["status"] == 400
    assert "'preference-fine-tune' is not supported" in found["upload"]["message"]
    assert found["ok"] == {"is_valid": True, "errors": None}
    assert not found["bad"]["is_valid"]
    assert "'alignment' is not supported" in found["bad"]["errors"]
    assert "JSONL" in found["bad"]["errors"]
    assert "empty" in found["bad"]["errors"]


GUIDE_CONFIGS = """
common = dict(
    training_files=[args["file"]], model="tiny", n_epochs=1, n_checkpoints=1, batch_size=4,
    learning_rate=1e-6, openrft=args["tiny"],
)
configs = {
    # the guide's first example: math accuracy alone (the format reward takes its default 0.1)
    "math": TrainingConfig(
        **common, experiment_name="helperbot_grpo_v1", fine_tune_type=FineTuneType.GRPO,
        reward_components=RewardComponents(graders=[Grader(type=GraderType.MATH_ACCURACY)]),
    ),
    # weighted graders: string check and text similarity, weights rescaled to 0.9
    "weighted": TrainingConfig(
        **common, fine_tune_type=FineTuneType.REINFORCEMENT,
        reward_components=RewardComponents(graders=[
            Grader(type=GraderType.STRING_CHECK, operation=StringOperation.EQUALS, weight=0.6),
            Grader(type=GraderType.TEXT_SIMILARITY, operation=TextSimilarityOperation.BLEU,
                   weight=0.4),
        ]),
    ),
    # an explicit format_reward_weight, with weights summing to 1.0 with it
    "format": TrainingConfig(
        **common, fine_tune_type=FineTuneType.REINFORCEMENT,
        reward_components=RewardComponents(format_reward_weight=0.2, graders=[
            Grader(type=GraderType.MATH_ACCURACY, weight=0.5),
            Grader(type=GraderType.STRING_CHECK, operation=StringOperation.CONTAINS, weight=0.3),
        ]),
    ),
    # LoRA
    "lora": TrainingConfig(
        **common, fine_tune_type=FineTuneType.REINFORCEMENT,
        lora_config=LoRAConfig(r=8, alpha=16, dropout=0.05),
    ),
}
"""


def test_the_guides_training_configs_create_jobs_visible_through_both_apis(
    idle: Server, key: str, train_file: str
) -> None:
    found = sdk(
        idle,
        key,
        GUIDE_CONFIGS
        + textwrap.dedent("""
        project = client.projects.create(name="helperbot", description="the guide's examples")
        infra = InfrastructureConfig(accel_type="H100", n_accel=2)
        made = {
            name: client.fine_tuning.create(
                project_id=project.id, training_config=config, infrastructure_config=infra
            )
            for name, config in configs.items()
        }
        result = {
            "project": dump(client.projects.retrieve(project.id)),
            "projects": dump(client.projects.list()),
            "made": {name: dump(job) for name, job in made.items()},
            "listed": [job.id for job in client.fine_tuning.list().data],
            "events": dump(client.fine_tuning.list_events(made["math"].id)),
            "retrieved": dump(client.fine_tuning.retrieve(made["lora"].id)),
            "cancelled": dump(client.fine_tuning.cancel(made["weighted"].id)),
            "again": refused(lambda: client.fine_tuning.cancel(made["weighted"].id)),
        }
        """),
        file=train_file,
        tiny=TINY,
    )
    made = found["made"]
    for job in made.values():
        assert job["id"].startswith("ft-")
        assert job["openai_id"] == "ftjob-" + job["id"][3:]
        assert job["status"] in ("pending", "queued")
        assert job["model"] == "tiny"
        assert job["training_files"] == [train_file]
        assert job["project_id"] == found["project"]["id"]
        assert (job["accel_type"], job["n_accel"], job["n_node"]) == ("H100", 2, 1)
        assert job["placement"] == {"processes": 1, "device": "CPU", "accelerators": 0, "nodes": 1}
        assert job["id"] in found["listed"]
    (listed,) = [p for p in found["projects"]["data"] if p["id"] == found["project"]["id"]]
    assert listed["name"] == "helperbot"
    assert listed["runs"] == 4
    assert listed["runs_deployed"] == 0
    math = made["math"]
    assert math["fine_tune_type"] == "GRPO"
    assert math["experiment_name"] == "helperbot_grpo_v1"
    assert math["reward_components"]["format_reward_weight"] == pytest.approx(0.1)
    assert [g["weight"] for g in math["reward_components"]["graders"]] == [pytest.approx(0.9)]
    weights = [g["weight"] for g in made["weighted"]["reward_components"]["graders"]]
    assert weights == [pytest.approx(0.54), pytest.approx(0.36)]
    assert made["format"]["reward_components"]["format_reward_weight"] == pytest.approx(0.2)
    lora = found["retrieved"]
    assert lora["lora_config"]["r"] == 8
    assert lora["lora_config"]["alpha"] == 16
    # SeekrFlow's default reward for REINFORCEMENT without reward_components
    assert [g["type"] for g in lora["reward_components"]["graders"]] == ["math_accuracy"]
    assert found["cancelled"]["status"] == "cancelled"
    assert found["again"]["class"] == "ConflictError"
    assert found["again"]["status"] == 409

    events = found["events"]["data"]
    assert events[0]["message"].startswith("Placement: asked for 2 × H100 on 1 node(s); ")
    assert "running on 1 process on the CPU" in events[0]["message"]
    assert events[0]["level"] == "Warning"
    assert events[0]["type"] == "JOB_PENDING"
    assert events[1]["message"].startswith("Created fine-tuning job")
    assert events[0]["object"] == "fine-tune-event"

    # the same job through OpenAI's API: its `ftjob-` id, one set of events
    with idle.client(key=key) as openai_client:
        job = openai_client.fine_tuning.jobs.retrieve(math["openai_id"])
        assert job.seekrflow_id == math["id"]  # type: ignore[attr-defined]
        messages = [e.message for e in openai_client.fine_tuning.jobs.list_events(job.id)]
    assert messages[::-1][:2] == [e["message"] for e in events[:2]]
    # ... whose stored config trains what SeekrFlow asked for
    store = idle.store()
    try:
        config = (store.job(math["openai_id"]) or {})["config"]
    finally:
        store.engine.dispose()
    assert config["method"] == "reinforcement"
    assert config["num_processes"] == 1
    assert config["lora"] is None  # no lora_config: SeekrFlow trains every weight
    assert config["eval_interval"] is None  # the `openrft` extension's null is kept
    assert config["batch_size"] == 4
    assert config["learning_rate"] == 1e-6


def test_bad_requests_are_refused_at_their_place(idle: Server, key: str, train_file: str) -> None:
    found = sdk(
        idle,
        key,
        """
        project = client.projects.create(name="errors", description="bad requests")
        infra = InfrastructureConfig(accel_type="A100", n_accel=1)
        def create(config, project_id=project.id):
            return client.fine_tuning.create(
                project_id=project_id, training_config=config, infrastructure_config=infra)
        good = dict(training_files=[args["file"]], model="tiny", n_epochs=1,
                    fine_tune_type=FineTuneType.REINFORCEMENT)
        result = {
            "project": refused(lambda: create(TrainingConfig(**good), project_id=123456)),
            "file": refused(lambda: create(TrainingConfig(**{**good, "training_files": ["f"]}))),
            "model": refused(lambda: create(TrainingConfig(**{**good, "model": "o4-mini"}))),
            "dpo": refused(lambda: create(
                TrainingConfig(**{**good, "fine_tune_type": FineTuneType.PREFERENCE}))),
            "missing": refused(lambda: client.fine_tuning.retrieve("ft-000000000000000000000000")),
            "key": refused(lambda: SeekrFlow(base_url=args["base_url"], api_key="ork-nope-nope",
                                             max_retries=0).fine_tuning.list()),
        }
        """,
        file=train_file,
    )
    assert found["project"]["status"] == 404
    assert "No such project: 123456" in found["project"]["message"]
    assert "client.projects.create" in found["project"]["message"]
    assert found["file"]["status"] == 400
    assert "$.training_config.training_files" in found["file"]["message"]
    assert found["model"]["status"] == 400
    assert "$.training_config.model" in found["model"]["message"]
    assert "unknown model 'o4-mini'" in found["model"]["message"]
    assert found["dpo"]["status"] == 400
    assert "$.training_config.fine_tune_type" in found["dpo"]["message"]
    assert found["missing"]["status"] == 404
    assert found["key"]["class"] == "AuthenticationError"
    assert found["key"]["status"] == 401
    # the body of an error: FastAPI's `detail` and SeekrFlowErrorResponse's fields
    answer = httpx.get(
        f"http://127.0.0.1:{idle.port}/v1/flow/fine-tunes/ft-0", headers={"Authorization": key}
    )
    body = answer.json()
    unknown = httpx.get(
        f"http://127.0.0.1:{idle.port}/v1/flow/vectordb", headers={"Authorization": key}
    )
    assert unknown.status_code == 404  # SeekrFlow's resources OpenRFT has no counterpart of
    assert unknown.json()["detail"] == "Not Found"
    assert answer.status_code == 404
    assert body["detail"] == body["message"]
    assert body["code"] == "fine_tune_not_found"
    assert body["param"] == "fine_tune_id"


def test_weights_the_sdk_would_refuse_are_refused_by_the_server_too(
    idle: Server, key: str, train_file: str
) -> None:
    """A raw body (not through the SDK's own checks) gets seekrai's weight rules."""
    headers = {"Authorization": key}
    base = f"http://127.0.0.1:{idle.port}/v1/flow"
    project = httpx.post(
        f"{base}/projects", json={"name": "raw bodies", "description": "no SDK"}, headers=headers
    ).json()
    body = {
        "project_id": project["id"],
        "training_config": {
            "training_files": [train_file],
            "model": "tiny",
            "n_epochs": 1,
            "fine_tune_type": "REINFORCEMENT",
            "reward_components": {
                "format_reward_weight": 0.3,
                "graders": [{"type": "math_accuracy", "weight": 0.9}],
            },
        },
        "infrastructure_config": {"accel_type": "H100", "n_accel": 1},
    }
    answer = httpx.post(f"{base}/fine-tune", json=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert "$.training_config.reward_components" in answer.json()["detail"]
    body["infrastructure_config"] = {"accel_type": "TPU", "n_accel": 1}
    answer = httpx.post(f"{base}/fine-tune", json=body, headers=headers)
    assert answer.status_code == 400
    assert "infrastructure_config.accel_type" in answer.text


def test_strict_placement_refuses_what_no_worker_could_run(
    make_server: Any, tiny: str, tmp_path: Path
) -> None:
    server = make_server(OPENRFT_STRICT_PLACEMENT="1", OPENRFT_ACCELERATORS="0")
    server.register_model("tiny", tiny)
    path = tmp_path / "math.jsonl"
    path.write_bytes(jsonl(guide_rows(4)))
    found = sdk(
        server,
        server.key("alpha"),
        """
        project = client.projects.create(name="strict", description="strict placement")
        file = client.files.upload(args["path"], purpose="reinforcement-fine-tune")
        config = TrainingConfig(training_files=[file.id], model="tiny", n_epochs=1,
                                fine_tune_type=FineTuneType.REINFORCEMENT)
        result = refused(lambda: client.fine_tuning.create(
            project_id=project.id, training_config=config,
            infrastructure_config=InfrastructureConfig(accel_type="H100", n_accel=8, n_node=2)))
        """,
        path=str(path),
    )
    assert found["status"] == 400
    assert "$.infrastructure_config.n_node: 2 nodes asked for" in found["message"]
    assert "$.infrastructure_config.n_accel: 8 accelerators asked for" in found["message"]


def test_one_project_cannot_see_anothers(idle: Server, key: str, train_file: str) -> None:
    other = idle.key("beta")
    found = sdk(
        idle,
        other,
        """
        result = {
            "file": refused(lambda: client.files.retrieve(args["file"])),
            "files": [f.id for f in client.files.list().data],
            "jobs": [j.id for j in client.fine_tuning.list().data],
            "projects": dump(client.projects.list()),
        }
        """,
        file=train_file,
    )
    assert found["file"]["status"] == 404
    assert found["files"] == []
    assert found["jobs"] == []
    assert found["projects"] == {"data": []}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny: str) -> Iterator[tuple[Server, str]]:
    """A server with one worker, and a SeekrFlow fine-tune of the tiny model trained to
    completion through the SDK (waited for with `fine_tuning.retrieve`)."""
    root = tmp_path_factory.mktemp("flow-trained")
    server = Server(root / "data", workers=1)
    path = root / "math.jsonl"
    path.write_bytes(jsonl(guide_rows(8)))
    try:
        server.register_model("tiny", tiny)
        key = server.key("alpha")
        found = sdk(
            server,
            key,
            """
            import time
            project = client.projects.create(name="tiny math", description="end to end")
            file = client.files.upload(args["path"], purpose="reinforcement-fine-tune")
            config = TrainingConfig(
                training_files=[file.id], model="tiny", n_epochs=1, n_checkpoints=1,
                batch_size=2, fine_tune_type=FineTuneType.REINFORCEMENT,
                reward_components=RewardComponents(graders=[
                    Grader(type=GraderType.MATH_ACCURACY),
                    Grader(type=GraderType.STRING_CHECK, operation=StringOperation.CONTAINS),
                ]),
                lora_config=LoRAConfig(r=4, alpha=8), openrft=args["tiny"],
            )
            job = client.fine_tuning.create(
                project_id=project.id, training_config=config,
                infrastructure_config=InfrastructureConfig(accel_type="A10", n_accel=1),
            )
            busy = ("pending", "queued", "running")
            while client.fine_tuning.retrieve(job.id).status.value in busy:
                time.sleep(0.5)
            result = job.id
            """,
            path=str(path),
            tiny=TINY,
        )
        yield server, str(found)
    finally:
        server.stop()


def test_a_fine_tune_trains_to_completion_and_its_model_is_served(
    trained: tuple[Server, str],
) -> None:
    server, job_id = trained
    key = server.key("alpha")
    found = sdk(
        server,
        key,
        """
        job_id = args["job"]
        hello = [{"role": "user", "content": "What is 1 + 1?"}]
        def chat(model, **extra):
            reply = client.chat.completions.create(
                model=model, messages=hello, max_tokens=4, temperature=0, **extra)
            return dump(reply)
        before = refused(lambda: chat(job_id))
        promoted = dump(client.fine_tuning.promote(job_id))
        deployed = dump(client.deployments.list())
        answer = chat(job_id)
        chunks = [dump(c) for c in client.chat.completions.create(
            model=job_id, messages=hello, max_tokens=4, temperature=0, stream=True)]
        deployment = client.deployments.list().data[0]
        counted = dump(client.deployments.retrieve(deployment.id))
        by_deployment = chat(deployment.id)
        demoted = dump(client.deployments.demote(deployment.id))
        after = refused(lambda: chat(job_id))
        second = client.deployments.create(
            name="second copy", description="the run again", model_type="Fine-tuned Run",
            model_id=job_id, n_instances=1)
        again = chat(job_id)  # the run's Active deployment serves it
        demoted_events = dump(client.fine_tuning.demote(job_id))
        all_off = [d.status.value for d in client.deployments.list().data]
        refused_again = refused(lambda: chat(second.id))
        base = client.deployments.create(
            name="tiny base", description="the base model", model_type="Base Model",
            model_id="tiny", n_instances=1)
        result = {
            "job": dump(client.fine_tuning.retrieve(job_id)),
            "events": dump(client.fine_tuning.list_events(job_id)),
            "models": dump(client.models.list()),
            "before": before, "promoted": promoted, "deployed": deployed, "answer": answer,
            "chunks": chunks, "counted": counted, "by_deployment": by_deployment,
            "demoted": demoted, "after": after, "base": dump(base),
            "again": again, "demoted_events": demoted_events, "all_off": all_off,
            "refused_again": refused_again,
            "base_answer": chat(base.id),
            "refused_instances": refused(lambda: client.deployments.create(
                name="two copies", description="more than one", model_type="Base Model",
                model_id="tiny", n_instances=2)),
        }
        """,
        job=job_id,
    )
    job = found["job"]
    assert job["status"] == "completed", json.dumps(found["events"], indent=1)
    assert job["openrft_status"] == "succeeded"
    assert job["fine_tuned_model"].startswith("ft:tiny:")
    assert job["completed_at"] is not None
    assert job["inference_available"] is False  # demoted again at the end
    # events: the placement first, each step's loss and reward, and the ending
    events = found["events"]["data"]
    assert events[0]["message"].startswith("Placement: asked for 1 × A10")
    steps = [e for e in events if e["step"] is not None and e["step"] > 0]
    assert [e["step"] for e in steps] == [1, 2]
    assert all(isinstance(e["loss"], float) and isinstance(e["reward"], float) for e in steps)
    assert 0 < steps[0]["epoch"] < steps[1]["epoch"] <= 1  # TRL's fractional epoch
    types = [e["type"] for e in events]
    assert "JOB_START" in types
    assert types.index("TRAINING_COMPLETE") < types.index("JOB_COMPLETE")
    # the model, chat and deployments
    assert job["fine_tuned_model"] in [m["id"] for m in found["models"]["data"]]
    assert found["before"]["status"] == 400
    assert "promote it first" in found["before"]["message"]
    assert found["deployed"]["data"][0]["status"] == "Active"
    assert found["deployed"]["data"][0]["model_id"] == job_id
    assert found["deployed"]["data"][0]["processor"] == "XEON"
    answer = found["answer"]
    assert answer["model"] == job_id
    assert answer["object"] == "chat.completion"
    assert isinstance(answer["choices"][0]["message"]["content"], str)
    assert answer["usage"]["completion_tokens"] >= 1
    streamed = "".join(
        (c["choices"][0]["delta"] or {}).get("content") or ""
        for c in found["chunks"]
        if c["choices"]
    )
    assert streamed == answer["choices"][0]["message"]["content"]  # greedy: the same answer
    # Seen when tried: the streamed answer's tokens were not added to the deployment's totals.
    # Now they are (the stream's usage chunk, asked of the model server), and a caller that did
    # not ask for `stream_options.include_usage` still gets no usage chunk.
    assert all(c["choices"] for c in found["chunks"])
    counted = found["counted"]
    assert counted["total_output_tokens"] == 2 * answer["usage"]["completion_tokens"]
    assert counted["total_input_tokens"] == 2 * answer["usage"]["prompt_tokens"]
    assert found["by_deployment"]["choices"][0]["message"] == answer["choices"][0]["message"]
    assert found["demoted"]["status"] == "Inactive"
    assert found["after"]["status"] == 400
    assert "Inactive" in found["after"]["message"]
    assert found["again"]["choices"][0]["message"] == answer["choices"][0]["message"]
    messages = [e["message"] for e in found["demoted_events"]["data"]]
    assert messages[-1].startswith("Model demoted: ft:tiny:")
    assert found["all_off"] == ["Inactive", "Inactive"]  # demote stops every deployment of it
    assert found["refused_again"]["status"] == 400
    assert found["base"]["model_type"] == "Base Model"
    assert found["base_answer"]["model"] == found["base"]["id"]
    assert found["refused_instances"]["status"] == 400
    # a stream that asks for usage gets its usage chunk, and the same tokens are counted
    root, headers = f"http://127.0.0.1:{server.port}", {"Authorization": f"Bearer {key}"}
    base_id = found["base"]["id"]
    body = {
        "model": base_id,
        "messages": [{"role": "user", "content": "What is 1 + 1?"}],
        "max_tokens": 3,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST", f"{root}/v1/inference/chat/completions", json=body, headers=headers, timeout=60
    ) as reply:
        assert reply.status_code == 200, reply.read()
        lines = [line.removeprefix("data: ") for line in reply.iter_lines() if line]
    assert lines[-1] == "[DONE]"
    streamed_chunks = [json.loads(line) for line in lines[:-1]]
    assert all("usage" in c for c in streamed_chunks)  # OpenAI's `usage: null` until the last
    usage = streamed_chunks[-1]["usage"]
    assert streamed_chunks[-1]["choices"] == []
    assert usage["completion_tokens"] >= 1
    base_before = found["base_answer"]["usage"]
    totals = httpx.get(f"{root}/v1/flow/deployments/{base_id}", headers=headers).json()
    assert (
        totals["total_output_tokens"]
        == base_before["completion_tokens"] + usage["completion_tokens"]
    )
    assert totals["total_input_tokens"] == base_before["prompt_tokens"] + usage["prompt_tokens"]
    # Seen when tried: a stream its client left before the usage chunk was not counted at all.
    # Now what the model server had streamed is (its running usage, asked for on every chunk).
    body.update(max_tokens=64, stream_options={})
    with httpx.stream(
        "POST", f"{root}/v1/inference/chat/completions", json=body, headers=headers, timeout=60
    ) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            chunk = json.loads(line.removeprefix("data: ")) if line else {}
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                break  # the first token: leave
    assert "usage" not in chunk  # the caller did not ask for usage

    def grown() -> Any:
        now = httpx.get(f"{root}/v1/flow/deployments/{base_id}", headers=headers).json()
        return now if now["total_input_tokens"] > totals["total_input_tokens"] else None

    after = wait_for(grown)  # the relay counts once it sees the client gone
    assert after["total_input_tokens"] == totals["total_input_tokens"] + usage["prompt_tokens"]
    assert 1 <= after["total_output_tokens"] - totals["total_output_tokens"] <= 64
    # the same job and model through OpenAI's API
    with server.client(key=key) as client:
        seen = client.fine_tuning.jobs.retrieve(job["openai_id"])
        assert seen.status == "succeeded"
        assert seen.fine_tuned_model == job["fine_tuned_model"]
        checkpoints = client.fine_tuning.jobs.checkpoints.list(seen.id).data
        assert checkpoints
        reply = client.chat.completions.create(
            model=job["fine_tuned_model"],
            messages=[{"role": "user", "content": "What is 1 + 1?"}],
            max_tokens=4,
            temperature=0,
        )
    assert reply.choices[0].message.content == answer["choices"][0]["message"]["content"]


def test_a_seekrflow_training_config_posted_to_openais_route_is_a_job(
    idle: Server, key: str, train_file: str
) -> None:
    """Seen when tried: the body was refused with `training_files: Extra inputs are not
    permitted`. Now it is the same job as through SeekrFlow's route."""
    body = sdk(
        idle,
        key,
        """
        config = TrainingConfig(
            training_files=[args["file"]], model="tiny", n_epochs=1,
            fine_tune_type=FineTuneType.REINFORCEMENT,
            reward_components=RewardComponents(graders=[Grader(type=GraderType.MATH_ACCURACY)]),
        )
        result = json.loads(config.model_dump_json())
        """,
        file=train_file,
    )
    with idle.client(key=key) as client:
        job = client.post("/fine_tuning/jobs", body=body, cast_to=httpx.Response).json()
        assert job["status"] == "validating_files"
        assert job["training_file"] == train_file
        assert job["method"] == {"type": "reinforcement"}
        flow = sdk(
            idle,
            key,
            "result = dump(client.fine_tuning.retrieve(args['id']))",
            id=job["seekrflow_id"],
        )
        assert flow["openai_id"] == job["id"]
        assert flow["fine_tune_type"] == "REINFORCEMENT"
        assert flow["project_id"] is None
        assert flow["reward_components"]["graders"][0]["weight"] == pytest.approx(0.9)
        bad = {**body, "reward_components": {"graders": [{"type": "math_acuracy"}]}}
        with pytest.raises(openai.BadRequestError) as refused:
            client.post("/fine_tuning/jobs", body=bad, cast_to=httpx.Response)
    assert "$.reward_components.graders[0].type" in refused.value.message
    assert "did you mean 'math_accuracy'" in refused.value.message


def test_the_projects_quotas_hold_on_seekrflows_routes(
    make_server: Any, tiny: str, tmp_path: Path
) -> None:
    server = make_server(
        OPENRFT_MAX_ACTIVE_JOBS="1", OPENRFT_MAX_PROJECT_BYTES="4000", OPENRFT_MAX_JOB_EPOCHS="2"
    )
    server.register_model("tiny", tiny)
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_bytes(jsonl(guide_rows(2)))
    large.write_bytes(jsonl(guide_rows(20)))
    found = sdk(
        server,
        server.key("alpha"),
        """
        project = client.projects.create(name="quotas", description="one active job")
        file = client.files.upload(args["small"], purpose="reinforcement-fine-tune")
        config = TrainingConfig(training_files=[file.id], model="tiny", n_epochs=1,
                                fine_tune_type=FineTuneType.REINFORCEMENT)
        infra = InfrastructureConfig(accel_type="H100", n_accel=1)
        create = lambda: client.fine_tuning.create(
            project_id=project.id, training_config=config, infrastructure_config=infra)
        epochs = refused(lambda: client.fine_tuning.create(
            project_id=project.id, infrastructure_config=infra,
            training_config=config.model_copy(update={"n_epochs": 3})))
        first = create()
        result = {
            "epochs": epochs,
            "second": refused(create),
            "upload": refused(lambda: client.files.upload(args["large"], purpose="fine-tune")),
            "first": first.status.value,
        }
        """,
        small=str(small),
        large=str(large),
    )
    assert found["first"] == "pending"
    assert found["epochs"]["status"] == 400
    assert (
        "$.training_config.n_epochs: is 3, over this project's limit of 2"
        in (found["epochs"]["message"])
    )
    assert found["second"]["class"] == "RateLimitError"
    assert found["second"]["status"] == 429
    assert "already has 1 active jobs" in found["second"]["message"]
    assert found["upload"]["status"] == 413
    assert "storage quota" in found["upload"]["message"]
