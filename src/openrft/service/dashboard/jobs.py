"""The dashboard's read-only job views: list summaries, metric series, eval samples, why a job
paused, archives.

The pages read and act on jobs through the public API (`/v1/fine_tuning/jobs`, its events,
checkpoints, pause/resume/cancel). These routes add what that API has no shape for: a jobs
table with each job's progress and latest rewards in one request, a job's metrics as one series
(fetched incrementally, for live curves), the evaluation samples training writes to the job
directory (`evals/step-N.jsonl`), why a paused job paused, and a checkpoint directory as a
`.tar.gz`. Every route is scoped to the caller's project exactly like the API (another
project's job is a 404).

Nothing here writes to the store or touches a running job.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import FileResponse
from sqlalchemy import exists, or_, select
from sqlalchemy.engine import RowMapping

from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, NotFoundError
from openrft.service.schemas import job_object
from openrft.service.store import Store, checkpoints, events, job_metadata, jobs
from openrft.training.rundir import (
    PAUSE_REASONS,
    EvalSample,
    MetricsLine,
    PausedInfo,
    eval_steps,
    read_eval_samples,
)

router = APIRouter(prefix="/dashboard/api/jobs", tags=["dashboard"])

MAX_SAMPLES = 64
"""Samples returned for one evaluation step."""
MAX_TEXT = 4000
"""Characters kept of each prompt, reference and completion."""
MAX_TURNS = 64
"""Messages of a trajectory (and calls of a message) the sample view shows."""
SCAN_FOR_VALID = 500
"""Metrics events read back, newest first, to find a job's latest validation reward."""


def job_row(store: Store, project: str, job_id: str) -> RowMapping:
    """The job `job_id` of `project`; a 404 when there is none (another project's job is
    not found either): every dashboard route about a job starts here."""
    row = store.job(job_id, project)
    if row is None:
        raise NotFoundError(
            f"No such fine-tuning job: {job_id!r}", param="fine_tuning_job_id", code="job_not_found"
        )
    return row


def progress_of(store: Store, job_id: str) -> dict[str, Any]:
    """Latest step, total steps, train reward and validation reward from the metrics events."""
    query = (
        select(events.c.data)
        .where(events.c.job_id == job_id, events.c.type == "metrics")
        .order_by(events.c.seq.desc())
        .limit(SCAN_FOR_VALID)
    )
    found: dict[str, Any] = {
        "step": None,
        "total_steps": None,
        "train_reward": None,
        "valid_reward": None,
    }
    for row in store.all(query):
        data = cast(MetricsLine, row["data"] or {})
        scores: dict[str, Any] = dict(data.get("scores") or {})
        if found["step"] is None:
            found["step"], found["total_steps"] = data.get("step"), data.get("total_steps")
        if found["train_reward"] is None:
            found["train_reward"] = scores.get("train_reward_mean")
        if found["valid_reward"] is None:
            found["valid_reward"] = scores.get("valid_reward_mean")
        if found["train_reward"] is not None and found["valid_reward"] is not None:
            break
    return found


def _duration(row: Mapping[Any, Any]) -> int:
    end = row["finished_at"] or int(time.time())
    return max(0, int(end - row["created_at"]))


@router.get("")
def list_jobs(
    project: ProjectDep,
    store: StoreDep,
    status: Annotated[list[str] | None, Query()] = None,
    q: str = "",
    meta: str = "",
    limit: int = 50,
) -> dict[str, Any]:
    """The project's newest jobs with progress; filter by status, text in id/model/suffix, and
    `meta=key=value`."""
    if not 1 <= limit <= 500:
        raise InvalidRequestError("limit must be between 1 and 500", param="limit")
    query = select(jobs).where(jobs.c.project == project)
    if status:
        query = query.where(jobs.c.status.in_(status))
    if q.strip():
        pattern = f"%{q.strip()}%"
        query = query.where(
            or_(jobs.c.id.like(pattern), jobs.c.model.like(pattern), jobs.c.suffix.like(pattern))
        )
    if meta.strip():
        key, sep, value = meta.partition("=")
        if not sep:
            raise InvalidRequestError("meta must look like key=value", param="meta")
        query = query.where(
            exists().where(
                job_metadata.c.job_id == jobs.c.id,
                job_metadata.c.key == key.strip(),
                job_metadata.c.value == value.strip(),
            )
        )
    rows = store.all(query.order_by(jobs.c.seq.desc()).limit(limit + 1))
    data = [
        {
            **job_object(row).model_dump(mode="json"),
            "progress": progress_of(store, row["id"]),
            "duration": _duration(row),
        }
        for row in rows[:limit]
    ]
    return {"object": "list", "data": data, "has_more": len(rows) > limit}


