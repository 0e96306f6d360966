"""The run's bookkeeping, as one `transformers` callback: metrics, evaluation, checkpoints, budget.

Per optimizer step, `RunCallback` writes one line to `metrics.jsonl` (a `rundir.MetricsLine`),
shaped like OpenAI's fine-tuning metrics events:

```json
{"step": 3, "total_steps": 10,
 "scores": {"train_reward_mean": 0.41, "valid_reward_mean": null,
            "train_graders": {"correct": 0.41}, "valid_graders": {}},
 "usage": {"completion_tokens_mean": 12.5, "train_reasoning_tokens_mean": 0.0,
           "valid_reasoning_tokens_mean": null, "trained_tokens": 5120},
 "errors": {"sample_parse_error": 0.0},
 "timing": {"sampling": 6.1, "grading": 0.01, "training": 4.2, "eval": 0.0, "step": 10.3},
 "trl": {"kl": 0.0, "entropy": 1.7, "clip_ratio/region_mean": 0.0, "frac_reward_zero_std": 0.5},
 "warnings": [],
 "events": [{"code": "zero_signal", "level": "warn", "step": 3, "action": "warn",
             "message": "Step 3: 3 steps in a row …", "data": {…}}]}
```

`events` holds what the run says at that step: the live diagnosis's findings
(`diagnosis.py`; a `pause` finding pauses the run like a budget, with `paused.json` saying why,
a `fail` one fails it with `error.json` code `diagnosis_failed`), and on the baseline line of a
job without a validation file, that validation rows were carved out of its training rows.
Reasoning tokens are counted with the tokenizer (`evaluate.reasoning_token_counts`).

Step 0 is the baseline evaluation; validation also runs every `eval_interval` steps, at every
checkpoint step and at the last step. Checkpoints (HF-format LoRA adapters plus the optimizer
state a `--resume` needs) are saved at `n_checkpoints` evenly spaced steps; the best
`keep_best_k` by `valid_reward_mean` and the last are kept. A budget (seconds, steps, tokens)
stops training after the current step with a checkpoint. Only the main process writes files
and evaluates; every rank writes `ranks/rank-N.json` so multi-process runs can be checked.

It reads only its `RunSettings`, which `build_run_callback` takes from the job's config. What it
does not do: sample, grade or compute losses (TRL does), or draw plots (`report.py`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from openrft.data.split import MAX_VALIDATION_ROWS
from openrft.graders.python_grader import check_error_rate
from openrft.training.agent import ToolStats
from openrft.training.config import Budget, TrainingConfig
from openrft.training.diagnosis import (
    FAILED_CODE,
    Diagnosis,
    DiagnosisError,
    DiagnosisSettings,
    Finding,
    strongest,
)
from openrft.training.evaluate import (
    EvalResult,
    Evaluator,
    reasoning_token_counts,
    write_samples,
)
from openrft.training.rewards import GraderReward, GradeStats
from openrft.training.rundir import (
    CHECKPOINT_PREFIX,
    PAUSE_REQUEST,
    PAUSED_INFO,
    CheckpointInfo,
    MetricsLine,
    RunEvent,
    append_metrics,
    checkpoint_name,
    checkpoint_name_step,
    failure,
    rank_path,
    read_checkpoint_info,
    read_metrics,
    write_checkpoint_info,
    write_error,
    write_paused,
)

ZERO_VARIANCE_WARNING = 0.75
"""Warn when more than this share of a step's groups have identical rewards (no signal)."""


TRL_KEYS = ("kl", "entropy", "frac_reward_zero_std", "reward_std", "loss", "grad_norm", "epoch")
TRL_PREFIXES = ("clip_ratio", "completions/", "tools/")


def checkpoint_steps(total: int, n: int) -> set[int]:
    """`n` evenly spaced steps in 1..total, always including `total`."""
    return {max(1, round(total * i / n)) for i in range(1, n + 1)} | {total}


