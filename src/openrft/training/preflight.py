"""The pre-flight: can this job learn at all? Sample, grade, and say so before training.

GRPO learns only from groups whose rewards differ. `preflight(config, model, tokenizer, rows)`
samples the model on `preflight.prompts` training prompts (picked with the job's `seed`) ×
`num_generations`, with the job's sampling settings (`temperature`, `top_p`, top-k off as TRL
has it, `max_completion_length`; constrained to `response_format` when one is set), grades
every completion with the job's grader, and returns a `PreflightReport`: the reward
distribution (mean, min, max, quartiles, a histogram), the share of groups with zero reward
variance, the share truncated at `max_completion_length`, the grader's error flags, its slowest
samples, two sampled completions next to their references, and advice specific to the grader.

The verdict fails when fewer than `preflight.min_signal_share` (default 10%) of the groups have
any reward variance; `check` then raises `PreflightError` (the job's error code is
`preflight_failed`) unless `preflight.force` is set. The report is written to
`RUN_DIR/preflight.json` (`rundir.PREFLIGHT`) either way.

Sampling is `model.generate` in batches of `BATCH` sequences with left padding, seeded; its
cost on SmolLM2-135M (24 prompts × 8 generations × 16 new tokens) is in docs/training.md. It
does not train. It grades group by group (timed; I/O-bound graders on a
thread pool) rather than in one batch, so that the slowest prompts can be named.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean, pstdev, quantiles
from time import perf_counter
from typing import TYPE_CHECKING, Any

from openrft.errors import ConfigError, OpenRFTError, Problem, TemplateError
from openrft.graders.context import GradeContext
from openrft.graders.result import GradeResult
from openrft.graders.sample import Sample
from openrft.graders.spec import (
    FormatCheckGrader,
    Grader,
    LabelModelGrader,
    MathAccuracyGrader,
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
)
from openrft.graders.template import render
from openrft.training.config import TrainingConfig
from openrft.training.records import Row, render_prompt
from openrft.training.rewards import GraderReward
from openrft.training.rundir import PREFLIGHT, failing_as
from openrft.training.sampling import decode

if TYPE_CHECKING:
    from openrft.training.agent import Agent

__all__ = [
    "PreflightError",
    "PreflightReport",
    "check",
    "preflight",
    "stage",
    "summary",
    "write_report",
]

BATCH = 64
"""Sequences generated together (larger batches give more sequences per second on CPU)."""
IO_THREADS = 8
"""Samples graded at once when the grader waits on I/O (`score_model`, `endpoint`, …)."""
SLOWEST = 3
"""Slowest-graded groups kept in the report (one sample of each)."""
TEXT_LIMIT = 400
"""Characters of a prompt or completion kept in the report."""
BINS = 10


@dataclass
class Sampled:
    """One sampled completion and its grade."""

    group: int
    """Index of its prompt among the sampled prompts."""
    prompt: str
    reference: Any
    completion: str
    tokens: int
    truncated: bool
    item: dict[str, Any] = field(default_factory=dict)
    """The row's item (what the grader's templates read)."""
    reward: float = 0.0
    sub_rewards: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    trajectory: list[dict[str, Any]] | None = None
    """A multi-turn rollout's messages (agent jobs); `completion` is then its final answer."""
    environment_reward: float | None = None
    """The rollout's environment `reward()` (jobs with an `environment`)."""

    @classmethod
    def of(cls, group: int, row: Row, **fields: Any) -> Sampled:
        """A sample of `row`'s prompt (its prompt text, reference and item filled in)."""
        return cls(
            group=group,
            prompt=str(row.messages[-1].get("content") or ""),
            reference=row.item.get("reference_answer", dict(row.item)),
            item=dict(row.item),
            **fields,
        )

    def sample(self) -> Sample:
        if self.trajectory is not None:
            return Sample.from_trajectory(self.trajectory, self.environment_reward)
        return Sample.from_text(self.completion)

    def shown(self) -> dict[str, Any]:
        """The sample as the report shows it (texts cut to `TEXT_LIMIT`)."""
        return {
            "prompt": _cut(self.prompt),
            "reference": _cut(self.reference)
            if isinstance(self.reference, str)
            else _small(self.reference),
            "completion": _cut(self.completion),
            "reward": self.reward,
            "tokens": self.tokens,
            "truncated": self.truncated,
            "errors": self.errors,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class PreflightReport:
    """What the pre-flight found (`preflight.json`)."""

    passed: bool
    """Enough groups have reward variance (`signal_share >= min_signal_share`)."""
    forced: bool
    """It failed, and `preflight.force` let the job train anyway."""
    prompts: int
    group_size: int
    samples: int
    settings: dict[str, Any]
    """The sampling settings used: temperature, top_p, max_completion_length, seed, constrained."""
    reward: dict[str, Any]
    """`mean`, `std`, `min`, `max`, `quartiles` [q1, median, q3] and `histogram`."""
    groups_with_signal: int
    signal_share: float
    """Share of groups whose rewards are not all equal."""
    zero_variance_share: float
    min_signal_share: float
    truncated_share: float
    """Share of completions cut off at `max_completion_length` (no end-of-sequence token)."""
    completion_tokens_mean: float
    errors: dict[str, int]
    """Samples with each grader error flag (`sample_parse_error`, …)."""
    failed_samples: int
    sub_grader_signal: dict[str, float]
    """For a `multi` grader: the share of groups in which each sub-grader's reward varies."""
    examples: list[dict[str, Any]]
    """Two sampled completions next to their references."""
    slowest: list[dict[str, Any]]
    """A sample of each of the groups the grader took longest on (`seconds`: per sample, the
    group's time shared among its samples)."""
    advice: list[str]
    """What to change, specific to the grader where it can be."""
    message: str
    """The verdict in words: the error message when it fails."""
    seconds: dict[str, float]
    """`sampling` and `grading`."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PreflightError(ConfigError):
    """The pre-flight found (almost) no reward variance: training would learn nothing. The job's
    grader, sampling settings or model must change (or `preflight.force` be set)."""

    def __init__(self, report: PreflightReport) -> None:
        self.report = report
        self.problems = [Problem("$.grader", tip) for tip in report.advice]
        OpenRFTError.__init__(self, report.message)


def preflight(
    config: TrainingConfig,
    model: Any,
    tokenizer: Any,
    rows: Sequence[Row],
    context: GradeContext | None = None,
    agent: Agent | None = None,
) -> PreflightReport:
    """Sample `config.preflight.prompts` of `rows` × `num_generations`, grade, and judge.
    With an `agent` (a job with `tools`), each sample is a whole rollout, tools called."""
    if config.grader is None:
        raise ConfigError([Problem("$.grader", "the pre-flight needs a `grader`")])
    settings = config.preflight
    rng = random.Random(config.seed)  # noqa: S311  # picking prompts, not secrets
    picked = rng.sample(list(rows), min(settings.prompts, len(rows)))
    started = perf_counter()
    sampled = sample(config, model, tokenizer, picked, agent)
    sampling = perf_counter() - started
    reward = GraderReward(
        config.grader, context or GradeContext(), response_format=config.response_format
    )
    started = perf_counter()
    grade(reward, sampled, [row.item for row in picked])
    grading = perf_counter() - started
    return judge(config, sampled, {"sampling": round(sampling, 2), "grading": round(grading, 2)})


# --- sampling --------------------------------------------------------------------------------


def sample(
    config: TrainingConfig,
    model: Any,
    tokenizer: Any,
    rows: Sequence[Row],
    agent: Agent | None = None,
) -> list[Sampled]:
    """`num_generations` completions of each row's prompt, in batches of `BATCH`, seeded."""
    import torch

    if agent is not None:
        return _rollouts(config, model, tokenizer, rows, agent)
    prompts = [render_prompt(tokenizer, row) for row in rows]
    jobs = [(i, p) for i, p in enumerate(prompts) for _ in range(config.num_generations)]
    constraint = _constraint(config, tokenizer)
    found: list[Sampled] = []
    with _sampling(model, config.seed):
        for start in range(0, len(jobs), BATCH):
            batch = jobs[start : start + BATCH]
            with torch.no_grad():
                found += _generate(config, model, tokenizer, batch, rows, constraint)
    return found


@contextmanager
def _sampling(model: Any, seed: int) -> Iterator[None]:
    """Seeded, in eval mode; the model's mode is restored afterwards."""
    import torch

    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _rollouts(
    config: TrainingConfig, model: Any, tokenizer: Any, rows: Sequence[Row], agent: Agent
) -> list[Sampled]:
    """Whole rollouts (`agent.rollout`), `num_generations` per row, sampled as in training."""
    from openrft.training.agent import rollout

    jobs = [i for i in range(len(rows)) for _ in range(config.num_generations)]
    found: list[Sampled] = []
    with _sampling(model, config.seed):
        for start in range(0, len(jobs), BATCH):
            batch = jobs[start : start + BATCH]
            done = rollout(
                model,
                tokenizer,
                agent,
                [rows[i] for i in batch],
                max_completion_length=config.max_completion_length,
                temperature=config.temperature,
            )
            for group, trajectory in zip(batch, done, strict=True):
                found.append(
                    Sampled.of(
                        group,
                        rows[group],
                        completion=Sample.from_trajectory(trajectory.messages).output_text,
                        tokens=trajectory.completion_tokens,
                        truncated=trajectory.truncated,
                        trajectory=trajectory.messages,
                        environment_reward=(
                            trajectory.episode.environment_reward if trajectory.episode else None
                        ),
                    )
                )
    return found


def _constraint(config: TrainingConfig, tokenizer: Any) -> Any:
    """The decoding constraint for `response_format` (None when there is none): the one
    training samples through, so the pre-flight sees what training will."""
    from openrft.training.constrained_generation import constraint_for

    return constraint_for(config, tokenizer)


def _generate(
    config: TrainingConfig,
    model: Any,
    tokenizer: Any,
    batch: list[tuple[int, str]],
    rows: Sequence[Row],
    constraint: Any,
) -> list[Sampled]:
    from transformers import LogitsProcessorList

    from openrft.training import prefix_sharing

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        encoded = tokenizer(
            [p for _, p in batch], return_tensors="pt", padding=True, add_special_tokens=False
        )
    finally:
        tokenizer.padding_side = side
    encoded = encoded.to(model.device)
    eos = tokenizer.eos_token_id
    processors = LogitsProcessorList()
    if constraint is not None:
        from openrft.inference.constrained import ConstrainedLogits

        processors.append(ConstrainedLogits([constraint.start() for _ in batch], eos))
    shared = prefix_sharing.decide(config.prefix_sharing, model).on
    with prefix_sharing.shared_prefill(model) if shared else nullcontext():
        output = model.generate(
            **encoded,
            max_new_tokens=config.max_completion_length,
            do_sample=True,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=0,  # TRL's default: no top-k filtering
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
            logits_processor=processors,
            custom_generate=decode,
        )
    new = output[:, encoded["input_ids"].shape[1] :].tolist()
    found = []
    for (group, _), ids in zip(batch, new, strict=True):
        n = ids.index(eos) + 1 if eos in ids else len(ids)
        found.append(
            Sampled.of(
                group,
                rows[group],
                completion=tokenizer.decode(ids[:n], skip_special_tokens=True),
                tokens=n,
                truncated=eos not in ids[:n] and n >= config.max_completion_length,
            )
        )
    return found


# --- grading ---------------------------------------------------------------------------------


def grade(reward: GraderReward, sampled: list[Sampled], items: Sequence[Any]) -> None:
    """Grade the samples group by group (one prompt's completions in one call, as in training,
    so group-relative graders see whole groups), timing each group: its samples' `seconds` are
    its time divided among them. I/O-bound graders grade `IO_THREADS` groups at once."""
    groups = _groups(sampled)

    def one(group: list[Sampled]) -> tuple[list[GradeResult], float]:
        started = perf_counter()
        item = items[group[0].group]
        texts = [s.completion for s in group]
        rollouts = [s.trajectory for s in group]
        trajectories = rollouts if any(r is not None for r in rollouts) else None
        environment = [s.environment_reward for s in group] if trajectories else None
        shared = [item] * len(group)
        results = reward.grade(texts, shared, [len(group)], trajectories, environment)
        return list(results), perf_counter() - started

    if reward.is_async:
        with ThreadPoolExecutor(IO_THREADS) as pool:
            graded = list(pool.map(one, groups))
    else:
        graded = [one(g) for g in groups]
    for group, (results, seconds) in zip(groups, graded, strict=True):
        for s, result in zip(group, results, strict=True):
            s.reward, s.sub_rewards = result.reward, dict(result.sub_rewards)
            s.errors, s.seconds = sorted(result.errors.flags()), seconds / len(group)


# --- the verdict -----------------------------------------------------------------------------


def judge(
    config: TrainingConfig, sampled: list[Sampled], seconds: dict[str, float]
) -> PreflightReport:
    """The report of graded samples: statistics, verdict, advice."""
    settings = config.preflight
    groups = _groups(sampled)
    varied = [g for g in groups if _varies([s.reward for s in g])]
    share = len(varied) / len(groups) if groups else 0.0
    passed = bool(groups) and share >= settings.min_signal_share and share > 0
    rewards = [s.reward for s in sampled]
    flags: Counter[str] = Counter(flag for s in sampled for flag in s.errors)
    report = PreflightReport(
        passed=passed,
        forced=not passed and settings.force,
        prompts=len(groups),
        group_size=config.num_generations,
        samples=len(sampled),
        settings={
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_completion_length": config.max_completion_length,
            "seed": config.seed,
            "constrained": config.response_format is not None,
        },
        reward=_distribution(rewards),
        groups_with_signal=len(varied),
        signal_share=share,
        zero_variance_share=1.0 - share if groups else 1.0,
        min_signal_share=settings.min_signal_share,
        truncated_share=fmean(s.truncated for s in sampled) if sampled else 0.0,
        completion_tokens_mean=fmean(s.tokens for s in sampled) if sampled else 0.0,
        errors=dict(flags.most_common()),
        failed_samples=sum(1 for s in sampled if s.errors),
        sub_grader_signal=_sub_signal(groups),
        examples=[s.shown() for s in _examples(groups)],
        slowest=[g[0].shown() for g in sorted(groups, key=lambda g: -g[0].seconds)[:SLOWEST]],
        advice=[],
        message="",
        seconds=seconds,
    )
    report.advice = advise(config, report, sampled)
    report.message = _message(report)
    return report


def _groups(sampled: list[Sampled]) -> list[list[Sampled]]:
    by_group: dict[int, list[Sampled]] = {}
    for s in sampled:
        by_group.setdefault(s.group, []).append(s)
    return [by_group[k] for k in sorted(by_group)]


def _varies(values: Sequence[float]) -> bool:
    return bool(values) and max(values) - min(values) > 1e-9


def _distribution(rewards: list[float]) -> dict[str, Any]:
    if not rewards:
        return {
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "quartiles": [],
            "histogram": [],
        }
    low, high = min(0.0, min(rewards)), max(1.0, max(rewards))
    width = (high - low) / BINS
    counts = [0] * BINS
    for r in rewards:
        counts[min(BINS - 1, int((r - low) / width))] += 1
    histogram = [
        {"low": round(low + i * width, 6), "high": round(low + (i + 1) * width, 6), "count": c}
        for i, c in enumerate(counts)
    ]
    cuts = quantiles(rewards, n=4, method="inclusive") if len(rewards) > 1 else rewards * 3
    return {
        "mean": fmean(rewards),
        "std": pstdev(rewards),
        "min": min(rewards),
        "max": max(rewards),
        "quartiles": cuts,
        "histogram": histogram,
    }


def _sub_signal(groups: list[list[Sampled]]) -> dict[str, float]:
    names = sorted({k for g in groups for s in g for k in s.sub_rewards})
    return {
        name: fmean(_varies([s.sub_rewards.get(name, 0.0) for s in g]) for g in groups)
        for name in names
    }


def _examples(groups: list[list[Sampled]]) -> list[Sampled]:
    """Two samples from different groups (the first of the first two groups)."""
    return [g[0] for g in groups[:2]]


def _small(value: Any) -> Any:
    """`value` as it is when its JSON is short, else that JSON cut to `TEXT_LIMIT`."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(text) <= TEXT_LIMIT else _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


# --- advice ----------------------------------------------------------------------------------


def advise(config: TrainingConfig, report: PreflightReport, sampled: list[Sampled]) -> list[str]:
    """What to change, most specific first."""
    tips: list[str] = []
    n = max(1, report.samples)
    if report.failed_samples * 2 > n:
        flag, count = next(iter(report.errors.items()))
        if flag == "sample_parse_error":
            tips.append(
                f"{count} of {n} outputs are not JSON matching `response_format`: simplify the "
                "schema, ask for the JSON in the prompt, or raise `max_completion_length`"
            )
        else:
            tips.append(
                f"{count} of {n} samples hit the grader error `{flag}`: run the grader on one "
                "of the samples above (`openrft graders run`) and fix it"
            )
    if not report.passed:
        tips += _signal_advice(config, report, sampled)
    if report.truncated_share >= 0.5:
        tips.append(
            f"{_pct(report.truncated_share)} of completions hit `max_completion_length` "
            f"({config.max_completion_length} tokens): raise it, or ask for shorter answers"
        )
    return tips


def _signal_advice(
    config: TrainingConfig, report: PreflightReport, sampled: list[Sampled]
) -> list[str]:
    """Why the groups' rewards do not differ, and what would make them."""
    tips: list[str] = []
    rewards = [s.reward for s in sampled]
    if rewards and not _varies(rewards) and config.grader is not None:
        tips += _constant_advice(config.grader, rewards[0], sampled)
    elif rewards:
        tips.append(
            f"only {report.groups_with_signal} of {report.prompts} groups have rewards that "
            "differ: raise `num_generations` or `temperature`, or use a grader with partial "
            "credit (text_similarity, a python grader)"
        )
    if config.temperature < 0.7:
        tips.append(f"`temperature` {config.temperature} samples little variety: try 1.0")
    return tips


def _constant_advice(grader: Grader, value: float, sampled: list[Sampled]) -> list[str]:
    """Advice when every sample got the same reward `value`."""
    if value > 0 and value >= _top(grader):
        return [
            f"every sample scores {value:g}: the task is too easy for this model (nothing left "
            "to learn), or the grader ignores the output; use harder prompts or a stricter grader"
        ]
    wrote = _quote(sampled[0].completion) if sampled else "''"
    return _zero_advice(grader, value, wrote, sampled)


def _zero_advice(grader: Grader, value: float, wrote: str, sampled: list[Sampled]) -> list[str]:
    warm = "an SFT warm-up (`sft_warmup`)"
    if isinstance(grader, StringCheckGrader):
        reference = _reference(grader, sampled)
        if grader.operation == "eq":
            return [
                f"the model writes {wrote}; `eq` never matches {reference}: use `like`, "
                "`{{ sample.output_answer }}` (the answer inside <answer> tags), a python grader "
                f"that extracts the answer, or {warm}"
            ]
        if grader.operation in ("like", "ilike"):
            return [
                f"the model writes {wrote}; the reference {reference} never appears in it: use "
                f"{warm}, easier prompts, or a grader with partial credit"
            ]
    if isinstance(grader, FormatCheckGrader):
        return [f"the model writes {wrote}, never the required format: use {warm}"]
    if isinstance(grader, MathAccuracyGrader):
        return [
            f"the model writes {wrote} and its answers never verify: ask for a plain or "
            f"\\boxed{{}} answer in the prompt, or use {warm}"
        ]
    if isinstance(grader, PythonGrader):
        return [
            f"your `grade` returned {value:g} for every sample (the model writes {wrote}): run "
            "it on the samples above (`openrft graders run`) to see why"
        ]
    if isinstance(grader, ScoreModelGrader | LabelModelGrader):
        return [f"the judge gave {value:g} to every sample: check its prompt, labels and range"]
    if isinstance(grader, MultiGrader):
        return _multi_advice(grader, value, wrote, sampled)
    return [f"every sample scores {value:g} (the model writes {wrote}): use {warm}"]


def _multi_advice(
    grader: MultiGrader, value: float, wrote: str, sampled: list[Sampled]
) -> list[str]:
    tips = [f"every sample scores {value:g} with `{grader.calculate_output}`"]
    for name, sub in grader.graders.items():
        scores = [s.sub_rewards.get(name, 0.0) for s in sampled]
        if scores and not _varies(scores):
            tips += [f"`{name}`: {tip}" for tip in _zero_advice(sub, scores[0], wrote, sampled)]
    return tips


def _top(grader: Grader) -> float:
    """The most a grader can give (1 unless it says otherwise)."""
    if isinstance(grader, ScoreModelGrader) and grader.range:
        return float(grader.range[1])
    return 1.0


def _reference(grader: StringCheckGrader, sampled: list[Sampled]) -> str:
    """The reference of the first sample as the grader sees it, quoted."""
    if not sampled:
        return repr(grader.reference)
    try:
        return _quote(render(grader.reference, sample=sampled[0].sample(), item=sampled[0].item))
    except (TemplateError, KeyError, TypeError):
        return repr(grader.reference)


def _quote(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")


# --- words -----------------------------------------------------------------------------------


def _message(report: PreflightReport) -> str:
    """The verdict, the numbers, two samples and the advice, as plain text (not Rich markup)."""
    head = (
        f"pre-flight: {report.groups_with_signal} of {report.prompts} groups "
        f"({_pct(report.signal_share)}) have rewards that differ"
    )
    if report.passed:
        head += f" (at least {_pct(report.min_signal_share)} needed): passed"
    else:
        need = _pct(report.min_signal_share) if report.min_signal_share else "one group"
        head += (
            f"; at least {need} must (`preflight.min_signal_share`), "
            "or GRPO has nothing to learn from"
        )
        head += ": failed, training anyway (`preflight.force`)" if report.forced else ": failed"
    lines = [head, _numbers(report)]
    if not report.passed:
        for s in report.examples:
            lines.append(
                f"  sample: {_quote(s['completion'], 120)}  reference: "
                f"{_quote(str(s['reference']), 60)}  reward {s['reward']:g}"
            )
    lines += [f"what to change: {tip}" for tip in report.advice]
    if not report.passed and not report.forced:
        lines.append("to train anyway: `preflight.force: true` (`openrft train --force`)")
    return "\n".join(lines)


def _numbers(report: PreflightReport) -> str:
    r = report.reward
    if r["mean"] is None:
        return "no samples"
    errors = ", ".join(f"{flag} {count}" for flag, count in report.errors.items()) or "none"
    return (
        f"{report.samples} samples ({report.prompts} prompts × {report.group_size}): reward mean "
        f"{r['mean']:.3f}, min {r['min']:.3f}, max {r['max']:.3f}; "
        f"{_pct(report.truncated_share)} truncated at max_completion_length="
        f"{report.settings['max_completion_length']}; grader errors: {errors}; "
        f"sampling {report.seconds['sampling']:.1f} s, grading {report.seconds['grading']:.1f} s"
    )


def summary(report: PreflightReport) -> str:
    """A readable summary (plain text: escape it before printing through Rich markup)."""
    lines = [report.message]
    hist = report.reward.get("histogram") or []
    if hist:
        lines.append("reward histogram:")
        top = max(1, max(b["count"] for b in hist))
        for i, b in enumerate(hist):
            bar = "█" * round(20 * b["count"] / top)
            end = "]" if i == len(hist) - 1 else ")"
            lines.append(f"  [{b['low']:.2f}, {b['high']:.2f}{end} {b['count']:>4} {bar}")
    if report.sub_grader_signal:
        shares = ", ".join(f"{k} {_pct(v)}" for k, v in report.sub_grader_signal.items())
        lines.append(f"groups in which each sub-grader varies: {shares}")
    for s in report.slowest:
        lines.append(f"slow to grade: {s['seconds']:.3f} s  {_quote(s['completion'], 80)}")
    return "\n".join(lines)


def write_report(run_dir: Path, report: PreflightReport) -> Path:
    """Write `RUN_DIR/preflight.json`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / PREFLIGHT
    partial = path.with_suffix(".partial")  # a watcher never reads half a report
    partial.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1), "utf-8")
    os.replace(partial, path)
    return path


def check(report: PreflightReport) -> None:
    """Raise `PreflightError` when the pre-flight failed and was not forced."""
    if not report.passed and not report.forced:
        raise PreflightError(report)


def stage(
    config: TrainingConfig,
    model: Any,
    tokenizer: Any,
    rows: Sequence[Row],
    context: GradeContext,
    out: Path,
    *,
    resumed: bool = False,
    echo: bool = False,
    agent: Agent | None = None,
) -> PreflightReport | None:
    """The pre-flight as a run's first stage (`grpo._run`): None when `preflight.enabled` is
    off or the run resumes (it passed before), unless `preflight.only` asks for it. Writes the
    report (rank 0), prints its summary when `echo`, and fails the run with `preflight_failed`
    when it fails unforced. The global seed is set again afterwards, so training samples as it
    would have without the pre-flight."""
    import transformers

    settings = config.preflight
    if not settings.only and (not settings.enabled or resumed):
        return None
    with failing_as(out, "preflight_failed", "preflight", PreflightError):
        report = preflight(config, model, tokenizer, rows, context, agent)
        if int(os.environ.get("RANK", "0")) == 0:
            write_report(out, report)
        if echo:  # plain text, never parsed as Rich markup
            print(summary(report), flush=True)
        transformers.set_seed(config.seed)
        check(report)
    return report
