"""Live diagnosis: reading a GRPO run's metrics lines as they come for the signs that it is not
learning what the user wants, and saying so at the step it happens.

`Diagnosis.observe(line)` takes each `metrics.jsonl` line (`rundir.MetricsLine`) in step order
and returns a `Finding` for every signal that *starts* at that step:

- `reward_hacking`: at an evaluation, the train reward (averaged over `smooth` steps) rose by
  `min_rise` while `valid_reward_mean` fell by `min_drop`, against the earliest evaluation of the
  last `window` steps (or the one before it); the finding quotes the validation samples whose
  reward fell and rose most (`evals/step-N.jsonl`).
- `entropy_collapse` / `length_collapse`: the mean of TRL's `entropy` / of the completion length
  over the last `window` steps is under `ratio` × its mean over the first `window`.
- `zero_signal`: `steps` steps in a row had at least `share` of their groups with identical
  rewards (TRL's `frac_reward_zero_std`).
- `grader_errors`: the share of samples with a grader error (the line's highest `errors` flag),
  averaged over `window` steps, reaches `threshold`.
- `length_limit`: the share of completions cut off at `max_completion_length` (TRL's
  `completions/clipped_ratio`), averaged over `window` steps, reaches `threshold`.

A signal fires once at its onset and again only after it has cleared (its condition was checked
and false), so a run that stays broken is not one warning per step. Each check's `action` says
what the run does when it fires: `warn` (the default: a job event with level `warn`), `pause`
(checkpoint and pause like a budget; resume continues) or `fail` (the job fails with code
`diagnosis_failed`). `callbacks.py` acts on the findings; `report.py` summarises them.

Torch-free, and reads only metrics lines and evaluation samples: it never trains or grades.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openrft.errors import GradingError
from openrft.training.rundir import (
    EvalSample,
    MetricsLine,
    RunEvent,
    eval_samples_path,
    read_eval_samples,
)

Action = Literal["warn", "pause", "fail"]
SIGNALS = (
    "reward_hacking",
    "entropy_collapse",
    "length_collapse",
    "zero_signal",
    "grader_errors",
    "length_limit",
)
FAILED_CODE = "diagnosis_failed"
"""The job error code of a run a diagnosis with `action: fail` stopped."""
SAMPLES_SHOWN = 3
"""Validation samples quoted (each way) with a reward-hacking finding."""
TEXT_SHOWN = 300
"""Characters kept of each quoted prompt and completion."""
SEVERITY: dict[str, int] = {"warn": 0, "pause": 1, "fail": 2}


class DiagnosisError(GradingError):
    """A diagnosis with `action: fail` fired: the run is stopped (job error `diagnosis_failed`).

    A `GradingError` by descent: like a grader failing most samples, it says the training signal
    is broken, and it maps to the same exit code and HTTP shape."""


# --- settings --------------------------------------------------------------------------------


class _Section(BaseModel):
    # the same rules as `config.ConfigModel` (config.py imports this module, not the reverse)
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, frozen=True, allow_inf_nan=False
    )


class HackingCheck(_Section):
    """Train reward rising while valid reward falls: the policy learns something the training
    prompts reward that does not carry over (reward hacking, or overfitting the prompts)."""

    action: Action = "warn"
    """`warn`: a job event; `pause`: checkpoint and pause; `fail`: stop with an error."""
    window: int = Field(default=20, ge=1, le=1_000_000)
    """Steps looked back: an evaluation is compared with the earliest evaluation this many steps
    before it (or, when there is none that close, with the one before it)."""
    min_rise: float = Field(default=0.05, ge=0.0)
    """Least rise of the (smoothed) train reward."""
    min_drop: float = Field(default=0.05, gt=0.0)
    """Least fall of the valid reward."""
    smooth: int = Field(default=3, ge=1, le=1000)
    """Train reward averaged over this many steps at each end (a single step's is noisy)."""


class CollapseCheck(_Section):
    """A quantity falling to a small fraction of where it started."""

    action: Action = "warn"
    """`warn`: a job event; `pause`: checkpoint and pause; `fail`: stop with an error."""
    window: int = Field(default=5, ge=1, le=100_000)
    """Steps averaged at the start and at the end (the check waits for `2 * window` steps)."""
    ratio: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Fires when the last `window` steps' mean is under this share of the first's."""


class EntropyCheck(CollapseCheck):
    """Token entropy collapsing: the policy samples nearly the same completion every time."""

    ratio: float = Field(default=0.1, gt=0.0, lt=1.0)
    """Fires when the last `window` steps' mean is under this share of the first's."""


class StreakCheck(_Section):
    """Steps in a row with no learning signal: every group's completions got the same reward,
    so GRPO's advantages are all zero and the step changes nothing."""

    action: Action = "warn"
    """`warn`: a job event; `pause`: checkpoint and pause; `fail`: stop with an error."""
    steps: int = Field(default=5, ge=1, le=1_000_000)
    """Consecutive steps that make a streak."""
    share: float = Field(default=1.0, gt=0.0, le=1.0)
    """Share of a step's groups with zero reward variance for it to count (1: all of them)."""


class RateCheck(_Section):
    """A per-step share, averaged over a few steps, reaching a level."""

    action: Action = "warn"
    """`warn`: a job event; `pause`: checkpoint and pause; `fail`: stop with an error."""
    window: int = Field(default=3, ge=1, le=100_000)
    """Steps averaged."""
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    """Share (0–1) at which the check fires."""


class ErrorRateCheck(RateCheck):
    """Grader errors rising: samples that failed to grade score 0 and teach nothing."""

    threshold: float = Field(default=0.05, gt=0.0, le=1.0)
    """Share (0–1) of samples with a grader error flag at which the check fires."""


class DiagnosisSettings(_Section):
    """Live checks on the training metrics (`training/diagnosis.py`); each fires once at its
    onset as a `warn` job event at that step, and does what its `action` says. `null` turns a
    check off."""

    reward_hacking: HackingCheck | None = HackingCheck()
    """Train reward rising while valid reward falls (needs evaluations: `eval_interval`)."""
    entropy_collapse: EntropyCheck | None = EntropyCheck()
    """Token entropy falling under a tenth of its start: sampling has stopped exploring."""
    length_collapse: CollapseCheck | None = CollapseCheck()
    """Mean completion length falling under a fifth of its start (empty or one-word answers)."""
    zero_signal: StreakCheck | None = StreakCheck()
    """A streak of steps whose groups all got identical rewards."""
    grader_errors: ErrorRateCheck | None = ErrorRateCheck()
    """The grader error rate reaching 5% of samples (`max_grader_error_rate` fails the job)."""
    length_limit: RateCheck | None = RateCheck(threshold=0.5)
    """Half the completions or more cut off at `max_completion_length`."""


# --- findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A signal that started at `step`."""

    signal: str
    step: int
    action: Action
    message: str
    """What was seen and what to do, without the `Step N:` prefix."""
    data: dict[str, Any] = field(default_factory=dict)

    def event(self) -> RunEvent:
        """The metrics line's `events` entry (the service makes it a `warn` job event)."""
        said = {
            "warn": "",
            "pause": f" Pausing the job (`diagnosis.{self.signal}.action: pause`); "
            "resume continues from its checkpoint.",
            "fail": f" Failing the job (`diagnosis.{self.signal}.action: fail`).",
        }[self.action]
        data = {"signal": self.signal, "step": self.step, **self.data}
        message = f"Step {self.step}: {self.message}{said}"
        return {
            "code": self.signal,
            "level": "warn",
            "step": self.step,
            "message": message,
            "action": self.action,
            "data": data,
        }


Evidence = tuple[str, dict[str, Any]]
"""What a check saw: the message and its numbers."""
Verdict = tuple[Evidence, bool] | None
"""A check's result: None when it cannot tell yet, else what it saw and whether it holds."""


def strongest(findings: Sequence[Finding]) -> Finding | None:
    """The finding whose action goes furthest (`fail` over `pause` over `warn`)."""
    acting = [f for f in findings if f.action != "warn"]
    return max(acting, key=lambda f: SEVERITY[f.action]) if acting else None


class Diagnosis:
    """The checks of `settings` over one run's metrics lines, fed in step order."""

    def __init__(
        self,
        settings: DiagnosisSettings,
        run_dir: Path | None = None,
        max_completion_length: int | None = None,
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        """Where `evals/step-N.jsonl` are read for the samples a hacking finding quotes."""
        self.max_completion_length = max_completion_length
        self.lines: dict[int, MetricsLine] = {}
        self.active: set[str] = set()
        """Signals whose condition held when last checked."""
        self._training: list[MetricsLine] = []
        self._last = -1
        """The training steps' lines in step order (the step-0 baseline has no train reward);
        kept as lines arrive, so a check costs the same at step 10 000 as at step 10."""

    def replay(self, lines: Iterable[MetricsLine]) -> None:
        """Take in an earlier session's lines (a resumed run) without reporting anything: a
        signal active when it paused stays active, and fires again only after clearing."""
        for line in lines:
            self.observe(line)

    def observe(self, line: MetricsLine) -> list[Finding]:
        """Add the line of a step; the signals that start at it."""
        step = line["step"]
        in_order = not self.lines or step > max(self._last, -1)
        self.lines[step] = line
        self._last = max(self._last, step)
        if not in_order:  # a resumed run repeating steps: rebuild the order
            ordered = [self.lines[s] for s in sorted(self.lines)]
            self._training = [x for x in ordered if _is_training(x)]
        elif _is_training(line):
            self._training.append(line)
        found: list[Finding] = []
        for signal, check in self._checks():
            verdict = check(getattr(self.settings, signal))
            if verdict is None:
                continue
            evidence, holds = verdict
            if not holds:
                self.active.discard(signal)
            elif signal not in self.active:
                self.active.add(signal)
                action: Action = getattr(self.settings, signal).action
                found.append(Finding(signal, line["step"], action, *evidence))
        return found

    # --- the checks ------------------------------------------------------------------------

    def _checks(self) -> list[tuple[str, Callable[[Any], Verdict]]]:
        """The configured checks, each called with its settings."""
        table: dict[str, Callable[[Any], Verdict]] = {
            "reward_hacking": self.hacking,
            "entropy_collapse": lambda check: self._collapse(check, "trl", "entropy"),
            "length_collapse": lambda check: self._collapse(
                check, "usage", "completion_tokens_mean"
            ),
            "zero_signal": self._zero_signal,
            "grader_errors": self._grader_errors,
            "length_limit": self._length_limit,
        }
        return [(s, table[s]) for s in SIGNALS if getattr(self.settings, s) is not None]

    def _train(self) -> list[MetricsLine]:
        """The training steps' lines, in step order."""
        return self._training

    def _latest_is_training(self) -> bool:
        return _is_training(self.lines[self._last])

    def hacking(self, check: HackingCheck) -> Verdict:
        """The reward-hacking comparison at the latest line (None unless it evaluated and an
        earlier evaluation and enough train steps between them are known). `report.py` uses it
        over a whole run, with `window` covering every step."""
        step = self._last
        valid = _number(self.lines[step], "scores", "valid_reward_mean")
        if valid is None or step == 0:
            return None  # only an evaluation can tell
        evals = [(s, _number(self.lines[s], "scores", "valid_reward_mean")) for s in self.lines]
        earlier = sorted((s, v) for s, v in evals if v is not None and s < step)
        if not earlier:
            return None
        near = [(s, v) for s, v in earlier if s >= step - check.window]
        start, before = near[0] if near else earlier[-1]
        rewards = [
            (line["step"], _number(line, "scores", "train_reward_mean")) for line in self._train()
        ]
        train = [(s, r) for s, r in rewards if r is not None]
        at_start = [(s, r) for s, r in train if s <= start][-check.smooth :]
        at_start = at_start or [(s, r) for s, r in train if start < s < step][: check.smooth]
        at_end = [(s, r) for s, r in train if s <= step][-check.smooth :]
        if not at_start or not at_end or at_end[0][0] <= at_start[-1][0]:
            return None  # too few steps between the two evaluations to tell a trend
        first, last = fmean(r for _, r in at_start), fmean(r for _, r in at_end)
        rose, fell = last - first, before - valid
        holds = rose >= check.min_rise and fell >= check.min_drop
        numbers = {
            "steps": [start, step],
            "train_reward": [first, last],
            "valid_reward": [before, valid],
        }
        samples = self._changed_samples(start, step) if holds else {}
        message = (
            f"train reward rose {first:.2f} → {last:.2f} while valid reward "
            f"fell {before:.2f} → {valid:.2f} over steps {start}–{step}: likely reward hacking "
            "(the policy is learning something the training prompts reward that does not carry "
            "over). Check the grader against these completions, and use an earlier checkpoint"
            + _quoted(samples, start, step)
        )
        return (message, numbers | samples), holds

    def _changed_samples(self, start: int, step: int) -> dict[str, Any]:
        """The validation samples whose reward rose and fell most between two evaluations."""
        if self.run_dir is None:
            return {}
        before = read_eval_samples(eval_samples_path(self.run_dir, start))
        after = read_eval_samples(eval_samples_path(self.run_dir, step))
        pairs = [
            _pair(i, a, b)
            for i, (a, b) in enumerate(zip(before, after, strict=False))
            if a.get("prompt") == b.get("prompt")
        ]
        pairs.sort(key=lambda p: p["after"]["reward"] - p["before"]["reward"])
        rose = [p for p in reversed(pairs) if p["after"]["reward"] > p["before"]["reward"]]
        fell = [p for p in pairs if p["after"]["reward"] < p["before"]["reward"]]
        if not rose and not fell:
            return {}
        return {"rose": rose[:SAMPLES_SHOWN], "fell": fell[:SAMPLES_SHOWN]}

    def _collapse(self, check: CollapseCheck, *keys: str) -> Verdict:
        if not self._latest_is_training():
            return None
        first = _values(self._train(), keys, check.window)
        last = _values(reversed(self._train()), keys, check.window)[::-1]
        if len(first) < check.window or first[-1][0] >= last[0][0]:
            return None  # fewer than `2 * window` steps with the value
        start, end = fmean(v for _, v in first), fmean(v for _, v in last)
        holds = start > 0 and end < check.ratio * start
        span = f"steps {first[0][0]}–{first[-1][0]} vs {last[0][0]}–{last[-1][0]}"
        if keys[-1] == "entropy":
            message = (
                f"token entropy fell {start:.3g} → {end:.3g} ({span}): entropy collapse; the "
                "policy samples nearly the same completion every time and has stopped exploring. "
                "Lower learning_rate, raise temperature, or set beta (a KL penalty)"
            )
        else:
            message = (
                f"mean completion length fell {start:.1f} → {end:.1f} tokens ({span}): length "
                "collapse; check whether short or empty answers score (the evaluation samples "
                "show them) and make the grader refuse them"
            )
        data = {"steps": [first[0][0], last[-1][0]], "start": start, "end": end}
        return (message, data), holds

    def _zero_signal(self, check: StreakCheck) -> Verdict:
        lines = self._train()
        if not lines or not self._latest_is_training():
            return None
        streak: list[int] = []
        for line in reversed(lines):
            share = _number(line, "trl", "frac_reward_zero_std")
            if share is None or share < check.share - 1e-9:
                break
            streak.append(line["step"])
        holds = len(streak) >= check.steps
        which = "all" if check.share >= 1.0 else f"at least {check.share:.0%} of"
        first = streak[-1] if streak else lines[-1]["step"]
        message = (
            f"{len(streak)} steps in a row (steps {first}–{lines[-1]['step']}) gave {which} their "
            "groups identical rewards: no learning signal, the updates change nothing. Use a "
            "grader with partial credit, more generations, a higher temperature or easier prompts"
        )
        return (message, {"steps": [first, lines[-1]["step"]], "streak": len(streak)}), holds

    def _grader_errors(self, check: ErrorRateCheck) -> Verdict:
        lines = self._train()[-check.window :]
        if len(lines) < check.window or not self._latest_is_training():
            return None
        rate = fmean(max((v for v in line["errors"].values()), default=0.0) for line in lines)
        flags = sorted({flag for line in lines for flag, v in line["errors"].items() if v > 0})
        holds = rate >= check.threshold
        span = f"steps {lines[0]['step']}–{lines[-1]['step']}"
        message = (
            f"grader errors rose to {rate:.0%} of samples ({span}; {', '.join(flags) or 'none'}): "
            "failed samples score 0, which teaches the model nothing. See the grader's error "
            "details in the evaluation samples or `openrft graders run`; the job fails when a "
            "step passes max_grader_error_rate"
        )
        steps = [lines[0]["step"], lines[-1]["step"]]
        return (message, {"rate": rate, "flags": flags, "steps": steps}), holds

    def _length_limit(self, check: RateCheck) -> Verdict:
        lines = self._train()[-check.window :]
        shares = [_number(line, "trl", "completions/clipped_ratio") for line in lines]
        known = [v for v in shares if v is not None]
        if len(known) < check.window or not self._latest_is_training():
            return None
        share = fmean(known)
        limit = f" ({self.max_completion_length} tokens)" if self.max_completion_length else ""
        message = (
            f"{share:.0%} of completions hit max_completion_length{limit} over steps "
            f"{lines[0]['step']}–{lines[-1]['step']}: their answers are cut off before they end, "
            "and graded so. Raise max_completion_length, ask for shorter answers, or set "
            "mask_truncated_completions to leave them out of the loss"
        )
        data = {"share": share, "max_completion_length": self.max_completion_length}
        return (message, data), share >= check.threshold


# --- helpers ---------------------------------------------------------------------------------


def _is_training(line: MetricsLine) -> bool:
    return line["scores"].get("train_reward_mean") is not None


def _values(lines: Iterable[MetricsLine], keys: tuple[str, ...], n: int) -> list[tuple[int, float]]:
    """The first `n` (step, value) pairs of `lines` that have the value at `keys`."""
    found = []
    for line in lines:
        value = _number(line, *keys)
        if value is not None:
            found.append((line["step"], value))
            if len(found) == n:
                break
    return found


def _number(line: MetricsLine, *keys: str) -> float | None:
    value: Any = line
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= TEXT_SHOWN else text[:TEXT_SHOWN] + "…"


def _pair(index: int, before: EvalSample, after: EvalSample) -> dict[str, Any]:
    return {
        "row": index,
        "prompt": _clip(before.get("prompt")),
        "reference": _clip(before.get("reference")),
        "before": {"completion": _clip(before.get("completion")), "reward": before["reward"]},
        "after": {"completion": _clip(after.get("completion")), "reward": after["reward"]},
    }


def _quoted(samples: dict[str, Any], start: int, step: int) -> str:
    """`; see validation rows 3, 7 (…)` naming the samples quoted in the finding's data."""
    rows = [p["row"] for p in samples.get("fell", []) + samples.get("rose", [])]
    if not rows:
        return "."
    listed = ", ".join(str(r) for r in rows)
    return (
        f"; see validation rows {listed} (evals/step-{start}.jsonl vs evals/step-{step}.jsonl): "
        "the ones whose reward fell and rose most."
    )
