"""What a job created through the API may name: its project's files and models, the operator's
base models and accelerate configs — never a server path.

`resolve_resources` rewrites every field of a `TrainingConfig` that names something on the
server (`training_file`, `validation_file`, `sft_warmup.training_file`, `model`,
`accelerate_config`, `output_dir`) from the name the tenant gave to the path the worker needs:

- dataset files: the id of a file uploaded to the same project (`file-…`);
- `model`: the embedded default, a base model the operator registered (`openrft models add`),
  or one of the project's own `ft:` models or checkpoint models (`checkpoint_path`: its
  checkpoint directory, which training loads merged into its base; docs/training.md,
  "Chaining jobs"). An `ft:` model is its job's promoted checkpoint (`POST …/checkpoints/{id}/
  promote`), else its last one;
- `accelerate_config`: the name of a file the operator put in `<data_dir>/accelerate/`;
- `output_dir`: nothing; the worker chooses the job's directory.

Anything else is a `ConfigError` naming the field, unless the server is single-user
(`Settings.local_paths`: `--no-auth` or `--allow-local-paths`), where server paths pass as they
are. Another project's ids read as unknown, never as "not yours". `openrft train` on the command
line is not affected: it runs what the local user wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from openrft.errors import ConfigError, Problem
from openrft.service import tenancy
from openrft.service.settings import Settings
from openrft.service.store import Store, checkpoints, jobs
from openrft.training.config import DEFAULT_MODEL, TrainingConfig

ACCELERATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TOP_LEVEL = frozenset({"training_file", "validation_file", "model"})
"""Fields of OpenAI's job body; the others come from the `openrft` extension."""


@dataclass(frozen=True)
class Resolver:
    """Resolves names for one project."""

    store: Store
    settings: Settings
    project: str
    in_body: frozenset[str] = TOP_LEVEL
    """The fields the request gave at the top level (the rest came from `openrft`)."""

    def param(self, field: str) -> str:
        """The JSON path of `field` in the request, for the error."""
        head = field.split(".", 1)[0]
        return f"$.{field}" if head in self.in_body else f"$.openrft.{field}"

    def file(self, field: str, value: str) -> tuple[str | None, Problem | None]:
        row = self.store.file(self.project, value)
        if row is not None:
            return str(row["path"]), None
        if self.settings.local_paths and not value.startswith("file-"):
            return value, None
        return None, Problem(
            self.param(field),
            f"no such file {value[:100]!r} in this project: give the id of a file uploaded "
            "with POST /v1/files (server paths are not accepted)",
        )

    def model(self, value: str) -> tuple[str | None, Problem | None]:
        if value == DEFAULT_MODEL:
            return value, None
        registered = tenancy.models(self.store)
        if value in registered:
            return registered[value], None
        if value.startswith("ft:"):
            path = self._fine_tuned(value)
            if path is not None:
                return path, None
        elif self.settings.local_paths:
            return value, None
        names = ", ".join(sorted({DEFAULT_MODEL, *registered})[:20])
        return None, Problem(
            self.param("model"),
            f"unknown model {value[:200]!r}: use a base model this server offers ({names}; "
            "GET /v1/models lists them) or one of this project's `ft:` models",
        )

    def _fine_tuned(self, name: str) -> str | None:
        return checkpoint_path(self.store, name, self.project)

    def accelerate(self, value: str) -> tuple[str | None, Problem | None]:
        directory = accelerate_dir(self.settings)
        if ACCELERATE_NAME.match(value):
            for suffix in (".yaml", ".yml", ".json"):
                path = directory / f"{value}{suffix}"
                if path.is_file():
                    return str(path), None
        if self.settings.local_paths:
            return value, None
        offered = sorted(p.stem for p in directory.glob("*.y*ml")) if directory.is_dir() else []
        return None, Problem(
            "$.openrft.accelerate_config",
            f"unknown accelerate config {value[:100]!r}: name one the operator provides "
            f"({', '.join(offered) or 'none on this server'})",
        )


def resolve_resources(
    config: TrainingConfig,
    store: Store,
    settings: Settings,
    project: str,
    in_body: frozenset[str] = TOP_LEVEL,
) -> TrainingConfig:
    """`config` with every server resource resolved for `project` (see the module docstring);
    `ConfigError` listing every field that names something the project may not use. `in_body`:
    the fields the request gave at its top level (for the errors' JSON paths)."""
    resolver = Resolver(store, settings, project, in_body)
    problems: list[Problem] = []
    updates: dict[str, Any] = {"output_dir": None}

    def take(field: str, found: tuple[str | None, Problem | None]) -> str | None:
        value, problem = found
        if problem is not None:
            problems.append(problem)
        return value

    updates["training_file"] = take(
        "training_file", resolver.file("training_file", config.training_file)
    )
    if config.validation_file is not None:
        updates["validation_file"] = take(
            "validation_file", resolver.file("validation_file", config.validation_file)
        )
    if config.sft_warmup is not None and config.sft_warmup.training_file is not None:
        field = "sft_warmup.training_file"
        path = take(field, resolver.file(field, config.sft_warmup.training_file))
        updates["sft_warmup"] = config.sft_warmup.model_copy(update={"training_file": path})
    updates["model"] = take("model", resolver.model(config.model))
    if config.accelerate_config is not None:
        updates["accelerate_config"] = take(
            "accelerate_config", resolver.accelerate(config.accelerate_config)
        )
    if config.output_dir is not None and not settings.local_paths:
        problems.append(
            Problem("$.openrft.output_dir", "is chosen by the server for jobs; remove it")
        )
    if problems:
        raise ConfigError(problems, "the job names resources it cannot use")
    return config.model_copy(update=updates)


def checkpoint_path(store: Store, name: str, project: str | None) -> str | None:
    """The checkpoint directory of a checkpoint model (`…:ckpt-step-N`) or of an `ft:` model
    (once its job succeeded: the checkpoint promoted to it, else the job's last one); only
    `project`'s, unless `None` (the operator's `openrft export`). Chat, evals, chains, export
    and `serve-model` all resolve through here, so a promotion takes effect on the next request.
    A new job on it merges that adapter into its base and trains a fresh one on top
    (`training.models.load_causal_lm`)."""
    query = select(checkpoints.c.path).join(jobs, jobs.c.id == checkpoints.c.job_id)
    if project is not None:
        query = query.where(jobs.c.project == project)
    row = store.one(query.where(checkpoints.c.model == name))
    if row is None:
        row = _served_checkpoint(store, query, name, project)
    return str(row["path"]) if row else None


def _served_checkpoint(store: Store, query: Any, name: str, project: str | None) -> Any:
    """The checkpoint row the `ft:` model `name` serves (`query`: `project`'s checkpoints)."""
    owner = select(jobs.c.id, jobs.c.promoted_checkpoint).where(
        jobs.c.fine_tuned_model == name, jobs.c.status == "succeeded"
    )
    if project is not None:
        owner = owner.where(jobs.c.project == project)
    job = store.one(owner)
    if job is None:
        return None
    own = query.where(checkpoints.c.job_id == job["id"])
    promoted = job["promoted_checkpoint"]
    if promoted is not None:
        row = store.one(own.where(checkpoints.c.id == promoted))
        if row is not None:
            return row
    return store.one(own.order_by(checkpoints.c.step.desc()))


def accelerate_dir(settings: Settings) -> Path:
    """Where the operator puts the accelerate configs jobs may name."""
    return settings.data_dir / "accelerate"
