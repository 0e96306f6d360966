"""A job's life before and after training: the config it runs, file validation, naming.

- The job body itself is validated once, by the `service` dialect of `training/dialects/`
  (OpenAI's body plus the `openrft` overrides); the resulting native config is stored with the
  job and handed to its validation as it is.
- `validate_job_files` runs the `validating_files` step: every dataset problem, checked against
  the grader (supervised rows must end with the assistant's answer, prompts with the user's),
  fails the job with `error{code, message, param}`; so does a plan over the project's step
  quota; otherwise the job is queued. `Validations` runs these on two threads of their own
  (never the request threads), and at start-up resumes the ones an earlier process left
  unfinished in the background: a file that cannot be validated fails its job, never the server.
- `check_job_quota` refuses a job over the project's quotas (`tenancy.Quota`) at create time.

Nothing here trains or imports torch (`openrft.training.config` and `.dialects` stay light).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from openrft.data.rows import LastRole
from openrft.data.validate import validate_dataset
from openrft.errors import ConfigError, Problem
from openrft.service.errors import QuotaExceededError
from openrft.service.settings import Settings
from openrft.service.store import Store, jobs, now
from openrft.service.tenancy import Quota, quota
from openrft.training.config import TrainingConfig, total_steps
from openrft.training.dialects import load

MAX_PROBLEMS_IN_ERROR = 20
MAX_PROBLEMS_KEPT = 1000
"""Problems a validation keeps in memory (it counts the rest): a garbage file has one a line."""
ACTIVE = ("validating_files", "queued", "running")
"""Statuses that count against a project's `max_active_jobs`."""
log = logging.getLogger("openrft.service")


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
    """OpenAI-style `ft:<base>:<suffix>:<id>`; a local model directory is named by its basename,
    and a job chained on an `ft:` model by that model's own base (as OpenAI names them)."""
    if base.startswith("ft:"):
        base = base.split(":")[1]
    elif base.startswith(("/", ".", "~")):
        base = Path(base).name
    return f"ft:{base}:{suffix or ''}:{job_id.removeprefix('ftjob-')}"


def check_job_quota(
    config: TrainingConfig,
    store: Store,
    settings: Settings,
    project: str,
    seekrflow_root: str | None = None,
) -> None:
    """Refuse a job over the project's quotas: `ConfigError` for its settings (every one over),
    `QuotaExceededError` (429) when the project already has its most active jobs. Problems are
    at their place in an OpenAI body, or in a SeekrFlow `TrainingConfig` at `seekrflow_root`."""
    limits = quota(store, settings, project)
    native = f"{seekrflow_root}.openrft" if seekrflow_root is not None else "$.openrft"
    problems = []
    stages = [("", config.n_epochs, config.max_steps)]
    if config.sft_warmup is not None:
        stages.append(("sft_warmup.", config.sft_warmup.n_epochs, config.sft_warmup.max_steps))
    for prefix, epochs, steps in stages:
        if epochs > limits.max_job_epochs:
            where = f"{native}.{prefix}n_epochs"
            if seekrflow_root is not None:  # SeekrFlow's one n_epochs (the SFT stage's too)
                where = f"{seekrflow_root}.n_epochs"
            elif not prefix:  # OpenAI's hyperparameter (or the `openrft` override of it)
                where = f"$.method.{config.method}.hyperparameters.n_epochs"
            problems.append(_over(where, epochs, limits.max_job_epochs))
        if steps is not None and steps > limits.max_job_steps:
            problems.append(_over(f"{native}.{prefix}max_steps", steps, limits.max_job_steps))
    if config.num_processes > limits.max_job_processes:
        where = f"{native}.num_processes"
        problems.append(_over(where, config.num_processes, limits.max_job_processes))
    if problems:
        raise ConfigError(problems, "the job is over this project's quota")
    active = store.one(
        select(func.count().label("n")).where(jobs.c.project == project, jobs.c.status.in_(ACTIVE))
    )
    if active is not None and active["n"] >= limits.max_active_jobs:
        raise QuotaExceededError(
            f"This project already has {active['n']} active jobs, its limit; wait for one to "
            "finish, or cancel one",
            code="quota_exceeded",
        )


def _over(where: str, value: int, limit: int) -> Problem:
    return Problem(where, f"is {value}, over this project's limit of {limit}; lower it")


