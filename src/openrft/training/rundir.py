"""The run directory's contract between a training run and whoever watches it (the service's
worker, the CLI, the dashboard): the file names, the shapes of what is in them, the pause
request, the exit codes and the error file. Producers write and readers read these files only
through the names and functions here.

Torch-free on purpose: the worker and the API import it without importing training.

```
RUN_DIR/
  config.json             the native config (the worker and multi-process launches write it)
  preflight.json          the pre-flight report (preflight.py), written before training
  metrics.jsonl           one `MetricsLine` per step (callbacks.py writes, progress.py tails)
  evals/step-N.jsonl      one `EvalSample` per validation row of the evaluation at step N
  checkpoints/checkpoint-N/openrft_checkpoint.json   a `CheckpointInfo`, written last
  PAUSE                   created by a watcher: checkpoint after this step, exit EXIT_PAUSED
  paused.json             written by the run when it pauses: a `PausedInfo`
  error.json              written by the run when it fails: a `RunError`
  report.md               the end-of-run report (report.py), next to its plots
  ranks/rank-K.json       per-rank step counts (multi-process runs)
```

Exit codes: `EXIT_DONE` (finished, or stopped at its budget: `paused_info` tells a watcher that
it paused rather than finished), `EXIT_PAUSED` (paused on request), anything else failed, with
`error.json` saying why unless the process was killed or crashed hard.

Every reader tolerates a missing, partial or foreign file (None, or the line skipped): a watcher
reads while the run writes. Nothing here trains, evaluates or talks to the store.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast, get_args

from openrft.api_errors import http_shape
from openrft.errors import OpenRFTError

# --- names -----------------------------------------------------------------------------------

CONFIG = "config.json"
METRICS = "metrics.jsonl"
EVALS = "evals"
"""Directory of the evaluations' samples: `evals/step-N.jsonl`."""
CHECKPOINTS = "checkpoints"
"""Directory of the checkpoints: `checkpoints/checkpoint-N/` (TRL's naming)."""
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_INFO = "openrft_checkpoint.json"
"""File in each checkpoint dir recording its step and `valid_reward_mean`, written last."""
PAUSE_REQUEST = "PAUSE"
"""Created in the run dir by whoever wants the run to pause: the run checkpoints after the
current step and exits `EXIT_PAUSED`; `--resume` continues it."""
PAUSED_INFO = "paused.json"
"""Written when a run pauses: `PausedInfo`."""
ERROR_INFO = "error.json"
"""Written when a run fails: `RunError`."""
REPORT = "report.md"
PREFLIGHT = "preflight.json"
"""The pre-flight report (`training/preflight.py`): sampled rewards, verdict and advice."""
RANKS = "ranks"
"""Directory of `rank-K.json`, one per rank: `{rank, world_size, steps, global_step}`."""

EXIT_DONE = 0
"""Exit status of a run that finished, or stopped at its budget (see `paused_info`)."""
EXIT_PAUSED = 75
"""Exit status of a run paused on request (BSD's EX_TEMPFAIL: try again later)."""

EVAL_FILE = re.compile(r"step-(\d+)\.jsonl")
MESSAGE_LIMIT = 4096
"""Characters of an error's message kept in `error.json` (a grading error quotes tracebacks)."""


def checkpoint_name(step: int) -> str:
    """`checkpoint-N`, the directory of the checkpoint saved at step N."""
    return f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_name_step(directory: Path) -> int | None:
    """The step in a checkpoint directory's name, None when it is not one."""
    digits = directory.name.removeprefix(CHECKPOINT_PREFIX)
    if not directory.name.startswith(CHECKPOINT_PREFIX) or not digits.isdigit():
        return None
    return int(digits)


def eval_samples_path(run_dir: Path, step: int) -> Path:
    return run_dir / EVALS / f"step-{step}.jsonl"


def rank_path(run_dir: Path, rank: int) -> Path:
    return run_dir / RANKS / f"rank-{rank}.json"


# --- shapes ----------------------------------------------------------------------------------


