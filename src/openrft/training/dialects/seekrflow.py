"""SeekrFlow's `TrainingConfig` (seekrai SDK 0.35) mapped onto native fields.

Field names, defaults and rules are the SDK's: `training_files`, `model` and `n_epochs` are
required; `fine_tune_type` defaults to `STANDARD` (supervised); `REINFORCEMENT` (or the deprecated
`GRPO`) without `reward_components` gets SeekrFlow's default reward (format 0.1 + math_accuracy
0.9); `reward_components` on a `STANDARD` job and `beta` outside `PREFERENCE` are errors;
`lora_config` fields default to r 8, alpha 32, dropout 0.1, and no `lora_config` means a full
fine-tune. `reward_components` compile through `openrft.graders.load_grader` to the same grader
tree as the OpenAI form.

What OpenRFT cannot do is refused with a reason rather than ignored: `PREFERENCE` (DPO),
`pre_train: true`, LoRA `bias` other than `none`, more than one training or validation file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from openrft.errors import ConfigError, Problem
from openrft.graders import Grader
from openrft.graders.seekr import DEFAULT_REWARD_COMPONENTS
from openrft.training.config import LoraSettings, SFTSettings
from openrft.training.dialects.base import (
    Dialect,
    DialectModel,
    Mapped,
    apply_overrides,
    check_all,
    grader_at,
    keys_of,
    validate_section,
)

SEEKR_KEYS = frozenset(
    {
        "training_files",
        "validation_files",
        "fine_tune_type",
        "reward_components",
        "lora_config",
        "experiment_name",
        "pre_train",
        "max_length",
    }
)
"""Top-level keys only SeekrFlow's `TrainingConfig` has."""


class SeekrLoRAConfig(DialectModel):
    """SeekrFlow's `LoRAConfig`."""

    r: int = Field(default=8, gt=0)
    """Rank of the update matrices."""
    alpha: int = Field(default=32, gt=0)
    """Scaling factor applied to LoRA updates."""
    dropout: float = Field(default=0.1, ge=0.0, le=1.0)
    """Fraction of LoRA neurons dropped during training."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Bias terms to train; OpenRFT supports `none` only."""
    extras: dict[str, Any] = Field(default_factory=dict)
    """Further peft settings; OpenRFT reads `target_modules` (a list, or `all-linear`)."""


class SeekrTrainingConfig(DialectModel):
    """SeekrFlow's `TrainingConfig`."""

    training_files: list[str] = Field(min_length=1)
    """Training file ids or paths; OpenRFT takes exactly one."""
    model: str
    """Base model: a Hugging Face directory or hub id."""
    n_epochs: int = Field(ge=1)
    """Passes over the training data."""
    learning_rate: float | None = Field(default=None, gt=0)
    """Peak learning rate; absent: the native default."""
    n_checkpoints: int | None = Field(default=None, ge=1)
    """Checkpoints saved over the run."""
    batch_size: int | None = Field(default=None, ge=1, le=1024)
    """Prompts (RL) or examples (SFT) per optimizer step."""
    experiment_name: str | None = None
    """Becomes the model-name `suffix`."""
    max_length: int | None = Field(default=None, ge=1)
    """Sequence length; OpenRFT budgets the completion with it (`max_completion_length`)."""
    pre_train: bool = False
    """Continued pre-training; not supported."""
    fine_tune_type: Literal["STANDARD", "GRPO", "PREFERENCE", "REINFORCEMENT"] = "STANDARD"
    """`STANDARD` (SFT), `REINFORCEMENT` (GRPO; `GRPO` is its deprecated name), `PREFERENCE`."""
    lora_config: SeekrLoRAConfig | None = None
    """LoRA settings; absent: every weight is trained."""
    validation_files: list[str] | None = None
    """Validation file ids or paths; OpenRFT takes at most one."""
    reward_components: dict[str, Any] | None = None
    """`{format_reward_weight, graders: [{type, weight, operation}]}` (REINFORCEMENT only)."""
    beta: float | None = None
    """DPO beta (PREFERENCE only, so never valid here)."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in backward to save memory."""
    openrft: dict[str, Any] | None = None
    """OpenRFT extension: native `TrainingConfig` fields that override the mapped ones (the
    SDK's `TrainingConfig(..., openrft={...})` keeps it: its models allow extra fields); the
    training and validation files stay `training_files`' and `validation_files`'."""


