"""Reading a training run's progress files into store rows (see the worker protocol and the
run directory's contract, `training/rundir.py`).

- `metrics.jsonl` → `type: "metrics"` events keyed by step (the run writes one line per step,
  step 0 being the baseline evaluation), so a resumed run that repeats steps its crashed
  predecessor already logged adds nothing twice and leaves no gap;
- each line's `events` (a live diagnosis, the validation carve-out) → one message event each,
  level `warn` or `info`, with the step and the evidence in `data` (`run_events`);
- `checkpoints/checkpoint-*/openrft_checkpoint.json` → checkpoint rows mirroring what is on disk.

Files are appended whole lines at a time; a partial last line is left for the next read.
Nothing here talks to the database or runs processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrft.training.rundir import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS,
    METRICS,
    MetricsLine,
    parse_metrics_line,
    read_checkpoint_info,
    run_event_key,
)

RUN_EVENT_SOURCE = "run-event"
"""The `source` of the events a run reports in its metrics lines (`run_events`)."""


@dataclass
class Tail:
    """Reads the complete lines appended to a file since the last read."""

    path: Path
    offset: int = 0
    line: int = 0

    def read(self) -> list[tuple[int, str]]:
        """New complete lines as (1-based line number, text); blank lines are skipped."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        lines: list[tuple[int, str]] = []
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self.line += 1
            text = data[start:end].decode("utf-8", "replace").strip()
            if text:
                lines.append((self.line, text))
            start = end + 1
        self.offset += start
        return lines


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def metrics_message(line: MetricsLine) -> str:
    """`Step 3/10: train reward 0.410, valid reward 0.500`."""
    scores: dict[str, Any] = dict(line.get("scores") or {})
    head = f"Step {line.get('step')}/{line.get('total_steps', '?')}"
    parts = []
    if scores.get("train_reward_mean") is not None:
        parts.append(f"train reward {_fmt(scores['train_reward_mean'])}")
    if scores.get("valid_reward_mean") is not None:
        parts.append(f"valid reward {_fmt(scores['valid_reward_mean'])}")
    if not parts:
        parts.append("no reward yet")
    return f"{head}: {', '.join(parts)}"


def metrics_event(number: int, text: str) -> dict[str, Any]:
    """A metrics event for one `metrics.jsonl` line (a message if the line is unusable)."""
    line = parse_metrics_line(text)
    if line is None:
        return {
            "level": "warn",
            "message": f"{METRICS} line {number} is not a metrics object: {text[:200]}",
            "type": "message",
            "source": "metrics-line",
            "key": number,
        }
    return {
        "level": "info",
        "message": metrics_message(line),
        "type": "metrics",
        "data": line,
        "source": "metrics",
        "key": line["step"],
    }


def run_events(line: MetricsLine) -> list[dict[str, Any]]:
    """The message events of a metrics line's `events`: each keyed by its step and code (a
    resumed run repeating a step adds nothing twice), `data` holding `step`, `code`, `action`
    and the evidence (the dashboard marks the step on its charts)."""
    rows = []
    for event in line.get("events") or []:
        if not isinstance(event, dict) or not isinstance(event.get("message"), str):
            continue
        step = event.get("step") if isinstance(event.get("step"), int) else line["step"]
        code = str(event.get("code") or "")
        data = {**(event.get("data") or {}), "step": step, "code": code}
        if event.get("action"):
            data["action"] = event["action"]
        rows.append(
            {
                "level": "warn" if event.get("level") == "warn" else "info",
                "message": event["message"],
                "type": "message",
                "data": data,
                "source": RUN_EVENT_SOURCE,
                "key": run_event_key(step, code),
            }
        )
    return rows


def checkpoint_dirs(jobdir: Path) -> list[Path]:
    """Checkpoint directories: `JOBDIR/checkpoints/*` and TRL's `JOBDIR/checkpoint-*`."""
    found = [p for p in (jobdir / CHECKPOINTS).glob("*") if p.is_dir()]
    found += [p for p in jobdir.glob(CHECKPOINT_PREFIX + "*") if p.is_dir()]
    return found


def read_checkpoints(
    jobdir: Path, scores: dict[int, dict[str, Any]], model_name: str
) -> list[dict[str, Any]]:
    """Rows for every complete checkpoint (one whose info file is written), with its metrics
    (`step`, `train_reward_mean`, `valid_reward_mean`, `train_loss`, and OpenAI's
    `train_reasoning_tokens_mean` / `valid_reasoning_tokens_mean`, when known)."""
    rows = []
    for directory in checkpoint_dirs(jobdir):
        info = read_checkpoint_info(directory)
        if info is None:
            continue  # still being written, or not ours
        step = info["step"]
        known = scores.get(step, {})
        metrics = {
            "step": float(step),
            "train_reward_mean": info.get("train_reward_mean", known.get("train_reward_mean")),
            "valid_reward_mean": info.get("valid_reward_mean", known.get("valid_reward_mean")),
            "train_loss": known.get("loss"),
            "train_reasoning_tokens_mean": known.get("train_reasoning_tokens_mean"),
            "valid_reasoning_tokens_mean": known.get("valid_reasoning_tokens_mean"),
        }
        rows.append(
            {
                "name": directory.name,
                "step": step,
                "metrics": metrics,
                "model": f"{model_name}:ckpt-step-{step}",
                "path": str(directory),
            }
        )
    return rows


def step_scores(event: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one metrics event a checkpoint reports."""
    data = event.get("data") or {}
    scores = dict(data.get("scores") or {})
    trl = data.get("trl") or {}
    if "loss" in trl:
        scores["loss"] = trl["loss"]
    usage = data.get("usage") or {}
    for key in ("train_reasoning_tokens_mean", "valid_reasoning_tokens_mean"):
        if usage.get(key) is not None:
            scores[key] = usage[key]
    return scores