@dataclass(frozen=True)
class RunSettings:
    """What `RunCallback` needs of a job's config."""

    n_checkpoints: int
    """Checkpoints saved at evenly spaced steps (the last step always included)."""
    keep_best_k: int
    """Checkpoints kept besides the last, ranked by `valid_reward_mean`."""
    eval_interval: int | None
    """Evaluate every this many steps (besides step 0, checkpoint steps and the last)."""
    max_grader_error_rate: float
    """Fail the step (`GradingError`) when more of its samples than this failed to grade."""
    budget: Budget
    """Seconds, steps and tokens of this session after which the run pauses."""
    diagnosis: DiagnosisSettings = field(default_factory=DiagnosisSettings)
    """The live checks on each step's metrics, and what each does when it fires."""
    max_completion_length: int | None = None
    """Named in the truncation finding."""
    carved_out: tuple[float, int] | None = None
    """`(validation_share, seed)` when the validation rows were carved out of the training
    rows (no validation file); the baseline line says so."""


def build_run_callback(
    config: TrainingConfig,
    output_dir: Path,
    reward: GraderReward,
    evaluator: Evaluator,
    *,
    resumed: bool = False,
    progress: bool = False,
) -> RunCallback:
    """The `RunCallback` of a job, with the settings it reads from `config`."""
    settings = RunSettings(
        n_checkpoints=config.n_checkpoints,
        keep_best_k=config.keep_best_k,
        eval_interval=config.eval_interval,
        max_grader_error_rate=config.max_grader_error_rate,
        budget=config.budget,
        diagnosis=config.diagnosis,
        max_completion_length=config.max_completion_length,
        carved_out=None if config.validation_file else (config.validation_share, config.seed),
    )
    return RunCallback(settings, output_dir, reward, evaluator, resumed=resumed, progress=progress)


