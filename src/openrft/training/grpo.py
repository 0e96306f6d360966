"""The recipe: `run(config) -> TrainResult`, readable top to bottom.

1. Read the rows; hold out a validation share if there is no validation file.
2. Load the model (a HF dir, a hub id, or the embedded SmolLM2) and wrap it in LoRA.
3. Optionally warm it up with supervised fine-tuning (TRL `SFTTrainer`).
3b. The pre-flight (`preflight.py`): sample and grade a few prompts; stop with
    `preflight_failed` when too few groups have any reward variance (not on a resume).
4. Train with TRL `GRPOTrainer`, the grader tree as reward functions (`rewards.py`); the
   `RunCallback` evaluates, writes `metrics.jsonl`, checkpoints and enforces the budget.
5. Write the report (plots + `report.md`).

A run that fails leaves `error.json` in its directory (`rundir.RunError`: the code, message and
class of the error), so a watcher knows why without parsing tracebacks.

`method: supervised` runs step 3 as the whole job. Multi-process runs start this module once per
rank (`python -m openrft.training.grpo CONFIG.json OUTPUT_DIR`, under `torchrun`); only rank 0
evaluates and writes the report. Nothing here parses configs or draws plots itself.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from openrft.errors import ConfigError, DatasetError, MissingResourceError, Problem
from openrft.graders.context import GradeContext
from openrft.training import logprobs, prefix_sharing, preflight, report, sampling
from openrft.training.agent import Agent, ToolStats, agent_rewards, ending, prepare_tokenizer
from openrft.training.callbacks import (
    RunCallback,
    best_checkpoint,
    build_run_callback,
    list_checkpoints,
)
from openrft.training.config import (
    SFTSettings,
    TrainingConfig,
    build_grpo_config,
    build_lora_config,
    build_sft_config,
    total_steps,
)
from openrft.training.constrained_generation import constrained_generate, constraint_for
from openrft.training.dialects import load
from openrft.training.evaluate import build_evaluator
from openrft.training.models import (
    known_deprecations_silenced,
    load_causal_lm,
    tokenizer_source,
)
from openrft.training.precision import store_frozen_in_bf16
from openrft.training.records import (
    Row,
    grpo_records,
    load_rows,
    prompt_only,
    read_sft_jsonl,
    sft_records,
    split_rows,
)
from openrft.training.rewards import GraderReward, reward_functions, reward_weights
from openrft.training.rundir import (
    CHECKPOINTS,
    METRICS,
    PAUSED_INFO,
    REPORT,
    CheckpointInfo,
    checkpoint_name,
    failing_as,
    failures_recorded,
    write_checkpoint_info,
)

TRAINER_STATE = "trainer_state.json"
"""What `transformers` saves last in a checkpoint: its step count and planned total."""
MODEL_ERRORS = (OSError, ValueError, MissingResourceError)
"""What loading a model that cannot be loaded raises: no such directory or hub id, not a causal
LM, an unreadable tokenizer, the embedded default not installed."""


@dataclass
class TrainResult:
    """What a finished (or paused) run produced."""

    output_dir: Path
    steps: int
    """Optimizer steps completed (over all sessions of a resumed run)."""
    total_steps: int
    paused: bool = False
    """The budget stopped the run early; `--resume` continues it."""
    baseline_valid_reward: float | None = None
    final_valid_reward: float | None = None
    checkpoints: list[Path] = field(default_factory=list)
    best_checkpoint: Path | None = None
    seconds: float = 0.0

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / METRICS

    @property
    def report_path(self) -> Path:
        return self.output_dir / REPORT


def run(
    config: TrainingConfig,
    output_dir: Path | None = None,
    *,
    resume: Path | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train as `config` says; write metrics, checkpoints and the report under `output_dir`
    (and `error.json` when it fails)."""
    out = Path(output_dir or config.output_dir or "runs/openrft")
    with known_deprecations_silenced(), failures_recorded(out):
        return _run(config, out, resume=resume, progress=progress)