def _dataset_error(
    config: TrainingConfig, limits: Quota, warnings: list[str] | None = None
) -> dict[str, Any] | None:
    """The job's `error` when a file has problems, else None; the files' warnings (repeated
    rows) are appended to `warnings` as `param: message`."""
    # supervised rows end with the assistant's answer (OpenAI's SFT format), prompts with the
    # user's turn; a `completion` template writes the answer for rows that have none
    warmup = config.sft_warmup
    answer: LastRole = None if warmup is not None and warmup.completion else "assistant"
    ending: LastRole = answer if config.method == "supervised" else "user"
    checks = [("training_file", config.training_file, ending, config.grader)]
    if config.validation_file:
        checks.append(("validation_file", config.validation_file, ending, config.grader))
    if warmup is not None and warmup.training_file and config.method != "supervised":
        checks.append(("sft_warmup.training_file", warmup.training_file, answer, None))
    for param, path, last_role, grader in checks:
        report = validate_dataset(
            path, grader=grader, max_problems=MAX_PROBLEMS_KEPT, last_role=last_role
        )
        if warnings is not None:
            warnings += [f"{param}: {w.message}" for w in report.warnings]
        if report.problems:
            shown = report.problems[:MAX_PROBLEMS_IN_ERROR]
            text = "; ".join(f"{p.where.rsplit('/', 1)[-1]}: {p.message}" for p in shown)
            count = len(report.problems) + report.problems_omitted
            more = count - len(shown)
            return {
                "code": f"invalid_{param.rsplit('.', 1)[-1]}",
                "message": f"{param} has {count} problem(s): {text}"
                + (f"; and {more} more" if more else ""),
                "param": param,
            }
        if param == "training_file" and config.method == "reinforcement":
            steps = total_steps(config, report.rows)
            if steps > limits.max_job_steps:
                return {
                    "code": "quota_exceeded",
                    "message": f"the job plans {steps} steps ({report.rows} rows), over this "
                    f"project's limit of {limits.max_job_steps}; set max_steps or fewer n_epochs",
                    "param": "max_steps",
                }
    return None


def validate_job_files(
    store: Store, settings: Settings, job_id: str, config: TrainingConfig | None = None
) -> None:
    """`validating_files` → `queued`, or → `failed` with the dataset problems. `config`: the
    job's config as created (absent when a restart resumes the validation: read from the
    store then)."""
    row = store.job(job_id)
    if row is None or row["status"] != "validating_files":
        return
    if config is None:
        config = load(row["config"], dialect="native")
    warnings: list[str] = []
    error = _dataset_error(config, quota(store, settings, row["project"]), warnings)
    if error is None:
        if store.set_job(job_id, where={"status": "validating_files"}, status="queued"):
            for warning in warnings:  # e.g. repeated rows: allowed, but worth a look
                store.log(job_id, warning, "warn")
            store.log(job_id, "Files validated; job queued")
        return
    _fail(store, job_id, error)


def _fail(store: Store, job_id: str, error: dict[str, Any]) -> None:
    failed = {"status": "failed", "error": error, "finished_at": now()}
    if store.set_job(job_id, where={"status": "validating_files"}, **failed):
        store.log(job_id, error["message"], "error")


class Validations:
    """File validations of new jobs, on threads of their own so they never hold the threads
    that serve requests (a 512 MB file takes a while), nor start-up."""

    def __init__(self, store: Store, settings: Settings, threads: int = 2) -> None:
        self.store = store
        self.settings = settings
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="openrft-validate")

    def submit(self, job_id: str, config: TrainingConfig | None = None) -> None:
        self.pool.submit(self._run, job_id, config)

    def _run(self, job_id: str, config: TrainingConfig | None) -> None:
        try:
            validate_job_files(self.store, self.settings, job_id, config)
        except Exception as exc:
            log.exception("validating job %s failed", job_id)
            error = {
                "code": "validation_error",
                "message": f"the job's files could not be validated ({type(exc).__name__}); "
                "re-upload them and create the job again",
                "param": None,
            }
            try:
                _fail(self.store, job_id, error)
            except Exception:
                log.exception("could not record the failed validation of job %s", job_id)

    def recover(self) -> None:
        """Resume, in the background, validations an earlier API process left unfinished."""
        self.pool.submit(self._recover)

    def _recover(self) -> None:
        try:
            rows = self.store.all(select(jobs.c.id).where(jobs.c.status == "validating_files"))
        except Exception:
            log.exception("could not list jobs waiting for validation")
            return
        for row in rows:
            self.submit(row["id"])

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def submit_validation(app: Any, job_id: str, config: TrainingConfig) -> None:
    """Queue the validation of a new job (with the config it was created with) on the app's
    `Validations`."""
    validations: Validations = app.state.validations
    validations.submit(job_id, config)