@router.get("/{job_id}/metrics")
def job_metrics(
    project: ProjectDep, store: StoreDep, job_id: str, after: int = 0
) -> dict[str, Any]:
    """The job's metrics lines, oldest first, after the `cursor` of the previous call."""
    job_row(store, project, job_id)
    query = (
        select(events.c.seq, events.c.data)
        .where(events.c.job_id == job_id, events.c.type == "metrics", events.c.seq > after)
        .order_by(events.c.seq)
    )
    rows = store.all(query)
    return {
        "points": [row["data"] for row in rows],
        "cursor": rows[-1]["seq"] if rows else after,
    }


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "…"
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _clip(json.dumps(value, ensure_ascii=False))


def _parsed_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file that may be mid-write (bad lines are skipped)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue  # a partial last line, still being appended
            if isinstance(value, dict):
                yield value


def read_samples(jobdir: Path) -> dict[int, list[EvalSample]]:
    """Eval samples by step, from the job dir's `evals/step-N.jsonl` files."""
    return {step: read_eval_samples(path) for step, path in eval_steps(jobdir).items()}


def _prompt_of(row: Mapping[str, Any]) -> Any:
    messages = row.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1].get("content")
    return None


def find_references(config: Mapping[str, Any], prompts: set[str]) -> dict[str, Any]:
    """For samples written without a `reference`: each prompt's item fields (its
    `reference_answer` when it has one), looked up in the job's dataset files by prompt text."""
    found: dict[str, Any] = {}
    for key in ("validation_file", "training_file"):
        path = config.get(key)
        if not isinstance(path, str) or not Path(path).exists():
            continue
        for row in _parsed_lines(Path(path)):
            prompt = _prompt_of(row)
            if isinstance(prompt, str) and prompt in prompts and prompt not in found:
                item = {k: v for k, v in row.items() if k not in ("messages", "tools")}
                found[prompt] = item.get("reference_answer", item)
            if len(found) == len(prompts):
                return found
    return found


def _sample(value: EvalSample, references: Mapping[str, Any]) -> dict[str, Any]:
    sub = value.get("sub_rewards")
    reference = value.get("reference")
    if reference is None and isinstance(value.get("prompt"), str):
        reference = references.get(value["prompt"])
    shown = {
        "prompt": _clip(value.get("prompt")),
        "reference": _clip(reference),
        "completion": _clip(value.get("completion")),
        "reward": value.get("reward"),
        "sub_rewards": sub if isinstance(sub, dict) else {},
    }
    trajectory = value.get("trajectory")
    if isinstance(trajectory, list):  # an agent job's rollout, for the trajectory viewer
        shown["trajectory"] = [_turn(m) for m in trajectory[:MAX_TURNS] if isinstance(m, dict)]
        shown["dropped"] = bool(value.get("dropped"))
        shown["truncated"] = bool(value.get("truncated"))
    return shown


def _turn(message: dict[str, Any]) -> dict[str, Any]:
    """One message of a trajectory as the viewer shows it: role, text, calls (name and
    arguments), every text clipped."""
    calls = message.get("tool_calls")
    listed = calls if isinstance(calls, list) else []
    return {
        "role": _clip(str(message.get("role", ""))),
        "content": _clip(message.get("content")),
        "tool_calls": [
            {
                "name": _clip(str(call.get("function", {}).get("name", ""))),
                "arguments": _clip(call.get("function", {}).get("arguments")),
            }
            for call in listed[:MAX_TURNS]
            if isinstance(call, dict) and isinstance(call.get("function"), dict)
        ],
    }