def _run(config: TrainingConfig, out: Path, *, resume: Path | None, progress: bool) -> TrainResult:
    import transformers

    started = perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    transformers.set_seed(config.seed)
    train_rows, valid_rows = read_rows(config, out)
    point = find_resume_point(resume) if resume and config.method != "supervised" else None
    if point is not None and checkpoint_step(point) >= total_steps(config, len(train_rows)):
        # HF's Trainer takes one step before it checks `max_steps`: resuming a run that had
        # reached its last step (its worker died before recording it) trained "step 41 of 40"
        return summarize_finished(out, point, started)
    with failing_as(out, "invalid_model", "model", *MODEL_ERRORS):
        model, tokenizer = load_model(config)
    if config.method == "supervised":
        return run_supervised(config, model, tokenizer, train_rows, valid_rows, out, started)
    # a worker hands its job's project, secrets and outbound rules over; local runs get none
    context = GradeContext.from_environment()
    agent = Agent.of(config, context) if config.is_agent else None
    template = prepare_tokenizer(tokenizer) if agent is not None else ""
    with ExitStack() as stack:
        if agent is not None:  # stops the environment's worker, if it has one
            stack.callback(agent.toolbox.close)
        if config.sft_warmup is not None and resume is None:  # a resumed run loads its adapter
            supervise(config, config.sft_warmup, model, tokenizer, train_rows, out / "sft", agent)
        if config.grader is None:  # the config validator already refuses this
            raise ConfigError([Problem("$.grader", "a reinforcement job needs a `grader`")])
        resumed, rows = resume is not None, train_rows
        preflight.stage(
            config,
            model,
            tokenizer,
            rows,
            context,
            out,
            resumed=resumed,
            echo=progress,
            agent=agent,
        )
        if config.preflight.only:  # `openrft train --preflight`: the report is the result
            return TrainResult(out, steps=0, total_steps=0, seconds=perf_counter() - started)
        reward = GraderReward(
            config.grader,
            context,
            response_format=config.response_format,
            group_size=config.num_generations,  # group-wise graders see one prompt's group
        )
        evaluator = build_evaluator(config, model, tokenizer, valid_rows, reward, agent)
        callback = build_run_callback(
            config, out, reward, evaluator, resumed=resume is not None, progress=progress
        )
        trainer = build_grpo_trainer(
            config, model, tokenizer, train_rows, reward, callback, out, agent=agent
        )
        if agent is not None:
            names = ", ".join(agent.toolbox.by_name)
            steps = config.max_episode_steps
            callback.setup["tools"] = (
                True,
                f"tools {names} (≤ {steps} rounds of calls); {template}",
            )
        trainer.train(resume_from_checkpoint=str(point) if point else None)
        result = summarize(out, callback, trainer.state, started)
        if trainer.accelerator.is_main_process:
            report.write(out)
        return result


def read_rows(config: TrainingConfig, out: Path) -> tuple[list[Row], list[Row]]:
    """Training and validation rows (validation carved out when there is no file). Supervised
    rows end with the assistant's answer, so they are read without the RL checks. A file's
    problems fail the run as `invalid_training_file` / `invalid_validation_file`, the codes a
    job's file validation uses."""
    read = read_sft_jsonl if config.method == "supervised" else load_rows
    with failing_as(out, "invalid_training_file", "training_file", DatasetError):
        rows = read(config.training_file, config.grader)
    if config.validation_file:
        with failing_as(out, "invalid_validation_file", "validation_file", DatasetError):
            return rows, read(config.validation_file, config.grader)
    return split_rows(rows, config.validation_share, config.seed)


def load_model(config: TrainingConfig) -> tuple[Any, Any]:
    """The policy (wrapped in LoRA unless `lora: null`) and its tokenizer. A LoRA checkpoint
    as `model` (a chained job) is merged into its base first (`models.load_causal_lm`)."""
    from peft import get_peft_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(config.model))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any = load_causal_lm(config.model)
    if config.lora is not None:
        model = get_peft_model(model, build_lora_config(config.lora))
    return model, tokenizer


