"""The eval of a reinforcement job: training's validation evaluations as runs of an eval.

When a worker claims a reinforcement job that has a validation file, `ensure_eval` creates an
eval in the job's project (named `<job id> validation`, metadata `openrft_job_id`) and records
its id on the job (`jobs.eval_id`, shown as the job object's `eval_id`). Its
`data_source_config` is `custom` with an `item_schema` derived from the validation rows' fields
(`messages` included) and the sample schema; its one testing criterion is the job's grader as
the job stores it. That grader may be a `multi`, which `evals.create` refuses from users (as
OpenAI does): here it is the job's own reward, so a user's own run of this eval is graded
exactly as training graded. A job without a validation file (training holds out a share of
the training rows then) gets no eval, nor does a `supervised` job.

As training writes `evals/step-N.jsonl` (`training/rundir.py`: one `EvalSample` per evaluated
validation row, at the step-0 baseline, every `eval_interval` and the final step), the worker
calls `import_steps`, which stores each step as a `completed` run: `baseline (step 0)`,
`step N` or `final (step N)`, a `completions` data source naming the model that answered (the
base model at step 0, the checkpoint `ft:…:ckpt-step-N` when step N saved one, else
`<fine-tuned model> at step N`), and one output item per row: the validation row as the item,
the completion as the sample, and the reward training computed as the criterion's result
(never re-graded; a `multi`'s `sub_rewards` ride along). Runs are unique per `(eval, step)`,
so a restarted worker re-reading the run dir adds nothing twice.

It does not import evaluations of jobs that ran before this existed, nor re-import a step a
resumed run evaluated again (the first import stays). `per_model_usage` counts the prompt and
completion tokens training recorded per evaluation sample (zeros for runs from before it
recorded them). Deleting a job's eval unlinks
it from the job; a running job stops importing, and one claimed again (resumed) gets a new eval
holding all its evaluations. Nothing here runs a model or a grader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from openrft.errors import SpecError
from openrft.graders import Grader, load_grader
from openrft.service.eval_runner import USAGE_KEYS, Tally, file_rows
from openrft.service.eval_runs import report_path
from openrft.service.evals import data_source_config
from openrft.service.lifecycle import fine_tuned_model_name
from openrft.service.store import (
    Store,
    checkpoints,
    eval_output_items,
    eval_runs,
    evals,
    jobs,
    new_id,
    now,
)
from openrft.training.rundir import EvalSample, eval_samples_path, read_eval_samples

JOB_KEY = "openrft_job_id"
"""Metadata key naming the job, on its eval and on each of its runs."""
STEP_KEY = "openrft_step"
"""Metadata key naming the step a run was imported from."""
log = logging.getLogger("openrft.job_evals")

_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: a bool is an int in Python
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


class _Taken(Exception):
    """Another claim of the job linked an eval first."""


def _json_type(value: Any) -> str:
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return "null"


def item_schema(rows: Sequence[Any]) -> dict[str, Any]:
    """A JSON schema for the rows: each field with the JSON type(s) it has, required when
    every row has it; `{"type": "object"}` when there are no object rows."""
    objects = [row for row in rows if isinstance(row, dict)]
    if not objects:
        return {"type": "object"}
    types: dict[str, set[str]] = {}
    for row in objects:
        for key, value in row.items():
            types.setdefault(key, set()).add(_json_type(value))
    properties = {
        key: {"type": next(iter(found)) if len(found) == 1 else sorted(found)}
        for key, found in types.items()
    }
    required = [key for key in types if all(key in row for row in objects)]
    return {"type": "object", "properties": properties, "required": required}


def _linked(job: Mapping[Any, Any]) -> bool:
    config = job["config"] or {}
    return config.get("method", "reinforcement") == "reinforcement" and bool(
        config.get("validation_file") and config.get("grader")
    )


def validation_rows(job: Mapping[Any, Any]) -> list[Any]:
    """The job's validation rows as JSON values, in file order (the order training
    evaluates them in); `OSError`/`ValueError` when the file is gone or unreadable."""
    return file_rows(Path(job["config"]["validation_file"]))


def _grader(job: Mapping[Any, Any]) -> Grader:
    return load_grader(job["config"]["grader"])


def ensure_eval(store: Store, job: Mapping[Any, Any]) -> str | None:
    """The id of the job's eval, created (and linked to the job) if it has none; None for a
    job that gets no eval, or whose validation file or grader cannot be read."""
    if job["eval_id"] is not None:
        return str(job["eval_id"])
    if not _linked(job):
        return None
    try:
        rows = validation_rows(job)
        grader = _grader(job)
        config = data_source_config(
            {"type": "custom", "item_schema": item_schema(rows), "include_sample_schema": True}
        )
    except (OSError, ValueError, SpecError) as exc:
        log.warning("job %s gets no eval: %s", job["id"], exc)
        return None
    eval_id = new_id("eval")
    row = {
        "id": eval_id,
        "project": job["project"],
        "name": f"{job['id']} validation",
        "data_source_config": config,
        "testing_criteria": [{**job["config"]["grader"], "name": grader.name}],
        "user_metadata": {JOB_KEY: job["id"]},
        "created_at": now(),
    }
    link = update(jobs).where(jobs.c.id == job["id"], jobs.c.eval_id.is_(None))
    try:
        with store.tx() as conn:
            conn.execute(evals.insert().values(**row))
            if conn.execute(link.values(eval_id=eval_id)).rowcount != 1:
                raise _Taken  # rolls the insert back
    except _Taken:
        found = store.one(select(jobs.c.eval_id).where(jobs.c.id == job["id"]))
        return None if found is None else found["eval_id"]
    return eval_id


def imported_steps(store: Store, eval_id: str) -> set[int]:
    """The job steps already stored as runs of `eval_id`."""
    query = select(eval_runs.c.job_step).where(
        eval_runs.c.eval_id == eval_id, eval_runs.c.job_step.is_not(None)
    )
    return {row["job_step"] for row in store.all(query)}


def run_name(step: int, total_steps: int | None) -> str:
    if step == 0:
        return "baseline (step 0)"
    return f"final (step {step})" if step == total_steps else f"step {step}"


def step_model(store: Store, job: Mapping[Any, Any], step: int) -> str:
    """The model that answered at `step`: the base, a checkpoint's id, or the fine-tuned
    model's name at that step (no checkpoint was saved there, or it was pruned)."""
    if step == 0:
        return str(job["model"])
    query = select(checkpoints.c.model).where(
        checkpoints.c.job_id == job["id"], checkpoints.c.step == step
    )
    found = store.one(query)
    if found is not None:
        return str(found["model"])
    return f"{fine_tuned_model_name(job['model'], job['suffix'], job['id'])} at step {step}"