def to_native(data: Mapping[str, Any]) -> Mapped:
    """Map a SeekrFlow `TrainingConfig` onto native `TrainingConfig` fields."""
    if isinstance(data.get("fine_tune_type"), str):  # the SDK enum is upper-case; be forgiving
        data = {**data, "fine_tune_type": data["fine_tune_type"].upper()}
    job, grader, _ = check_all(
        lambda: validate_section(SeekrTrainingConfig, data, "$"),
        lambda: _reward(data),
        lambda: _unsupported(data),
    )
    mapped = Mapped()
    mapped.set("model", job.model, "$.model")
    mapped.set("training_file", job.training_files[0], "$.training_files")
    valid = job.validation_files[0] if job.validation_files else None
    mapped.set("validation_file", valid, "$.validation_files")
    mapped.set("suffix", job.experiment_name, "$.experiment_name")
    mapped.set("n_checkpoints", job.n_checkpoints, "$.n_checkpoints")
    mapped.set("gradient_checkpointing", job.gradient_checkpointing, "$.gradient_checkpointing")
    mapped.set("max_completion_length", job.max_length, "$.max_length")
    # set even when None: in SeekrFlow no lora_config means a full fine-tune
    mapped.values["lora"], mapped.origin["lora"] = _lora(job.lora_config), "$.lora_config"
    if job.fine_tune_type == "STANDARD":
        _supervised(job, mapped)
    else:
        _reinforcement(job, grader, mapped)
    apply_overrides(mapped, job.openrft, frozenset({"training_file", "validation_file"}))
    return mapped


def _unsupported(data: Mapping[str, Any]) -> None:
    """Refuse what OpenRFT cannot do (checked on the raw mapping, so these problems are
    reported together with schema problems)."""
    kind = str(data.get("fine_tune_type", "STANDARD"))
    lora: Mapping[str, Any] = _mapping(data.get("lora_config"))
    extras: Mapping[str, Any] = _mapping(lora.get("extras"))
    checks = [
        (kind == "PREFERENCE", "$.fine_tune_type",
         "PREFERENCE (DPO) tuning is not supported; use REINFORCEMENT or STANDARD"),
        (data.get("pre_train") is True, "$.pre_train",
         "continued pre-training is not supported; remove it"),
        (_many(data.get("training_files")), "$.training_files",
         "OpenRFT trains on one file; concatenate them (cat a.jsonl b.jsonl > train.jsonl)"),
        (_many(data.get("validation_files")), "$.validation_files",
         "OpenRFT validates on one file; concatenate them"),
        (data.get("beta") is not None, "$.beta", "beta is SeekrFlow's DPO beta (PREFERENCE "
         "only); for the GRPO KL coefficient use the native form's `beta`"),
        (kind == "STANDARD" and data.get("reward_components") is not None, "$.reward_components",
         "reward components are incompatible with STANDARD fine-tuning; "
         "set fine_tune_type: REINFORCEMENT"),
        (lora.get("bias", "none") != "none", "$.lora_config.bias",
         "OpenRFT trains LoRA without bias terms; use bias: none"),
    ]  # fmt: skip
    problems = [Problem(where, message) for failed, where, message in checks if failed]
    for key in sorted(set(extras) - {"target_modules"}):
        message = f"unknown LoRA extra {key!r}; OpenRFT reads only `target_modules`"
        problems.append(Problem(f"$.lora_config.extras.{key}", message))
    if problems:
        raise ConfigError(problems)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _many(files: Any) -> bool:
    return isinstance(files, list) and len(files) > 1


def _lora(config: SeekrLoRAConfig | None) -> LoraSettings | None:
    if config is None:
        return None
    targets = config.extras.get("target_modules")
    fields: dict[str, Any] = {"r": config.r, "alpha": config.alpha, "dropout": config.dropout}
    if targets is not None:
        fields["target_modules"] = targets
    try:
        return LoraSettings(**fields)
    except ValueError as exc:
        raise ConfigError([Problem("$.lora_config", str(exc))]) from None


def _reward(data: Mapping[str, Any]) -> Grader | None:
    """The compiled reward of a REINFORCEMENT job (SeekrFlow's default when none is given)."""
    if str(data.get("fine_tune_type")) not in ("REINFORCEMENT", "GRPO"):
        return None
    components = data.get("reward_components")
    if components is None:
        components = DEFAULT_REWARD_COMPONENTS
    return grader_at({"reward_components": components}, "$.reward_components")


def _reinforcement(job: SeekrTrainingConfig, grader: Grader | None, mapped: Mapped) -> None:
    mapped.set("method", "reinforcement", "$.fine_tune_type")
    mapped.set("grader", grader, "$.reward_components")
    mapped.set("n_epochs", job.n_epochs, "$.n_epochs")
    mapped.set("learning_rate", job.learning_rate, "$.learning_rate")
    mapped.set("batch_size", job.batch_size, "$.batch_size")


def _supervised(job: SeekrTrainingConfig, mapped: Mapped) -> None:
    stage: dict[str, Any] = {"n_epochs": job.n_epochs}
    if job.learning_rate is not None:
        stage["learning_rate"] = job.learning_rate
    if job.batch_size is not None:
        stage["batch_size"] = job.batch_size
    mapped.set("method", "supervised", "$.fine_tune_type")
    mapped.set("sft_warmup", SFTSettings(**stage), "$")


DIALECT = Dialect("seekrflow", "SeekrFlow TrainingConfig", to_native, keys_of(SEEKR_KEYS))