def build_grpo_trainer(
    config: TrainingConfig,
    model: Any,
    tokenizer: Any,
    rows: list[Row],
    reward: GraderReward,
    callback: RunCallback,
    out: Path,
    agent: Agent | None = None,
) -> Any:
    """A `GRPOTrainer` over `rows` whose checkpoints go to `out/checkpoints`; with an `agent`,
    rollouts are multi-turn and call its tools (TRL's `environment_factory`, `agent.py`)."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    funcs = reward_functions(reward)
    args = build_grpo_config(config, out / CHECKPOINTS, len(rows))
    args.reward_weights = reward_weights(funcs)
    environment = agent.environment if agent is not None else None
    records = grpo_records(rows, tokenizer, environment)
    with warnings.catch_warnings():  # TRL calls it experimental; we pin the TRL we test
        warnings.filterwarnings("ignore", "You are using 'environment_factory'", UserWarning)
        trainer = _timed_trainer_class()(
            model=model,
            reward_funcs=funcs,
            args=args,
            train_dataset=Dataset.from_list(records),
            processing_class=tokenizer,
            callbacks=[callback],
            environment_factory=agent.factories() if agent is not None else None,
        )
    if agent is not None:
        # TRL renders (and types parsed arguments with) each environment's tools: the schemas
        # the job gives, not ones inferred from the methods' signatures
        trainer._env_tools = agent.schemas
        trainer.tool_stats = callback.tool_stats
    trainer.timer = callback.timer
    cpu_lm_heads(trainer)
    sharing = prefix_sharing.decide(config.prefix_sharing, model)
    trainer.prefix_sharing = sharing.on
    precision = config.precision
    store_frozen(config, model, trainer.ref_model)
    callback.setup = {
        "bf16": (precision.on, precision.reason),
        "prefix_sharing": (sharing.on, sharing.reason),
    }
    trainer.eager_attention = model.config.get_text_config()._attn_implementation == "eager"
    # transformers' generate samples through the `response_format` constraint (vLLM: the regex)
    trainer.constraint = constraint_for(config, tokenizer)
    trainer.remove_callback(PrinterCallback)  # our metrics lines and progress bar replace it
    return trainer


def cpu_lm_heads(trainer: Any) -> None:
    """On the CPU, score log-probabilities with `logprobs.token_logprobs` instead of TRL's
    fused head's torch fallback (the same numbers within float rounding; on the demo's shape
    the LM head's forward and backward ~3x faster, `logprobs.py`): for the policy
    (log-probabilities and entropies, as TRL asks) and the reference model (log-probabilities)."""
    from accelerate.utils import is_peft_model

    if trainer.accelerator.device.type != "cpu":
        return
    policy = trainer.model.get_base_model() if is_peft_model(trainer.model) else trainer.model
    cast = bool(trainer.args.cast_lm_head_to_fp32)
    logprobs.cpu_lm_head(policy, trainer.temperature, ("log_probs", "entropy"), cast)
    if trainer.ref_model is not None:
        logprobs.cpu_lm_head(trainer.ref_model, trainer.temperature, ("log_probs",), cast)


def store_frozen(config: TrainingConfig, *models: Any) -> None:
    """With bf16 on, store the frozen weights of `models` (LoRA's base, a reference model) in
    bf16 once (`precision.store_frozen_in_bf16`). Not under vLLM: its weight sync merges the
    adapter into the base and unmerges it every step, which in bf16 would round the base a
    little more each time (and vLLM does the sampling the stored base speeds up); a supervised
    warm-up before such a run leaves its base fp32 too."""
    if config.precision.on and not config.use_vllm:
        for model in models:
            if model is not None:
                store_frozen_in_bf16(model)


def _timed_trainer_class() -> type:
    # defined in a function so importing this module does not import trl
    from trl.trainer.grpo_trainer import GRPOTrainer

    class _Timed(GRPOTrainer):
        """GRPOTrainer that records how long sampling + scoring took (for `timing`); with
        `prefix_sharing`, scores each group's prompt once and prefills it once when sampling
        (`prefix_sharing.py`); with bf16, samples under autocast; with a `constraint`, samples
        on the transformers path through it (`constrained_generation`); on the CPU, draws
        tokens without `torch.multinomial`'s cost (`sampling.py`, the same distribution)."""

        timer: dict[str, float]
        constraint: Any = None
        """The `response_format` constraint; `None`: free sampling (or vLLM's own)."""
        prefix_sharing: bool = False
        """Score each group's prompt once (`prefix_sharing.py`)."""
        eager_attention: bool = False
        """The model adds its attention mask (eager attention): packed masks are float."""
        tool_stats: ToolStats | None = None
        """An agent job's per-step tool metrics (`agent.py`)."""
        _agent_completions: tuple[list[Any], list[str]] = ([], [])
        """The step's completions and how each rollout ended (`agent.ending`)."""

        def _get_per_token_logps_and_entropies(
            self,
            model: Any,
            input_ids: Any,
            attention_mask: Any,
            logits_to_keep: int,
            batch_size: int | None = None,
            compute_entropy: bool = False,
            compute_aux_loss: bool = False,
            **multimodal: Any,
        ) -> Any:
            plain = all(value is None for value in multimodal.values())
            if not (self.prefix_sharing and plain and not compute_aux_loss):
                return super()._get_per_token_logps_and_entropies(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size,
                    compute_entropy,
                    compute_aux_loss,
                    **multimodal,
                )
            logps, entropies = prefix_sharing.score(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                autocast=self.accelerator.autocast,
                pad_id=self._tokenizer.pad_token_id or 0,
                eager=self.eager_attention,
            )
            return logps, entropies, None

        def _generate_and_score_completions(self, inputs: Any) -> Any:
            started = perf_counter()
            try:
                output = super()._generate_and_score_completions(inputs)
            finally:
                self.timer["generate_and_score"] += perf_counter() - started
            if self.environments:
                output = self._agent_step(output)
            return output

        def _agent_step(self, output: dict[str, Any]) -> dict[str, Any]:
            """Count the step's tool calls; leave dropped rollouts out of the loss."""
            episodes: list[Any] = list(self.environments or [])
            dropped = [i for i, episode in enumerate(episodes) if episode.dropped]
            mask = output["completion_mask"]
            if "num_items_in_batch" in output:  # the tokens the loss averages over (all ranks)
                tool_mask = output.get("tool_mask")
                trained = mask if tool_mask is None else mask * tool_mask
                removed = trained[dropped].sum() if dropped else trained.sum() * 0
                output["num_items_in_batch"] -= self.accelerator.gather(removed).sum()
            if dropped:
                mask[dropped] = 0
            if self.tool_stats is not None:
                tool_mask = output.get("tool_mask")  # 0 on tool turns (padding is 1)
                tool_tokens = 0 if tool_mask is None else int((tool_mask == 0).sum())
                completions, endings = self._agent_completions
                self.tool_stats.add(episodes, completions, tool_tokens, endings)
            return output

        def _calculate_rewards(
            self, inputs: Any, prompts: Any, completions: Any, completion_ids: Any
        ) -> Any:
            episodes: list[Any] = list(self.environments or [])
            for episode in episodes:  # graders read the environment's reward()
                episode._finish()
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids)
            if self.environments:
                ends = {*self.eos_token_ids, self._tokenizer.pad_token_id}
                steps = self.max_tool_calling_iterations
                endings = [
                    ending(c, ids, ends, steps)
                    for c, ids in zip(completions, completion_ids, strict=True)
                ]
                self._agent_completions = (list(completions), endings)
                import torch
                from accelerate.utils import gather

                # TRL returns every process's rewards: the drop flags are gathered the same way
                local = [bool(episode.dropped) for episode in self.environments]
                dropped = gather(torch.tensor(local, device=rewards.device)).tolist()
                rewards = agent_rewards(rewards, dropped, self.num_generations)
            return rewards

        def _generate_single_turn(self, prompt_ids: Any, *args: Any, **kwargs: Any) -> Any:
            import torch

            generate: Any = super()._generate_single_turn
            paged = getattr(self, "use_transformers_continuous_batching", False)
            if self.use_vllm or paged:
                return generate(prompt_ids, *args, **kwargs)
            model = self.accelerator.unwrap_model(self.model_wrapped)
            with ExitStack() as stack:
                stack.enter_context(sampling.sampled_fast(model))
                if self.args.bf16:  # peft's generate bypasses accelerate's autocast forward
                    device = self.accelerator.device.type
                    stack.enter_context(torch.autocast(device, dtype=torch.bfloat16))
                if self.prefix_sharing:
                    stack.enter_context(prefix_sharing.shared_prefill(model))
                if self.constraint is not None:
                    eos = self.eos_token_ids
                    stack.enter_context(constrained_generate(model, self.constraint, eos))
                return generate(prompt_ids, *args, **kwargs)

    return _Timed


