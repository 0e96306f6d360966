"""Where judge models live: `JudgeConfig` per model name, and how a name is resolved to one.

A `score_model` / `label_model` spec names its judge (`"model": "gpt-4o-mini"`); the deployment says
where that name is served. The first of these that knows the name wins:

1. `GradeContext.judges[name]`, then `GradeContext.judges["*"]` (a dict or a `JudgeConfig`);
2. the YAML/JSON file named by `$OPENRFT_JUDGES` (`{judges: {name: {...}, "*": {...}}}`, or the
   mapping alone), by name then `"*"`;
3. `$OPENRFT_JUDGE_BASE_URL`, with the API key read from the variable `$OPENRFT_JUDGE_API_KEY_ENV`
   names.

Nothing here calls a judge, and there is no built-in default endpoint: grading never reaches the
network unless the user configured where. An unknown name raises `ConfigError` saying what to set;
the model grader records that on each sample (`model_grader_server_error`) rather than crashing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openrft.errors import ConfigError, Problem

JUDGES_FILE_ENV = "OPENRFT_JUDGES"
"""Environment variable naming a YAML/JSON file of judge configs keyed by model name."""
BASE_URL_ENV = "OPENRFT_JUDGE_BASE_URL"
"""Environment variable with one base URL used for every judge name not configured otherwise."""
API_KEY_ENV_ENV = "OPENRFT_JUDGE_API_KEY_ENV"
"""Environment variable holding the *name* of the variable that holds the key (never the key)."""
ANY_MODEL = "*"
"""Key whose config applies to every judge name without its own entry."""


class JudgeConfig(BaseModel):
    """How to reach one judge model: an OpenAI-compatible chat completions endpoint."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    base_url: str
    """Base URL in the OpenAI SDK's form, e.g. `http://127.0.0.1:8001/v1`; requests go to
    `{base_url}/chat/completions`."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (sent as a bearer token); no key is
    sent when absent."""
    model_name: str | None = None
    """Model name sent to the endpoint, when it differs from the name in the grader spec."""
    concurrency: int = Field(default=32, ge=1)
    """Most requests in flight at once to this judge, per grading batch."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for one response before it counts as failed (and is retried)."""
    max_retries: int = Field(default=3, ge=0)
    """Retries after a 429, a 5xx, a timeout or a connection error (so at most 1 + this many
    attempts)."""
    backoff: float = Field(default=0.5, ge=0)
    """Seconds before the first retry; doubled for each further retry, with jitter (a
    `Retry-After` header, when sent, is honoured up to `max_backoff`)."""
    max_backoff: float = Field(default=20.0, ge=0)
    """Longest wait between two attempts."""

    def api_key(self) -> str | None:
        """The API key from the environment; `ConfigError` when the named variable is unset."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                [Problem(f"${self.api_key_env}", "is not set; export the judge's API key in it")],
                "judge API key missing",
            )
        return key


def resolve_judge(model: str, judges: Mapping[str, Any] | None = None) -> JudgeConfig:
    """The `JudgeConfig` for judge `model` (see the module docstring for the order)."""
    for source, table in (("GradeContext.judges", judges or {}), *_file_table()):
        for key in (model, ANY_MODEL):
            if key in table:
                return _validate(table[key], f"{source}[{key!r}]")
    base_url = os.environ.get(BASE_URL_ENV)
    if base_url:
        return JudgeConfig(base_url=base_url, api_key_env=os.environ.get(API_KEY_ENV_ENV) or None)
    raise ConfigError(
        [
            Problem(
                f"judges[{model!r}]",
                f"no endpoint is configured for judge model {model!r}: pass "
                f"GradeContext(judges={{{model!r}: {{'base_url': ...}}}}), point "
                f"${JUDGES_FILE_ENV} at a judges YAML file, "
                f"or set ${BASE_URL_ENV} (and ${API_KEY_ENV_ENV})",
            )
        ],
        "judge not configured",
    )


def _validate(value: Any, where: str) -> JudgeConfig:
    if isinstance(value, JudgeConfig):
        return value
    try:
        return JudgeConfig.model_validate(value)
    except ValidationError as exc:
        problems = [
            Problem(f"{where}.{'.'.join(map(str, e['loc']))}".rstrip("."), e["msg"])
            for e in exc.errors()
        ]
        raise ConfigError(problems, "invalid judge config") from None


def _file_table() -> list[tuple[str, Mapping[str, Any]]]:
    """The judges file named by `$OPENRFT_JUDGES`, as `[(source, table)]` (empty when unset)."""
    name = os.environ.get(JUDGES_FILE_ENV)
    if not name:
        return []
    path = Path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([Problem(str(path), f"cannot read the judges file: {exc}")]) from None
    if isinstance(data, Mapping) and isinstance(data.get("judges"), Mapping):
        data = data["judges"]
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem(str(path), "must map judge model names to {base_url: ..., ...}")]
        )
    return [(str(path), data)]
