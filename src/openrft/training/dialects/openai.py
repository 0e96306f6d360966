"""OpenAI's fine-tuning job body (`POST /v1/fine_tuning/jobs`) mapped onto native fields.

Field names are OpenAI's (`openai.types.fine_tuning.JobCreateParams`). Each hyperparameter is
`"auto"` or a value; `"auto"` means the native default, and the two that have no native twin are
translated as documented in docs/training-config.md:

- `learning_rate_multiplier` scales the native base rate (2e-4 for GRPO with LoRA, the SFT
  stage's own for `supervised`): `learning_rate = multiplier * base`.
- `compute_multiplier` scales the sampling compute spent exploring: `num_generations =
  round(8 * multiplier)`, clamped to [2, 64] (auto = 1 = 8 completions per prompt).
- `reasoning_effort` is the room the model has to think: `max_completion_length` = 128 (low),
  256 (medium, default), 512 (high) tokens.

`dpo` jobs are refused. Nothing here calls OpenAI or reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator

from openrft.errors import ConfigError, Problem
from openrft.graders import Grader
from openrft.training.config import SFTSettings
from openrft.training.dialects.base import (
    Dialect,
    DialectModel,
    Mapped,
    check_all,
    grader_at,
    native_default,
    validate_section,
)

BASE_GENERATIONS = 8
"""Completions per prompt at `compute_multiplier` 1."""
MAX_GENERATIONS = 64
"""Most completions per prompt any `compute_multiplier` asks for."""
REASONING_TOKENS: dict[str, int] = {"low": 128, "default": 256, "medium": 256, "high": 512}
"""`reasoning_effort` -> `max_completion_length`."""


def _auto(kind: type[int] | type[float], minimum: float, inclusive: bool) -> PlainValidator:
    noun = "whole number" if kind is int else "number"
    bound = f"{'≥' if inclusive else '>'} {minimum:g}"

    def check(value: Any) -> Any:
        if value == "auto":
            return value
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and not float(value).is_integer()):
            raise ValueError(f'must be "auto" or a {noun} {bound}, got {value!r}')
        if value < minimum or (value == minimum and not inclusive):
            raise ValueError(f'must be "auto" or a {noun} {bound}, got {value!r}')
        return kind(value)

    return PlainValidator(check)


AutoCount = Annotated[int | Literal["auto"], _auto(int, 1, inclusive=True)]
AutoScale = Annotated[float | Literal["auto"], _auto(float, 0, inclusive=False)]


class SupervisedHyperparameters(DialectModel):
    """Hyperparameters of a supervised job (also the legacy top-level `hyperparameters`)."""

    batch_size: AutoCount = "auto"
    """Examples per optimizer step; auto: the SFT stage default."""
    learning_rate_multiplier: AutoScale = "auto"
    """Scales the SFT stage's default learning rate; auto: 1."""
    n_epochs: AutoCount = "auto"
    """Passes over the training file; auto: the SFT stage default."""


class ReinforcementHyperparameters(DialectModel):
    """Hyperparameters of a reinforcement job."""

    batch_size: AutoCount = "auto"
    """Prompts per optimizer step; auto: the native default."""
    learning_rate_multiplier: AutoScale = "auto"
    """Scales the native base learning rate; auto: 1."""
    n_epochs: AutoCount = "auto"
    """Passes over the training prompts; auto: the native default."""
    eval_interval: AutoCount = "auto"
    """Training steps between evaluations; auto: the native default."""
    eval_samples: AutoCount = "auto"
    """Validation rows per evaluation; auto: the native default."""
    compute_multiplier: AutoScale = "auto"
    """Scales completions sampled per prompt: `num_generations = round(8 * x)` in [2, 64]."""
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"
    """Completion budget: low 128, default/medium 256, high 512 tokens."""