def supervise(
    config: TrainingConfig,
    settings: SFTSettings,
    model: Any,
    tokenizer: Any,
    rows: list[Row],
    out: Path,
    agent: Agent | None = None,
) -> Any:
    """A supervised stage (TRL `SFTTrainer`) on `settings.training_file` or the job's rows;
    an agent job's prompts show its tools, as its rollouts' do."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl.trainer.sft_trainer import SFTTrainer

    source = read_sft_jsonl(settings.training_file, None) if settings.training_file else rows
    tools_for = None
    if agent is not None:
        tools_for = lambda row: agent.schemas[agent.environment(row)]  # noqa: E731
    records = sft_records(source, settings.completion, tools_for)
    store_frozen(config, model)  # as the GRPO stage that may follow does
    trainer = SFTTrainer(
        model=model,
        args=build_sft_config(settings, config, out, len(records)),
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer


def run_supervised(
    config: TrainingConfig,
    model: Any,
    tokenizer: Any,
    train_rows: list[Row],
    valid_rows: list[Row],
    out: Path,
    started: float,
) -> TrainResult:
    """`method: supervised`: SFT with the job's epochs, learning rate and batch size (or the
    `sft_warmup` section), evaluated with the grader before and after when one is given."""
    settings = config.sft_warmup or SFTSettings(
        n_epochs=config.n_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
    )
    if settings.max_steps is None and config.max_steps is not None:  # the job's own cap
        settings = settings.model_copy(update={"max_steps": config.max_steps})
    evaluator = None
    if config.grader is not None:
        context = GradeContext.from_environment()
        reward = GraderReward(config.grader, context, response_format=config.response_format)
        prompts = [prompt_only(row) for row in valid_rows]
        evaluator = build_evaluator(config, model, tokenizer, prompts, reward)
    store_frozen(config, model)  # before the baseline: both evaluations see the same base
    baseline = evaluator.run(0) if evaluator else None
    trainer = supervise(config, settings, model, tokenizer, train_rows, out / "sft")
    final = evaluator.run(trainer.state.global_step) if evaluator else None
    checkpoint = out / CHECKPOINTS / checkpoint_name(trainer.state.global_step)
    trainer.save_model(str(checkpoint))
    tokenizer.save_pretrained(checkpoint)
    # the info file marks the checkpoint complete: the service lists it, and the job's
    # `fine_tuned_model` (a base for a chained job) resolves to it
    valid = final.reward_mean if final else None
    info: CheckpointInfo = {
        "step": trainer.state.global_step,
        "valid_reward_mean": valid,
        "paused": False,
    }
    write_checkpoint_info(checkpoint, info)
    return TrainResult(
        output_dir=out,
        steps=trainer.state.global_step,
        total_steps=trainer.state.max_steps,
        baseline_valid_reward=baseline.reward_mean if baseline else None,
        final_valid_reward=final.reward_mean if final else None,
        checkpoints=[checkpoint],
        best_checkpoint=checkpoint,
        seconds=perf_counter() - started,
    )


def find_resume_point(path: Path) -> Path:
    """A checkpoint dir as given, or the latest complete checkpoint of a run dir: one whose
    `trainer_state.json` (saved after the weights and optimizer) reads, so a checkpoint that a
    kill interrupted mid-save is passed over."""
    if (path / TRAINER_STATE).exists():
        return path
    found = [p for p in list_checkpoints(path / CHECKPOINTS) if _complete(p)]
    found = found or [p for p in list_checkpoints(path) if _complete(p)]
    if not found:
        raise ConfigError([Problem(str(path), "no checkpoint to resume from here")])
    return found[-1]


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was saved at."""
    state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    return int(state["global_step"])