class RunCallback(TrainerCallback):
    """Metrics lines, evaluation schedule, checkpoints, budget pause and the progress bar."""

    def __init__(
        self,
        settings: RunSettings,
        output_dir: Path,
        reward: GraderReward,
        evaluator: Evaluator,
        *,
        resumed: bool = False,
        progress: bool = False,
    ) -> None:
        self.settings = settings
        self.output_dir = output_dir
        self.reward = reward
        self.evaluator = evaluator
        self.resumed = resumed
        self.timer: dict[str, float] = {"generate_and_score": 0.0}
        self.tool_stats = ToolStats()
        """An agent job's tool calls, counted by the trainer (`agent.py`)."""
        """Filled by the trainer: seconds spent sampling and scoring this step."""
        self.setup: dict[str, tuple[bool, str]] = {}
        """Filled by the trainer builder: `bf16` and `prefix_sharing`, each (on, why)."""
        self.evals: list[EvalResult] = []
        self.paused = False
        self.last_valid: EvalResult | None = None
        self._pending_eval: EvalResult | None = None
        self._checkpoints: set[int] = set()
        self._started = perf_counter()
        self._step_started = perf_counter()
        self._tokens_at_start = 0
        self._steps_at_start = 0
        self._steps_run = 0
        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._show_progress = progress
        self._last_warning = -100
        self.diagnosis = Diagnosis(settings.diagnosis, output_dir, settings.max_completion_length)

    # --- lifecycle ------------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._checkpoints = checkpoint_steps(state.max_steps, self.settings.n_checkpoints)
        self._tokens_at_start = state.num_input_tokens_seen or 0
        (self.output_dir / PAUSED_INFO).unlink(missing_ok=True)
        self._steps_at_start = state.global_step
        if state.is_world_process_zero:
            self._start_progress(state)
            for _, reason in self.setup.values():  # the run's first lines: bf16, prefix sharing
                self._print(escape(reason))
            if self.resumed:  # what an earlier session saw: its findings are not repeated
                lines = read_metrics(self.output_dir)
                self.diagnosis.replay(line for line in lines if line["step"] <= state.global_step)
            else:
                result = self._evaluate(0)
                line = self._line(state, {}, result, 0.0)
                line["events"] = self._setup_event() + self._carve_out_notice(_dataset_rows(kwargs))
                self.diagnosis.observe(line)
                self._write_line(line)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self._step_started = perf_counter()
        self.timer["generate_and_score"] = 0.0

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        step = state.global_step
        self._steps_run += 1
        self._step_seconds = perf_counter() - self._step_started
        requested = (self.output_dir / PAUSE_REQUEST).exists()
        budget_hit = rank_zero_decides(self._budget_reached(state) or requested)
        last = step >= state.max_steps
        save = step in self._checkpoints or budget_hit or last
        interval = self.settings.eval_interval
        due = bool(interval and step % interval == 0) or save
        self._pending_eval = None
        if due and state.is_world_process_zero:
            self._pending_eval = self._evaluate(step)
        if save:
            control.should_save = True
        if budget_hit and not last:
            self.paused = True
            control.should_training_stop = True
            if state.is_world_process_zero:
                write_paused(self.output_dir, "request" if requested else "budget", step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if not logs or "reward" not in logs:
            return  # the end-of-training summary, not a step
        stats = self.reward.stats.take()
        # raises GradingError (with sample tracebacks): the job fails, as documented
        check_error_rate(
            stats.failures, threshold=self.settings.max_grader_error_rate, total=stats.samples
        )
        acted_on: Finding | None = None
        if state.is_world_process_zero:
            acted_on = strongest(self._log_step(state, logs, stats))
        # every rank stops (or fails) at the same step, as rank 0's diagnosis says
        acted_on = from_rank_zero(acted_on)
        if acted_on is not None:
            self._act(acted_on, state, control)

    def _log_step(
        self, state: TrainerState, logs: dict[str, Any], stats: GradeStats
    ) -> list[Finding]:
        """Write the step's metrics line (with the diagnosis's findings); the findings."""
        grading = stats.seconds
        sampling = max(0.0, self.timer["generate_and_score"] - grading)
        line = self._line(state, logs, self._pending_eval, getattr(self, "_step_seconds", 0.0))
        line["errors"] = {flag: n / max(1, stats.samples) for flag, n in stats.errors.items()}
        line["usage"]["train_reasoning_tokens_mean"] = self._train_reasoning_tokens()
        timing = line["timing"]
        timing["sampling"], timing["grading"] = sampling, grading
        timing["training"] = max(0.0, timing["step"] - sampling - grading)
        line["warnings"] = self._warnings(state.global_step, logs)
        line["tools"] = self.tool_stats.take()
        findings = self.diagnosis.observe(line)
        line["events"] = [finding.event() for finding in findings]
        for event in line["events"]:
            self._print(f"[yellow]diagnosis:[/] {escape(event['message'])}")
        self._write_line(line)
        self._update_progress(state, logs)
        return findings

    def _act(self, finding: Finding, state: TrainerState, control: TrainerControl) -> None:
        """Pause (checkpoint, `paused.json`) or fail (`error.json`, `DiagnosisError`)."""
        message = finding.event()["message"]
        if finding.action == "fail":
            error = DiagnosisError(message)
            if state.is_world_process_zero:
                write_error(self.output_dir, failure(error, FAILED_CODE))
            raise error
        if finding.action == "pause" and state.global_step < state.max_steps:
            self.paused = True
            control.should_save = True
            control.should_training_stop = True
            if state.is_world_process_zero:
                write_paused(self.output_dir, "diagnosis", state.global_step, message)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        directory = Path(str(args.output_dir)) / checkpoint_name(state.global_step)
        valid = self.last_valid.reward_mean if self.last_valid else None
        info: CheckpointInfo = {
            "step": state.global_step,
            "valid_reward_mean": valid,
            "paused": self.paused,
        }
        write_checkpoint_info(directory, info)
        prune_checkpoints(Path(str(args.output_dir)), self.settings.keep_best_k)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self._stop_progress()
        path = rank_path(self.output_dir, args.process_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": args.process_index,
            "world_size": args.world_size,
            "steps": self._steps_run,
            "global_step": state.global_step,
        }
        path.write_text(json.dumps(record))

    # --- pieces -------------------------------------------------------------------------------

    def _evaluate(self, step: int) -> EvalResult:
        result = self.evaluator.run(step)
        write_samples(result, self.output_dir)
        self.evals.append(result)
        self.last_valid = result
        if self._progress is None:
            self._console.print(f"step {step}: valid reward {result.reward_mean:.3f}")
        else:
            self._progress.console.print(f"step {step}: valid reward {result.reward_mean:.3f}")
        return result

    def _budget_reached(self, state: TrainerState) -> bool:
        budget = self.settings.budget
        seconds = perf_counter() - self._started
        tokens = (state.num_input_tokens_seen or 0) - self._tokens_at_start
        steps = state.global_step - self._steps_at_start
        return bool(
            (budget.max_seconds and seconds >= budget.max_seconds)
            or (budget.max_steps and steps >= budget.max_steps)
            or (budget.max_tokens and tokens >= budget.max_tokens)
        )

    def _line(
        self, state: TrainerState, logs: dict[str, Any], valid: EvalResult | None, seconds: float
    ) -> MetricsLine:
        prefix = f"rewards/{self.reward.grader.name}/"
        graders = {
            key.removeprefix(prefix).removesuffix("/mean"): value
            for key, value in logs.items()
            if key.startswith(prefix) and key.endswith("/mean") and key != prefix + "mean"
        }
        if not graders and prefix + "mean" in logs:  # a single grader is its own breakdown
            graders = {self.reward.grader.name: logs[prefix + "mean"]}
        trl = {k: v for k, v in logs.items() if k in TRL_KEYS or k.startswith(TRL_PREFIXES)}
        return {
            "step": state.global_step,
            "total_steps": state.max_steps,
            "scores": {
                "train_reward_mean": logs.get("reward"),
                "valid_reward_mean": valid.reward_mean if valid else None,
                "train_graders": graders,
                "valid_graders": valid.grader_means if valid else {},
            },
            "usage": {
                "completion_tokens_mean": logs.get("completions/mean_length"),
                "train_reasoning_tokens_mean": None,
                "valid_reasoning_tokens_mean": valid.reasoning_tokens_mean if valid else None,
                "trained_tokens": state.num_input_tokens_seen,
            },
            "errors": valid.error_rates if valid and not logs else {},
            "timing": {"step": seconds, "eval": valid.seconds if valid else 0.0},
            "trl": trl,
            "tools": None,
            "warnings": [],
            "events": [],
        }

    def _warnings(self, step: int, logs: dict[str, Any]) -> list[str]:
        zero = logs.get("frac_reward_zero_std")
        if zero is None or zero <= ZERO_VARIANCE_WARNING:
            return []
        message = (
            f"{zero:.0%} of groups got identical rewards: no learning signal. Try a grader with "
            "partial credit, more generations, a higher temperature or easier prompts."
        )
        if step - self._last_warning >= 5:
            self._last_warning = step
            self._console.print(f"[yellow]warning (step {step}):[/] {escape(message)}")
        return [message]

    def _train_reasoning_tokens(self) -> float | None:
        """Mean reasoning tokens of the step's training completions, counted with the tokenizer.

        The texts are those of the last batch `GraderReward` graded (it keeps them to grade a
        batch once for all its reward functions): with one generation per optimizer step, as
        `build_grpo_config` sets up, that batch is this step's completions on this process."""
        texts = list(self.reward.last_texts)
        if not texts:
            return None
        counts = reasoning_token_counts(self.evaluator.tokenizer, texts)
        return sum(counts) / len(counts)

    def _setup_event(self) -> list[RunEvent]:
        """The baseline line's event saying what the run computes in and whether it shares
        prompt prefixes (`precision.py`, `prefix_sharing.py`), and why."""
        if not self.setup:
            return []
        message = "Step 0: " + "; ".join(reason for _, reason in self.setup.values())
        data: dict[str, Any] = {key: on for key, (on, _) in self.setup.items()}
        return [{"code": "run_setup", "level": "info", "step": 0, "message": message, "data": data}]

    def _carve_out_notice(self, train_rows: int | None) -> list[RunEvent]:
        """The baseline line's event saying validation rows were held out of the training file."""
        if self.settings.carved_out is None:
            return []
        share, seed = self.settings.carved_out
        held = self.evaluator.held_out
        of = f" of the {train_rows + held} rows" if train_rows is not None else ""
        message = (
            f"Step 0: no validation_file given, so {held}{of} in the training file were held "
            f"out for validation (validation_share {share}, at least 1 and at most "
            f"{MAX_VALIDATION_ROWS} rows, picked with seed {seed}) and are not trained on; give "
            "a validation_file to choose them"
        )
        data = {"held_out": held, "training_rows": train_rows, "share": share, "seed": seed}
        code = "validation_carved_out"
        return [{"code": code, "level": "info", "step": 0, "message": message, "data": data}]

    def _print(self, markup: str) -> None:
        console = self._progress.console if self._progress is not None else self._console
        console.print(markup)

    def _write_line(self, line: MetricsLine) -> None:
        append_metrics(self.output_dir, line)

    def _start_progress(self, state: TrainerState) -> None:
        if not self._show_progress or not self._console.is_terminal:
            return  # off a terminal, `_update_progress` prints one plain line per step
        self._progress = Progress(
            TextColumn("[bold]GRPO"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, status="evaluating…"
        )

    def _update_progress(self, state: TrainerState, logs: dict[str, Any]) -> None:
        valid = f" valid {self.last_valid.reward_mean:.3f}" if self.last_valid else ""
        status = f"reward {logs.get('reward', 0.0):.3f}{valid}"
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step, status=status)
        elif self._show_progress:
            self._console.print(f"step {state.global_step}/{state.max_steps}: {status}")

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def rank_zero_decides(flag: bool) -> bool:
    """Rank 0's value of `flag` on every rank, so all ranks stop at the same step (a clock
    budget can trip on one rank a step before another, which would hang the other)."""
    return bool(from_rank_zero(flag))


T = TypeVar("T")


def from_rank_zero(value: T) -> T:
    """Rank 0's `value` on every rank (a picklable object; the value itself when alone)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def _dataset_rows(kwargs: dict[str, Any]) -> int | None:
    """The training prompts in the trainer's dataset (the callback's `train_dataloader`)."""
    dataset = getattr(kwargs.get("train_dataloader"), "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:  # an iterable dataset has no length
        return None


def _valid_reward(directory: Path) -> float:
    """A checkpoint's `valid_reward_mean` for ranking; -inf when unknown (and, as it always
    has been, when 0.0)."""
    info = read_checkpoint_info(directory)
    return (info.get("valid_reward_mean") if info else None) or float("-inf")


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint dirs under `directory`, oldest step first."""
    steps = {p: checkpoint_name_step(p) for p in directory.glob(CHECKPOINT_PREFIX + "*")}
    found = {p: step for p, step in steps.items() if step is not None and p.is_dir()}
    return sorted(found, key=found.__getitem__)


def prune_checkpoints(directory: Path, keep_best_k: int) -> None:
    """Keep the last checkpoint and the `keep_best_k` best by `valid_reward_mean`."""
    found = list_checkpoints(directory)
    if not found:
        return
    last, others = found[-1], found[:-1]
    scored = sorted(others, key=_valid_reward, reverse=True)
    for stale in scored[keep_best_k:]:
        shutil.rmtree(stale)
    del last


def best_checkpoint(directory: Path) -> Path | None:
    """The kept checkpoint with the highest `valid_reward_mean` (the last one on ties)."""
    found = list_checkpoints(directory)
    if not found:
        return None
    return max(reversed(found), key=_valid_reward)