class ReinforcementMethod(DialectModel):
    """`method.reinforcement`."""

    grader: dict[str, Any]
    """The grader (any OpenAI grader; OpenRFT's own types work too)."""
    hyperparameters: ReinforcementHyperparameters = ReinforcementHyperparameters()
    """See `ReinforcementHyperparameters`."""
    response_format: dict[str, Any] | None = None
    """`{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`, or a bare schema."""
    tools: list[dict[str, Any]] | None = None
    """Agent RFT: tool servers `{name, server_url, headers}` the model calls during rollouts
    (OpenRFT also takes `{type: python, name, description, parameters, source}`)."""
    max_episode_steps: int | None = None
    """Agent RFT: most rounds of tool calls in one rollout."""


class SupervisedMethod(DialectModel):
    """`method.supervised`."""

    hyperparameters: SupervisedHyperparameters = SupervisedHyperparameters()
    """See `SupervisedHyperparameters`."""


class Method(DialectModel):
    """`method`: which fine-tuning method, and its settings."""

    type: Literal["reinforcement", "supervised", "dpo"]
    """`reinforcement` (GRPO) or `supervised` (SFT); `dpo` is not supported."""
    reinforcement: ReinforcementMethod | None = None
    """Settings when `type` is `reinforcement` (required then)."""
    supervised: SupervisedMethod | None = None
    """Settings when `type` is `supervised`."""
    dpo: dict[str, Any] | None = None
    """Accepted only to say that DPO is not supported."""


class WandbSettings(DialectModel):
    """`integrations[].wandb`; only its presence matters here (metrics go to W&B)."""

    project: str
    """The W&B project the run is logged to."""
    entity: str | None = None
    """The W&B team or user owning the project; default: the API key's."""
    name: str | None = None
    """The run's display name; default: W&B's generated one."""
    tags: list[str] = Field(default_factory=list)
    """Tags attached to the run."""


class Integration(DialectModel):
    """`integrations[]`: a tracker to send metrics to."""

    type: Literal["wandb"]
    """Always `wandb` (the only integration OpenAI defines)."""
    wandb: WandbSettings
    """Where in W&B the run's metrics go."""


class OpenAIJob(DialectModel):
    """The job body of `POST /v1/fine_tuning/jobs`."""

    model: str
    """Base model: a Hugging Face directory or hub id."""
    training_file: str
    """Training JSONL: a path, or a file id the server resolves."""
    validation_file: str | None = None
    """Validation JSONL; absent: a share of the training file is held out."""
    seed: int | None = None
    """Seed; absent: the native default."""
    suffix: str | None = Field(default=None, max_length=64)
    """Added to the fine-tuned model's name."""
    method: Method | None = None
    """The method; absent means supervised (OpenAI's default)."""
    hyperparameters: SupervisedHyperparameters | None = None
    """Deprecated by OpenAI in favour of `method`; values in `method` win."""
    integrations: list[Integration] | None = None
    """`wandb` turns on W&B logging (`report_to: [wandb]`)."""
    metadata: dict[str, str] | None = None
    """Free key-value pairs, kept by the service; no effect on training."""


def to_native(data: Mapping[str, Any]) -> Mapped:
    """Map an OpenAI job body onto native `TrainingConfig` fields."""
    raw = _raw_grader(data)
    job, grader = check_all(
        lambda: validate_section(OpenAIJob, data, "$"),
        lambda: None if raw is None else grader_at(raw, "$.method.reinforcement.grader"),
    )
    mapped = Mapped()
    for field in ("model", "training_file", "validation_file", "seed", "suffix"):
        mapped.set(field, getattr(job, field), f"$.{field}")
    if job.integrations:
        mapped.set("report_to", sorted({i.type for i in job.integrations}), "$.integrations")
    kind = job.method.type if job.method else "supervised"
    if kind == "dpo":
        message = "DPO is not supported; use method.type reinforcement or supervised"
        raise ConfigError([Problem("$.method.type", message)])
    if kind == "reinforcement":
        _reinforcement(job, grader, mapped)
    else:
        _supervised(job, mapped)
    return mapped


OPENAI_KEYS = frozenset({"hyperparameters", "integrations", "metadata"})
"""Top-level keys only the OpenAI job body has (besides `method` given as an object)."""


def marks(data: Mapping[str, Any]) -> list[str]:
    """The keys that make `data` an OpenAI job body."""
    found = sorted(OPENAI_KEYS & data.keys())
    return ["method", *found] if isinstance(data.get("method"), Mapping) else found