def summarize_finished(out: Path, checkpoint: Path, started: float) -> TrainResult:
    """The result of a resumed run that has nothing left to train: its checkpoint is at the
    last step. The report is written again; metrics and checkpoints are left as they are."""
    (out / PAUSED_INFO).unlink(missing_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        report.write(out)
    steps = checkpoint_step(checkpoint)
    return TrainResult(
        output_dir=out,
        steps=steps,
        total_steps=steps,
        checkpoints=list_checkpoints(out / CHECKPOINTS),
        best_checkpoint=best_checkpoint(out / CHECKPOINTS),
        seconds=perf_counter() - started,
    )


def summarize(out: Path, callback: RunCallback, state: Any, started: float) -> TrainResult:
    evals = callback.evals
    return TrainResult(
        output_dir=out,
        steps=state.global_step,
        total_steps=state.max_steps,
        paused=callback.paused,
        baseline_valid_reward=evals[0].reward_mean if evals and evals[0].step == 0 else None,
        final_valid_reward=evals[-1].reward_mean if evals else None,
        checkpoints=list_checkpoints(out / CHECKPOINTS),
        best_checkpoint=best_checkpoint(out / CHECKPOINTS),
        seconds=perf_counter() - started,
    )


def main(argv: list[str]) -> None:
    """Entry point of one rank: `python -m openrft.training.grpo CONFIG.json OUT [RESUME]`.
    A failure, reading the config included, is recorded in `OUT/error.json`."""
    with failures_recorded(Path(argv[1])):
        _rank(argv)


def _rank(argv: list[str]) -> None:
    config = load(json.loads(Path(argv[0]).read_text(encoding="utf-8")), dialect="native")
    resume = Path(argv[2]) if len(argv) > 2 else None
    try:
        run(config, Path(argv[1]), resume=resume)
    except BaseException:
        _leave_process_group(wait=False)  # the other ranks may be gone: no barrier
        raise
    _leave_process_group(wait=True)


def _leave_process_group(wait: bool) -> None:
    """Wait for the other ranks, then tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's threads can still be running when their C++ objects
    are destroyed ("terminate called without an active exception", SIGABRT): on a loaded
    machine one rank then dies at exit although training succeeded."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
