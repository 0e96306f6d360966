"""The end-of-run report: PNG plots and a short `report.md`, from `metrics.jsonl` and `evals/`.

Plots (matplotlib, Agg backend, no display needed): `reward.png` (train and validation reward per
step), `graders.png` (per-grader train and validation means), `completion_length.png`. The
markdown names the baseline and final validation reward, the change, and a few sample completions
from the baseline and the final evaluation side by side.

It only reads the run directory; it never trains or evaluates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES_SHOWN = 5


def read_metrics(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def write(out: Path) -> Path:
    """Write the plots and `report.md` into `out`; returns the report's path."""
    lines = read_metrics(out)
    plot(lines, out)
    path = out / "report.md"
    path.write_text(markdown(lines, out), encoding="utf-8")
    return path


def _series(lines: list[dict[str, Any]], *keys: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for line in lines:
        value: Any = line
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            steps.append(line["step"])
            values.append(float(value))
    return steps, values


def plot(lines: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graders = sorted(
        {k for line in lines for k in line["scores"].get("train_graders", {})}
        | {k for line in lines for k in line["scores"].get("valid_graders", {})}
    )
    figures: list[tuple[str, str, list[tuple[str, tuple[str, ...], str]]]] = [
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
            [(f"train {g}", ("scores", "train_graders", g), "-") for g in graders]
            + [(f"valid {g}", ("scores", "valid_graders", g), "o--") for g in graders],
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
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out / filename, dpi=100)
        plt.close(fig)


def markdown(lines: list[dict[str, Any]], out: Path) -> str:
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


def _samples_table(out: Path, steps: list[int]) -> list[str]:
    if not steps:
        return []
    first = _read_samples(out / "evals" / f"step-{steps[0]}.jsonl")
    last = _read_samples(out / "evals" / f"step-{steps[-1]}.jsonl")
    rows = ["## Sample completions (validation)", ""]
    rows += [f"| prompt | step {steps[0]} | reward | step {steps[-1]} | reward |"]
    rows += ["|---|---|---:|---|---:|"]
    for before, after in list(zip(first, last, strict=False))[:SAMPLES_SHOWN]:
        rows.append(
            f"| {_cell(before['prompt'])} | {_cell(before['completion'])} | "
            f"{before['reward']:.2f} | {_cell(after['completion'])} | {after['reward']:.2f} |"
        )
    return [*rows, ""]


def _read_samples(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ⏎ ")[:120]