class Scores(TypedDict):
    train_reward_mean: float | None
    """The step's mean training reward (None on the step-0 baseline line)."""
    valid_reward_mean: float | None
    """The mean validation reward when the step evaluated, else None."""
    train_graders: dict[str, float]
    """Each top-level sub-grader's mean training reward."""
    valid_graders: dict[str, float]


class Usage(TypedDict):
    completion_tokens_mean: float | None
    train_reasoning_tokens_mean: float | None
    """Mean tokens inside `<think>…</think>` of the step's training completions, counted with
    the tokenizer (OpenAI's name); None when the step's completions were not seen."""
    valid_reasoning_tokens_mean: float | None
    """The same over the evaluation's completions, when the step evaluated, else None."""
    trained_tokens: int | None
    """Tokens seen so far, over all sessions of a resumed run."""


class Timing(TypedDict):
    """Seconds; `sampling`, `grading` and `training` are on training steps only."""

    step: float
    eval: float
    sampling: NotRequired[float]
    grading: NotRequired[float]
    training: NotRequired[float]


class MetricsLine(TypedDict):
    """One line of `metrics.jsonl`, shaped like OpenAI's fine-tuning metrics events; step 0 is
    the baseline evaluation."""

    step: int
    total_steps: int
    scores: Scores
    usage: Usage
    errors: dict[str, float]
    """Share of the step's samples with each grader error flag."""
    timing: Timing
    trl: dict[str, float]
    """TRL's own numbers: kl, entropy, clip ratios, loss, …"""
    warnings: list[str]
    tools: dict[str, Any] | None
    """An agent job's tool calls this step (`training/agent.py:ToolStats`): calls and turns
    per rollout, tool-output tokens per call, latency, error rate, dropped and truncated
    rollouts, overall and `per_tool`; None without tools (and on the step-0 line)."""
    events: NotRequired[list[RunEvent]]
    """What the run says at this step beyond numbers (a diagnosis, the validation carve-out);
    the service makes each one a job event. Always written (often empty); lines of runs from
    before it existed lack it."""


RUN_EVENT_CODES = (
    "validation_carved_out",
    "reward_hacking",
    "entropy_collapse",
    "length_collapse",
    "zero_signal",
    "grader_errors",
    "length_limit",
    "run_setup",  # appended: an event's store key is its code's index (`run_event_key`)
)
"""The codes a `RunEvent` may have (`diagnosis.py` defines the diagnoses)."""


class RunEvent(TypedDict):
    """One thing a run reports at a step, for the job's events (level `info` or `warn`)."""

    code: str
    """One of `RUN_EVENT_CODES`: a diagnosis signal, `run_setup` (what the run computes in and
    whether it shares prefixes) or `validation_carved_out`."""
    level: Literal["info", "warn"]
    step: int
    message: str
    """A sentence a user can act on, starting `Step N:`."""
    action: NotRequired[str]
    """A diagnosis's action: `warn`, `pause` or `fail`."""
    data: NotRequired[dict[str, Any]]
    """The evidence: the numbers compared, the steps, and samples where there are some."""


def run_event_key(step: int, code: str) -> int:
    """A stable integer per (step, code), so a resumed run that repeats a step's event adds
    nothing twice (the store de-duplicates events by source and key)."""
    index = RUN_EVENT_CODES.index(code) if code in RUN_EVENT_CODES else len(RUN_EVENT_CODES)
    return step * 64 + index


class EvalSample(TypedDict):
    """One line of `evals/step-N.jsonl`: one validation row's completion and its grade."""

    step: int
    prompt: Any
    reference: Any
    """The row's `reference_answer`, else all its item fields."""
    completion: str
    reward: float
    sub_rewards: dict[str, float]
    prompt_tokens: NotRequired[int]
    """Tokens of the rendered prompt (runs before 2026-12 did not write them)."""
    completion_tokens: NotRequired[int]
    """Tokens generated, the end-of-sequence token included."""
    trajectory: NotRequired[list[dict[str, Any]]]
    """An agent job's rollout: every message after the prompt (`completion` is the final
    answer); the fields below come with it."""
    turns: NotRequired[int]
    tool_calls: NotRequired[list[dict[str, Any]]]
    """Each call: `name`, `arguments`, `error` (None when it answered), `seconds`."""
    dropped: NotRequired[bool]
    truncated: NotRequired[bool]


