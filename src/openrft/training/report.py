"""The end-of-run report: PNG plots and a short `report.md`, from `metrics.jsonl` and `evals/`.

Plots (matplotlib, Agg backend, no display needed): `reward.png` (train and validation reward per
step, ▲ where a diagnosis fired), `graders.png` (per-grader train and validation means),
`completion_length.png`. The markdown names the baseline and final validation reward, the change,
what it means in a sentence (`outcome`: e.g. "train reward rose 0.00 → 0.19 while valid reward
fell 0.50 → 0.25 over steps 0–12: likely reward hacking …", with the samples to look at), every
diagnosis the run reported at its step, and a few sample completions from the baseline and the
final evaluation side by side.

It only reads the run directory; it never trains or evaluates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openrft.training import rundir
from openrft.training.diagnosis import SIGNALS, Diagnosis, DiagnosisSettings, HackingCheck
from openrft.training.rundir import REPORT, MetricsLine, eval_samples_path, read_eval_samples

SAMPLES_SHOWN = 5
NO_CHANGE = 0.01
"""A validation reward change smaller than this is reported as no change."""
Curve = tuple[str, tuple[str, ...], str]
"""A plotted series: its label, the keys leading to it in a metrics line, its line style."""


def read_metrics(out: Path) -> list[dict[str, Any]]:
    """The run's metrics lines as plain dicts (`rundir.read_metrics` has them typed)."""
    return [dict(line) for line in rundir.read_metrics(out)]


def write(out: Path) -> Path:
    """Write the plots and `report.md` into `out`; returns the report's path."""
    lines = rundir.read_metrics(out)
    plot(lines, out)
    path = out / REPORT
    path.write_text(markdown(lines, out), encoding="utf-8")
    return path