def _raw_grader(data: Mapping[str, Any]) -> Any:
    method = data.get("method")
    settings = method.get("reinforcement") if isinstance(method, Mapping) else None
    grader = settings.get("grader") if isinstance(settings, Mapping) else None
    return grader if isinstance(grader, Mapping) else None  # else the schema reports it


def _reinforcement(job: OpenAIJob, grader: Grader, mapped: Mapped) -> None:
    root = "$.method.reinforcement"
    settings = job.method.reinforcement if job.method else None
    if settings is None:
        raise ConfigError([Problem(root, "a reinforcement job needs `reinforcement: {grader}`")])
    mapped.set("method", "reinforcement", "$.method.type")
    mapped.set("grader", grader, f"{root}.grader")
    fmt = response_schema(settings.response_format)
    wrapped = (settings.response_format or {}).get("type") == "json_schema"
    inner = ".json_schema.schema" if wrapped else ""  # a schema's problems point inside it
    mapped.set("response_format", fmt, f"{root}.response_format{inner}")
    if settings.tools is not None:
        mapped.set("tools", settings.tools, f"{root}.tools")
    if settings.max_episode_steps is not None:
        mapped.set("max_episode_steps", settings.max_episode_steps, f"{root}.max_episode_steps")
    hp = _given(settings.hyperparameters, job.hyperparameters)
    at = f"{root}.hyperparameters"
    lr = _number(hp["learning_rate_multiplier"], 1.0) * native_default("learning_rate")
    mapped.set("learning_rate", lr, f"{at}.learning_rate_multiplier")
    for field in ("batch_size", "n_epochs", "eval_interval", "eval_samples"):
        mapped.set(field, None if hp[field] == "auto" else hp[field], f"{at}.{field}")
    scale = _number(hp["compute_multiplier"], 1.0)
    generations = min(MAX_GENERATIONS, max(2, round(BASE_GENERATIONS * scale)))
    mapped.set("num_generations", generations, f"{at}.compute_multiplier")
    effort = REASONING_TOKENS[str(hp["reasoning_effort"])]
    mapped.set("max_completion_length", effort, f"{at}.reasoning_effort")


def _supervised(job: OpenAIJob, mapped: Mapped) -> None:
    settings = job.method.supervised if job.method else None
    given = settings.hyperparameters if settings else SupervisedHyperparameters()
    hp = _given(given, job.hyperparameters)
    at = "$.method.supervised.hyperparameters" if job.method else "$.hyperparameters"
    defaults = SFTSettings()
    stage = SFTSettings(
        n_epochs=_count(hp["n_epochs"], defaults.n_epochs),
        batch_size=_count(hp["batch_size"], defaults.batch_size),
        learning_rate=_number(hp["learning_rate_multiplier"], 1.0) * defaults.learning_rate,
    )
    mapped.set("method", "supervised", "$.method.type")
    mapped.set("sft_warmup", stage, at)


def _given(primary: DialectModel, legacy: DialectModel | None) -> dict[str, Any]:
    """Hyperparameters from `method`, falling back to the legacy top-level ones per key."""
    values = primary.model_dump()
    if legacy is not None:
        for key in legacy.model_fields_set - primary.model_fields_set:
            values[key] = getattr(legacy, key)
    return values


def _number(value: Any, auto: float) -> float:
    return auto if value == "auto" else float(value)


def _count(value: Any, auto: int) -> int:
    return auto if value == "auto" else int(value)


def response_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema inside OpenAI's `response_format` (`None` for plain text)."""
    if response_format is None or response_format.get("type") == "text":
        return None
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    if response_format.get("type") == "json_schema" and "json_schema" in response_format:
        inner = response_format["json_schema"]
        schema = inner.get("schema") if isinstance(inner, Mapping) else None
        if not isinstance(schema, dict):
            message = "json_schema needs a `schema` object: {name, schema, strict}"
            raise ConfigError([Problem("$.method.reinforcement.response_format", message)])
        return schema
    return response_format


DIALECT = Dialect("openai", "OpenAI job body", to_native, marks)