class CheckpointInfo(TypedDict):
    step: int
    valid_reward_mean: float | None
    """The validation reward of the evaluation at this step (checkpoints are ranked by it)."""
    paused: bool
    """Saved because the run paused (budget or request)."""
    train_reward_mean: NotRequired[float | None]
    """Not written by OpenRFT's run; a reader takes it from the metrics line instead."""


PauseReason = Literal["request", "budget", "diagnosis"]
PAUSE_REASONS: tuple[PauseReason, ...] = get_args(PauseReason)


class PausedInfo(TypedDict):
    """Why and where a run paused."""

    reason: PauseReason
    step: int
    message: NotRequired[str]
    """Why, in a sentence (a `diagnosis` pause says which signal fired and what it saw)."""


class RunError(TypedDict):
    """Why a run failed: what the service's job `error` becomes."""

    code: str
    """Machine-readable: `grader_error_rate`, `out_of_memory`, `invalid_model`, … (`failure`)."""
    message: str
    type: str
    """The exception's class, e.g. `GradingError`."""
    param: str | None
    """The job setting at fault (`model`, `training_file`), when one is."""


# --- metrics ---------------------------------------------------------------------------------


def append_metrics(run_dir: Path, line: MetricsLine) -> None:
    with (run_dir / METRICS).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def parse_metrics_line(text: str) -> MetricsLine | None:
    """A `metrics.jsonl` line, or None when it is not one (not JSON, no integer `step`)."""
    value = _json(text)
    if not isinstance(value, dict) or type(value.get("step")) is not int:
        return None
    return cast(MetricsLine, value)


def read_metrics(run_dir: Path) -> list[MetricsLine]:
    """Every metrics line of a run, in file order (a resumed run may repeat steps)."""
    return [line for line in map(parse_metrics_line, _lines(run_dir / METRICS)) if line]


# --- evaluations -----------------------------------------------------------------------------


def write_eval_samples(run_dir: Path, step: int, samples: list[EvalSample]) -> Path:
    path = eval_samples_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for sample in samples:
            out.write(json.dumps(sample, ensure_ascii=False) + "\n")
    return path


def read_eval_samples(path: Path) -> list[EvalSample]:
    """The samples of one evaluation file (lines that are not JSON objects are skipped)."""
    values = (_json(text) for text in _lines(path))
    return [cast(EvalSample, value) for value in values if isinstance(value, dict)]


def eval_steps(run_dir: Path) -> dict[int, Path]:
    """The run's evaluation files by step."""
    found = {}
    for path in (run_dir / EVALS).glob("step-*.jsonl"):
        match = EVAL_FILE.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


# --- checkpoints -----------------------------------------------------------------------------


def write_checkpoint_info(directory: Path, info: CheckpointInfo) -> None:
    (directory / CHECKPOINT_INFO).write_text(json.dumps(info), encoding="utf-8")


def read_checkpoint_info(directory: Path) -> CheckpointInfo | None:
    """A checkpoint's info, or None while it is being written (or when it is not ours)."""
    value = _json(_read(directory / CHECKPOINT_INFO))
    if not isinstance(value, dict) or type(value.get("step")) is not int:
        return None
    return cast(CheckpointInfo, value)


# --- pre-flight ------------------------------------------------------------------------------


def read_preflight(run_dir: Path) -> dict[str, Any] | None:
    """The run's pre-flight report (`preflight.py`'s `PreflightReport` as JSON), or None when
    it wrote none (or it is unreadable)."""
    data = _json(_read(run_dir / PREFLIGHT))
    return data if isinstance(data, dict) and isinstance(data.get("passed"), bool) else None


# --- pause -----------------------------------------------------------------------------------


