"""A job's life before and after training: the config it runs, file validation, naming.

- `build_config` maps OpenAI's job body (file ids replaced by paths) to the native
  `TrainingConfig` through `openrft.training.config.load_config` (which recognises the dialect),
  then applies OpenRFT's own overrides from the body's `openrft` object (e.g. `num_generations`,
  `max_completion_length`), which the `openai` SDK sends with `extra_body={"openrft": {...}}`.
- `validate_job_files` runs the `validating_files` step: every dataset problem, checked against
  the grader, fails the job with `error{code, message, param}`; otherwise the job is queued.

Nothing here trains or imports torch (`openrft.training.config` stays light on purpose).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from openrft.data.validate import validate_dataset
from openrft.errors import ConfigError, Problem
from openrft.service.store import Store, jobs, now
from openrft.training.config import TrainingConfig, load_config, parse_config

MAX_PROBLEMS_IN_ERROR = 20


def build_config(body: Mapping[str, Any], paths: Mapping[str, str]) -> TrainingConfig:
    """The native config for an OpenAI job body; `paths` maps `training_file`/`validation_file`
    to local paths. Raises `ConfigError`/`SpecError` listing every problem."""
    dialect = {k: v for k, v in body.items() if k != "openrft" and v is not None}
    dialect.update(paths)
    config = load_config(dialect)
    overrides = body.get("openrft")
    if not overrides:
        return config
    if not isinstance(overrides, Mapping):
        raise ConfigError([Problem("$.openrft", "must be an object of TrainingConfig fields")])
    merged = config.model_dump(mode="json", exclude_none=True)
    merged.update(overrides)
    merged.update(paths)  # the uploaded files win over any path given in the overrides
    return parse_config(merged)


def hyperparameters(body: Mapping[str, Any], config: TrainingConfig) -> dict[str, Any]:
    """What the job object reports: the hyperparameters given, `auto` resolved where known."""
    method = body.get("method") or {}
    given = dict(body.get("hyperparameters") or {})
    section = method.get(method.get("type", ""), None) if isinstance(method, Mapping) else None
    if isinstance(section, Mapping):
        given.update(section.get("hyperparameters") or {})
    resolved = {"n_epochs": config.n_epochs, "batch_size": config.batch_size}
    for key, value in resolved.items():
        if given.get(key) in (None, "auto"):
            given[key] = value
    return given


def fine_tuned_model_name(base: str, suffix: str | None, job_id: str) -> str:
    """OpenAI-style `ft:<base>:<suffix>:<id>`; a local model directory is named by its basename."""
    if base.startswith(("/", ".", "~")):
        base = Path(base).name
    return f"ft:{base}:{suffix or ''}:{job_id.removeprefix('ftjob-')}"


def _dataset_error(config: TrainingConfig) -> dict[str, Any] | None:
    checks = [("training_file", config.training_file)]
    if config.validation_file:
        checks.append(("validation_file", config.validation_file))
    for param, path in checks:
        report = validate_dataset(path, grader=config.grader)
        if report.problems:
            shown = report.problems[:MAX_PROBLEMS_IN_ERROR]
            text = "; ".join(f"{p.where.rsplit('/', 1)[-1]}: {p.message}" for p in shown)
            more = len(report.problems) - len(shown)
            return {
                "code": f"invalid_{param}",
                "message": f"{param} has {len(report.problems)} problem(s): {text}"
                + (f"; and {more} more" if more else ""),
                "param": param,
            }
    return None


def validate_job_files(store: Store, job_id: str) -> None:
    """`validating_files` → `queued`, or → `failed` with the dataset problems."""
    row = store.job(job_id)
    if row is None or row["status"] != "validating_files":
        return
    config = parse_config(row["config"])
    error = _dataset_error(config)
    if error is None:
        if store.set_job(job_id, where={"status": "validating_files"}, status="queued"):
            store.log(job_id, "Files validated; job queued")
        return
    failed = {"status": "failed", "error": error, "finished_at": now()}
    if store.set_job(job_id, where={"status": "validating_files"}, **failed):
        store.log(job_id, error["message"], "error")


def recover_validations(store: Store) -> None:
    """Finish validations an earlier API process started but never completed."""
    for row in store.all(select(jobs.c.id).where(jobs.c.status == "validating_files")):
        validate_job_files(store, row["id"])