def _series(lines: Sequence[MetricsLine], *keys: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for line in lines:
        value: Any = line
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            steps.append(line["step"])
            values.append(float(value))
    return steps, values


def plot(lines: Sequence[MetricsLine], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graders = sorted(
        {k for line in lines for k in line["scores"].get("train_graders", {})}
        | {k for line in lines for k in line["scores"].get("valid_graders", {})}
    )
    by_grader: list[Curve] = [(f"train {g}", ("scores", "train_graders", g), "-") for g in graders]
    by_grader += [(f"valid {g}", ("scores", "valid_graders", g), "o--") for g in graders]
    figures: list[tuple[str, str, list[Curve]]] = [
        (
            "reward.png",
            "reward",
            [
                ("train", ("scores", "train_reward_mean"), "-"),
                ("valid", ("scores", "valid_reward_mean"), "o-"),
            ],
        ),
        (
            "graders.png",
            "grader reward",
            by_grader,
        ),
        (
            "completion_length.png",
            "completion tokens (mean)",
            [("train", ("usage", "completion_tokens_mean"), "-")],
        ),
    ]
    for filename, ylabel, curves in figures:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label, keys, style in curves:
            steps, values = _series(lines, *keys)
            if steps:
                ax.plot(steps, values, style, label=label)
        found = [e["step"] for e in run_events(lines) if e["level"] == "warn"]
        if filename == "reward.png" and found:
            for step in found:
                ax.axvline(step, color="#f59e0b", linestyle=":", linewidth=1)
            ax.plot(found, [ax.get_ylim()[1]] * len(found), "v", color="#b45309", label="diagnosis")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out / filename, dpi=100)
        plt.close(fig)


def markdown(lines: Sequence[MetricsLine], out: Path) -> str:
    steps, valid = _series(lines, "scores", "valid_reward_mean")
    parts = ["# OpenRFT run report", ""]
    if valid:
        first, last = valid[0], valid[-1]
        parts += [
            "| | step | valid reward |",
            "|---|---:|---:|",
            f"| baseline | {steps[0]} | {first:.3f} |",
            f"| final | {steps[-1]} | {last:.3f} |",
            f"| change | | {last - first:+.3f} |",
            "",
        ]
    else:
        parts += ["No validation score was recorded.", ""]
    said = outcome(lines, out)
    parts += [said, ""] if said else []
    parts += _diagnoses(lines)
    total = lines[-1]["total_steps"] if lines else 0
    done = lines[-1]["step"] if lines else 0
    parts += [f"Steps: {done} of {total}.", ""]
    if done < total:
        parts += [
            "The run stopped early (budget); `openrft train CONFIG --resume DIR` continues.",
            "",
        ]
    parts += ["![reward](reward.png) ![graders](graders.png)", ""]
    parts += ["![completion length](completion_length.png)", ""]
    parts += _samples_table(out, steps)
    return "\n".join(parts) + "\n"


def run_events(lines: Sequence[MetricsLine]) -> list[rundir.RunEvent]:
    """What the run reported at its steps (`events` of its lines), once each, in step order."""
    found: dict[tuple[int, str], rundir.RunEvent] = {}
    for line in lines:
        for event in line.get("events") or []:
            found[(event["step"], event["code"])] = event
    return [found[key] for key in sorted(found)]


def outcome(lines: Sequence[MetricsLine], out: Path | None = None) -> str | None:
    """The run's validation result in a sentence, comparing the first and last evaluation: when
    the train reward rose while the valid reward fell, the reward-hacking finding (with the
    samples that changed most); otherwise whether the model got better, worse or neither on the
    held-out prompts. None with fewer than two evaluations."""
    steps, valid = _series(lines, "scores", "valid_reward_mean")
    if len(valid) < 2:
        return None
    (s0, v0), (s1, v1) = (steps[0], valid[0]), (steps[-1], valid[-1])
    whole = HackingCheck(window=max(1, s1 - s0))
    diagnosis = Diagnosis(DiagnosisSettings(**dict.fromkeys(SIGNALS)), out)
    diagnosis.replay(line for line in lines if line["step"] <= s1)
    verdict = diagnosis.hacking(whole)
    if verdict is not None and verdict[1]:
        (message, _), _ = verdict
        return message[0].upper() + message[1:]
    change = v1 - v0
    if change >= NO_CHANGE:
        said = "the model got better on the held-out prompts"
    elif change <= -NO_CHANGE:
        said = "the model got worse on the held-out prompts (see the samples below)"
    else:
        said = "no change on the held-out prompts"
    _, train = _series(lines, "scores", "train_reward_mean")
    trained = f"; train reward {train[0]:.2f} → {train[-1]:.2f}" if train else ""
    return (
        f"Valid reward {v0:.3f} → {v1:.3f} over steps {s0}–{s1} ({change:+.3f}){trained}: {said}."
    )


def _diagnoses(lines: Sequence[MetricsLine]) -> list[str]:
    found = run_events(lines)
    if not found:
        return []
    rows = ["## Diagnosis", ""]
    for event in found:
        kind = event["code"] if event["level"] == "warn" else "note"
        action = f", {event['action']}" if event.get("action") not in (None, "warn") else ""
        rows.append(f"- **{kind}** ({event['level']}{action}): {event['message']}")
    return [*rows, ""]


def _samples_table(out: Path, steps: list[int]) -> list[str]:
    if not steps:
        return []
    first = read_eval_samples(eval_samples_path(out, steps[0]))
    last = read_eval_samples(eval_samples_path(out, steps[-1]))
    rows = ["## Sample completions (validation)", ""]
    rows += [f"| prompt | step {steps[0]} | reward | step {steps[-1]} | reward |"]
    rows += ["|---|---|---:|---|---:|"]
    for before, after in list(zip(first, last, strict=False))[:SAMPLES_SHOWN]:
        rows.append(
            f"| {_cell(before['prompt'])} | {_cell(before['completion'])} | "
            f"{before['reward']:.2f} | {_cell(after['completion'])} | {after['reward']:.2f} |"
        )
    return [*rows, ""]


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ⏎ ")[:120]