@router.get("/{job_id}/samples")
def job_samples(
    project: ProjectDep,
    store: StoreDep,
    settings: SettingsDep,
    job_id: str,
    step: int | None = None,
) -> dict[str, Any]:
    """One evaluation's samples (the latest unless `step`), and the steps that have some."""
    row = job_row(store, project, job_id)
    by_step = read_samples(settings.jobs_dir / job_id)
    steps = sorted(by_step)
    chosen = step if step is not None else (steps[-1] if steps else None)
    if chosen is not None and chosen not in by_step:
        raise NotFoundError(f"No samples at step {chosen}", param="step", code="samples_not_found")
    shown = by_step.get(chosen, [])[:MAX_SAMPLES] if chosen is not None else []
    unmatched = {
        str(v["prompt"])
        for v in shown
        if v.get("reference") is None and isinstance(v.get("prompt"), str)
    }
    references = find_references(row["config"] or {}, unmatched) if unmatched else {}
    return {
        "steps": steps,
        "step": chosen,
        "samples": [_sample(value, references) for value in shown],
        "total": len(by_step.get(chosen, [])) if chosen is not None else 0,
    }


def pause_of(store: Store, job_id: str) -> dict[str, Any]:
    """Why a paused job paused: `reason` (`budget`, `diagnosis` or `request`), `step` (None when
    it was paused before training got anywhere) and `message`, a sentence saying so (for a
    diagnosis, which signal fired and what it saw).

    It is the job's newest event besides the metrics: the worker's event that it paused, with
    the run's `paused.json` as its `data.pause`; otherwise the job was paused while queued, or
    settled paused after its worker was lost, both on request."""
    query = (
        select(events.c.message, events.c.data)
        .where(events.c.job_id == job_id, events.c.type != "metrics")
        .order_by(events.c.seq.desc())
        .limit(1)
    )
    latest = store.one(query)
    data = latest["data"] if latest is not None else None
    pause = data.get("pause") if isinstance(data, dict) else None
    if latest is None or not isinstance(pause, dict) or pause.get("reason") not in PAUSE_REASONS:
        message = "Job paused on request; resume continues from its latest checkpoint"
        return {"reason": "request", "step": None, "message": message}
    info = cast(PausedInfo, pause)
    if info["reason"] in ("budget", "diagnosis"):
        return {"reason": info["reason"], "step": info["step"], "message": latest["message"]}
    step = info["step"]
    message = f"Job paused on request at step {step}; resume continues from its checkpoint"
    return {"reason": "request", "step": step, "message": message}


@router.get("/{job_id}/pause")
def job_pause(project: ProjectDep, store: StoreDep, job_id: str) -> dict[str, Any]:
    """Why the job is paused (`{"paused": true, "reason", "step", "message"}`), or
    `{"paused": false}` when it is not paused."""
    row = job_row(store, project, job_id)
    if row["status"] != "paused":
        return {"paused": False}
    return {"paused": True, **pause_of(store, job_id)}


@router.get("/{job_id}/checkpoints/{checkpoint_id}/archive")
def checkpoint_archive(
    project: ProjectDep,
    store: StoreDep,
    job_id: str,
    checkpoint_id: str,
    background: BackgroundTasks,
) -> FileResponse:
    """The checkpoint directory (adapter, tokenizer, trainer state) as a `.tar.gz`."""
    job_row(store, project, job_id)
    row = store.one(
        select(checkpoints).where(checkpoints.c.job_id == job_id, checkpoints.c.id == checkpoint_id)
    )
    if row is None or not Path(row["path"]).is_dir():
        raise NotFoundError(
            f"No such checkpoint: {checkpoint_id!r}", param="checkpoint_id", code="not_found"
        )
    # a temporary file, not memory: checkpoints of real models run to hundreds of MB
    handle = tempfile.NamedTemporaryFile(suffix=".tar.gz", delete=False)  # noqa: SIM115
    with handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
        archive.add(row["path"], arcname=f"{job_id}-{row['name']}")
    background.add_task(Path(handle.name).unlink, missing_ok=True)
    filename = f"{job_id}-{row['name']}.tar.gz"
    return FileResponse(handle.name, media_type="application/gzip", filename=filename)


@router.get("/{job_id}/checkpoints")
def checkpoint_paths(project: ProjectDep, store: StoreDep, job_id: str) -> dict[str, Any]:
    """Each checkpoint's directory on the server, for `openrft export DIR --merge OUT`."""
    job_row(store, project, job_id)
    rows = store.all(
        select(checkpoints.c.id, checkpoints.c.path).where(checkpoints.c.job_id == job_id)
    )
    return {"paths": {row["id"]: row["path"] for row in rows}}