def _data_source(job: Mapping[Any, Any], model: str) -> dict[str, Any]:
    config = job["config"] or {}
    return {
        "type": "completions",
        "model": model,
        "source": {"type": "file_id", "id": job["validation_file"]},
        "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
        "sampling_params": {
            "temperature": config.get("eval_temperature", 0.0),
            "max_completion_tokens": config.get("max_completion_length"),
            "seed": job["seed"],
        },
    }


def _result(grader: Grader, sample: EvalSample) -> dict[str, Any]:
    reward = float(sample.get("reward") or 0.0)
    threshold = getattr(grader, "pass_threshold", None)
    entry: dict[str, Any] = {
        "name": grader.name,
        "type": grader.type,
        "score": reward,
        "passed": reward >= (threshold if threshold is not None else 1.0),
        "sample": None,
    }
    sub = sample.get("sub_rewards")
    if isinstance(sub, dict) and sub and set(sub) != {grader.name}:
        entry["sub_rewards"] = sub
    return entry


def _output_sample(
    job: Mapping[Any, Any], row: Any, sample: EvalSample, model: str
) -> dict[str, Any]:
    """OpenAI's output item `sample`, for a completion training drew."""
    params = _data_source(job, model)["sampling_params"]
    messages = row.get("messages") if isinstance(row, dict) else None
    return {
        "input": messages if isinstance(messages, list) else [],
        "output": [{"role": "assistant", "content": str(sample.get("completion") or "")}],
        "model": model,
        "finish_reason": None,
        "usage": _usage(sample),
        "error": None,
        "temperature": params["temperature"],
        "top_p": None,
        "seed": params["seed"],
        "max_completion_tokens": params["max_completion_tokens"],
    }