def write_paused(run_dir: Path, reason: PauseReason, step: int, message: str = "") -> None:
    info: PausedInfo = {"reason": reason, "step": step}
    if message:
        info["message"] = message
    (run_dir / PAUSED_INFO).write_text(json.dumps(info), encoding="utf-8")


def paused_info(run_dir: Path) -> PausedInfo | None:
    """The run's pause info, or None when it did not pause (or the file is unreadable)."""
    data = _json(_read(run_dir / PAUSED_INFO))
    if not isinstance(data, dict) or data.get("reason") not in PAUSE_REASONS:
        return None
    step = data.get("step")
    info: PausedInfo = {"reason": data["reason"], "step": step if isinstance(step, int) else 0}
    if isinstance(data.get("message"), str):
        info["message"] = data["message"]
    return info


# --- failure ---------------------------------------------------------------------------------

FAILURES: dict[str, str] = {
    "MemoryError": "out_of_memory",
    "torch.OutOfMemoryError": "out_of_memory",
}
"""Codes of errors outside OpenRFT's tree, by class (`module.Name`; builtins by name alone). An
`OpenRFTError` gets the `code` the API gives it (`api_errors.py`'s `LIBRARY_ERRORS`), so a
job fails with the code a request with the same mistake is refused with; an error in neither
table is `FAILED`."""
FAILED = "training_failed"


def failure(exc: BaseException, code: str | None = None, param: str | None = None) -> RunError:
    """The `RunError` for `exc`: `code` if given, else its class's (or a base class's)."""
    message = str(exc).strip() or type(exc).__name__
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + "…"
    kind = type(exc).__name__
    return {"code": code or failure_code(exc), "message": message, "type": kind, "param": param}


def failure_code(exc: BaseException) -> str:
    """The code of `exc`'s class in `LIBRARY_ERRORS` or `FAILURES`, else `FAILED`."""
    if isinstance(exc, OpenRFTError):
        return http_shape(exc).code
    for kind in type(exc).__mro__:
        module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
        if module + kind.__name__ in FAILURES:
            return FAILURES[module + kind.__name__]
    return FAILED


def write_error(run_dir: Path, error: RunError) -> bool:
    """Write `error.json` unless there is one: the first failure is the cause (the other ranks
    of a multi-process run fail after it, of its consequences). False when nothing was written;
    a failure to write is reported on stderr, never raised over the error being recorded."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = os.open(run_dir / ERROR_INFO, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        print(f"openrft: cannot write {run_dir / ERROR_INFO}: {exc}", file=sys.stderr)
        return False
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(error))
    return True


def read_error(run_dir: Path) -> RunError | None:
    """The run's error, or None when it wrote none (it succeeded, or was killed)."""
    data = _json(_read(run_dir / ERROR_INFO))
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        return None
    param = data.get("param")
    return {
        "code": data["code"],
        "message": str(data.get("message") or data["code"]),
        "type": str(data.get("type") or ""),
        "param": param if isinstance(param, str) else None,
    }


def clear_error(run_dir: Path) -> None:
    """Remove an earlier attempt's error file (before starting the next)."""
    (run_dir / ERROR_INFO).unlink(missing_ok=True)


@contextmanager
def failures_recorded(run_dir: Path) -> Iterator[None]:
    """Write `error.json` for an exception out of the block (unless a `failing_as` inside
    recorded it more precisely). Rank 0 first removes an earlier run's file."""
    if int(os.environ.get("RANK", "0")) == 0:
        clear_error(run_dir)
    try:
        yield
    except Exception as exc:  # recorded, then raised on: the process still fails with it
        write_error(run_dir, failure(exc))
        raise


@contextmanager
def failing_as(
    run_dir: Path, code: str, param: str | None, *kinds: type[Exception]
) -> Iterator[None]:
    """An error of `kinds` out of the block is `code` (the job's `param` is at fault)."""
    try:
        yield
    except kinds as exc:
        write_error(run_dir, failure(exc, code, param))
        raise


# --- reading files that may be mid-write ---------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            yield from (line for line in handle if line.strip())
    except FileNotFoundError:
        return


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