def _usage(sample: EvalSample) -> dict[str, int]:
    """OpenAI's usage of one evaluation sample (zeros from runs that did not count tokens)."""
    usage = dict.fromkeys(USAGE_KEYS, 0)
    usage["prompt_tokens"] = int(sample.get("prompt_tokens") or 0)
    usage["completion_tokens"] = int(sample.get("completion_tokens") or 0)
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def step_run(
    store: Store,
    job: Mapping[Any, Any],
    eval_id: str,
    step: int,
    total_steps: int | None,
    samples: Sequence[EvalSample],
    rows: Sequence[Any],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run row and output item rows of one step's evaluation."""
    grader = _grader(job)
    model = step_model(store, job, step)
    run_id = new_id("evalrun")
    items = []
    for index, sample in enumerate(samples):
        row = rows[index] if index < len(rows) else None
        if not isinstance(row, dict):  # the file changed under the job: keep what training saw
            row = {"prompt": sample.get("prompt"), "reference": sample.get("reference")}
        result = _result(grader, sample)
        items.append(
            {
                "id": new_id("outputitem"),
                "run_id": run_id,
                "eval_id": eval_id,
                "datasource_item_id": index,
                "datasource_item": row,
                "sample": _output_sample(job, row, sample, model),
                "results": [result],
                "status": "pass" if result["passed"] else "fail",
                "created_at": now(),
            }
        )
    tally = Tally([grader.name])
    tally.add(items)
    run = {
        "id": run_id,
        "eval_id": eval_id,
        "project": job["project"],
        "name": run_name(step, total_steps),
        "status": "completed",
        "data_source": _data_source(job, model),
        "user_metadata": {JOB_KEY: job["id"], STEP_KEY: str(step)},
        "report_url": report_path(eval_id, run_id),
        "created_at": now(),
        "attempts": 0,
        "job_step": step,
        "error": None,
        **tally.values(),
    }
    return run, items


def import_steps(
    store: Store, job: Mapping[Any, Any], eval_id: str, jobdir: Path, steps: Mapping[int, int]
) -> set[int]:
    """Store each evaluated step (`step -> total_steps`) not yet a run of `eval_id` as one;
    returns the steps that are runs now (or never will be: the eval was deleted). A step
    whose samples file is missing is left for a later call."""
    if store.one(select(evals.c.id).where(evals.c.id == eval_id)) is None:
        return set(steps)  # deleted by its owner: nothing to import into
    done = imported_steps(store, eval_id)
    todo = sorted(step for step in steps if step not in done)
    if not todo:
        return set(steps)
    try:
        rows = validation_rows(job)
    except (OSError, ValueError) as exc:
        log.warning("job %s: cannot read its validation rows (%s)", job["id"], exc)
        rows = []
    for step in todo:
        samples = read_eval_samples(eval_samples_path(jobdir, step))
        if not samples:
            continue
        run, items = step_run(store, job, eval_id, step, steps[step], samples, rows)
        try:
            with store.tx() as conn:
                conn.execute(eval_runs.insert().values(**run))
                conn.execute(eval_output_items.insert(), items)
        except IntegrityError:  # an earlier attempt's worker imported it in between
            pass
        done.add(step)
    return done & set(steps)
