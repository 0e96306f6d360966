"""Graders as TRL reward functions.

`reward_functions(grader)` turns one grader tree into the list TRL's `GRPOTrainer` takes:

- first the **combined** reward (the tree's own `reward`, weight 1), which is what GRPO optimises;
- then one function per top-level sub-grader of a `multi` grader (weight 0), so TRL logs
  `rewards/<name>/mean` for each grader without counting it twice.

All of them share one `GraderReward`, which grades a batch once and serves the sub-rewards from
that result. When the tree holds a grader that waits on I/O (`score_model`, `label_model`,
`endpoint`: the types marked `io_bound` in `graders/registry.py`), the functions are `async`
(TRL 1.16 runs async reward functions concurrently on its event loop) and the grading runs in a
worker thread.

`GraderReward` is also the avnlp-style `BaseReward` for TRL users: pass
`GraderReward(load_grader(spec))` (or `reward_functions(spec)`, or the spec itself, or
`spec.as_fn()`: see `graders/reward.py`) to your own `GRPOTrainer`. It is picklable. Grader
error flags and failed-sample counts are reported through TRL's `log_metric` (`errors/<flag>`).

Group-wise graders (python `grade_group`, score_model `group`) see each prompt's completions
together: TRL passes a prompt's `num_generations` completions consecutively, and
`graders.reward.group_sizes` cuts the batch into runs of one prompt and item, at most
`group_size` long. With several processes, each grades its own share of the batch: a group
stays whole when each process's share (`batch_size * num_generations / num_processes`) is a
multiple of `num_generations`. Validation grades one completion per row: groups of one.

This module does not train, sample or write files; metrics files are `callbacks.py`'s business.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from openrft.graders import GradeContext, grade_batch, load_grader
from openrft.graders.registry import is_group_wise, is_io_bound
from openrft.graders.result import GradeResult, GradeResults
from openrft.graders.reward import ITEM_COLUMN, as_fn, completion_text, group_sizes, items_from
from openrft.graders.sample import Item, Sample, is_trajectory
from openrft.graders.spec import Grader, MultiGrader

__all__ = [
    "ITEM_COLUMN",
    "GradeStats",
    "GraderReward",
    "completion_text",
    "items_from",
    "reward_functions",
    "reward_weights",
]

THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
"""The reasoning span of a completion (SeekrFlow's format)."""


@dataclass
class GradeStats:
    """Running totals of one process's grading, read by the metrics callback after each step."""

    samples: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    """Samples with each error flag set."""
    failed: int = 0
    """Samples with any error flag set."""
    failures: list[GradeResult] = field(default_factory=list)
    """This step's failed results (for the error-rate check and its sample tracebacks)."""
    reasoning_tokens: float = 0.0
    """Completion tokens spent inside `<think>…</think>` (estimated by character share)."""

    def add(self, results: GradeResults, seconds: float) -> None:
        self.samples += len(results)
        self.seconds += seconds
        for _, result in results.failures():  # the successes are never built
            self.failures.append(result)
            self.failed += 1
            self.errors.update(result.errors.flags())

    def take(self) -> GradeStats:
        """Return the totals so far and start counting afresh."""
        taken = GradeStats(
            self.samples,
            self.seconds,
            self.errors,
            self.failed,
            self.failures,
            self.reasoning_tokens,
        )
        self.samples, self.seconds, self.errors, self.failed = 0, 0.0, Counter(), 0
        self.failures, self.reasoning_tokens = [], 0.0
        return taken


def reasoning_tokens(texts: Sequence[str], completion_ids: Sequence[Any] | None) -> float:
    """Tokens spent reasoning: each completion's token count times the share of its characters
    inside `<think>…</think>` (an estimate: the tokenizer is not at hand in a reward function)."""
    if not completion_ids:
        return 0.0
    total = 0.0
    for text, ids in zip(texts, completion_ids, strict=False):
        thought = sum(len(m) for m in THINK.findall(text))
        total += len(ids) * thought / len(text) if thought and text else 0.0
    return total


class GraderReward:
    """A grader tree as a TRL reward function (avnlp's `BaseReward` pattern): call it as
    `reward(prompts, completions, **columns)` (positionally or by keyword, as TRL does); it
    returns one float per completion. See `graders/reward.py` for how columns become items and
    completions become groups (`group_size`: TRL's `num_generations`).

    It pickles as its spec's JSON, context, `response_format` and `group_size` (the lock, the
    batch cache and the statistics are per process and start afresh), so it can be handed to
    spawned workers; `as_fn()` is the plain-function form."""

    def __init__(
        self,
        grader: Grader | dict[str, Any],
        context: GradeContext | None = None,
        response_format: dict[str, Any] | None = None,
        group_size: int | None = None,
    ) -> None:
        self.grader: Grader = load_grader(grader) if isinstance(grader, dict) else grader
        self.context = context or GradeContext()
        self.response_format = response_format
        self.group_size = group_size
        """Completions sampled per prompt (`num_generations`): the most a group holds."""
        self.stats = GradeStats()
        self.__name__ = self.grader.name
        self._lock = threading.Lock()
        self._last: tuple[tuple[str, ...], GradeResults] | None = None
        self._last_groups: list[int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "grader": self.grader.model_dump(mode="json", exclude_none=True),
            "context": self.context,
            "response_format": self.response_format,
            "group_size": self.group_size,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]  # rebuilt as new: fresh lock, cache and stats
            state["grader"], state["context"], state["response_format"], state["group_size"]
        )

    @property
    def last_texts(self) -> tuple[str, ...]:
        """The completions of the last batch graded through `__call__` (this step's, during
        training: the run callback counts their reasoning tokens)."""
        return self._last[0] if self._last else ()

    @property
    def is_async(self) -> bool:
        return is_io_bound(self.grader)

    def as_fn(self) -> Callable[..., list[float]]:
        """The grader as a plain picklable function (`graders.reward.as_fn`); it grades with
        the calling process's `GradeContext.from_environment()`, without `response_format`."""
        return as_fn(self.grader, group_size=self.group_size)

    def grade(
        self,
        texts: Sequence[str],
        items: Sequence[Item],
        groups: Sequence[int] | None = None,
        trajectories: Sequence[list[dict[str, Any]] | None] | None = None,
        environment_rewards: Sequence[float | None] | None = None,
    ) -> GradeResults:
        """Grade completions against their items (one batch call into the grader engine).
        `groups`: sizes of the consecutive groups of completions for one prompt, for
        group-wise graders; None (validation: one completion per row) makes every completion
        a group of one. `trajectories`: a multi-turn rollout's messages in place of its text
        (`Sample.from_trajectory`), None for a single completion; `environment_rewards`: each
        rollout's environment `reward()`."""
        started = perf_counter()
        rollouts = trajectories or [None] * len(texts)
        extra = environment_rewards or [None] * len(texts)
        samples = [self._sample(t, r, e) for t, r, e in zip(texts, rollouts, extra, strict=True)]
        results = grade_batch(
            self.grader, [s for s, _ in samples], items, self.context, groups=groups
        )
        for i, (_, parse_error) in enumerate(samples):
            if parse_error:
                results[i] = GradeResult.failed(
                    self.grader.name, self.grader.type, "sample_parse_error", parse_error
                )
        self.stats.add(results, perf_counter() - started)
        return results

    def graded(
        self,
        completions: Sequence[Any],
        kwargs: dict[str, Any],
        prompts: Sequence[Any] | None = None,
    ) -> GradeResults:
        """Results for this batch, graded once however many reward functions ask."""
        rollouts = [c if is_trajectory(c) else None for c in completions]
        texts = tuple(
            json.dumps(c, sort_keys=True, default=str) if c is not None else completion_text(raw)
            for c, raw in zip(rollouts, completions, strict=True)
        )
        if prompts is not None and len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts but {len(texts)} completions")
        # only a group-wise grader needs the items (to find the groups) before the cache check
        items = items_from(kwargs, len(texts)) if is_group_wise(self.grader) else None
        groups = None if items is None else group_sizes(prompts, items, self.group_size)
        with self._lock:
            last = self._last
            if last is not None and last[0] == texts and self._last_groups == groups:
                return last[1]
            if items is None:
                items = items_from(kwargs, len(texts))
            trajectories = rollouts if any(r is not None for r in rollouts) else None
            episodes = kwargs.get("environments") or ()
            environment = [getattr(e, "environment_reward", None) for e in episodes] or None
            results = self.grade(texts, items, groups, trajectories, environment)
            self.stats.reasoning_tokens += reasoning_tokens(texts, kwargs.get("completion_ids"))
            # `_last[0]` stays the texts: the metrics callback counts their reasoning tokens
            self._last, self._last_groups = (texts, results), groups
        _log_errors(results, kwargs.get("log_metric"))
        return results

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if completions is None:
            raise TypeError(
                "a reward function needs `completions`: call reward(prompts, completions)"
            )
        return self.graded(completions, kwargs, prompts).rewards

    def _sample(
        self,
        text: str,
        trajectory: list[dict[str, Any]] | None = None,
        environment_reward: float | None = None,
    ) -> tuple[Sample, str | None]:
        if trajectory is not None:
            sample = Sample.from_trajectory(trajectory, environment_reward)
        else:
            sample = Sample.from_text(text)
        if self.response_format is None:
            return sample, None
        return sample, schema_problem(sample.output_json, self.response_format)


def schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` (an output parsed as JSON, or `None`) does not match `schema`, or `None`."""
    import jsonschema  # type: ignore[import-untyped]

    if value is None:
        return "the output is not JSON"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return f"the output does not match response_format: {exc.message}"
    return None


def _log_errors(results: GradeResults, log_metric: Any) -> None:
    if log_metric is None or not results:
        return
    counts: Counter[str] = Counter()
    for _, result in results.failures():
        counts.update(result.errors.flags())
    for flag, count in counts.items():
        log_metric(f"errors/{flag}", count / len(results))


RewardFunc = Callable[..., Any]


def reward_functions(
    grader: Grader | dict[str, Any] | GraderReward,
    context: GradeContext | None = None,
    response_format: dict[str, Any] | None = None,
) -> list[RewardFunc]:
    """The combined reward, then one function per top-level sub-grader (see module docstring).
    Pass `reward_weights(funcs)` as `GRPOConfig.reward_weights`."""
    shared = (
        grader
        if isinstance(grader, GraderReward)
        else GraderReward(grader, context, response_format)
    )
    funcs = [_named(shared, shared.grader.name, None)]
    if isinstance(shared.grader, MultiGrader):
        funcs += [_named(shared, key, key) for key in shared.grader.graders]
    return funcs


def reward_weights(funcs: Sequence[RewardFunc]) -> list[float]:
    """Weight 1 for the combined reward, 0 for the logged-only sub-grader rewards."""
    return [1.0] + [0.0] * (len(funcs) - 1)


def _named(shared: GraderReward, name: str, sub: str | None) -> RewardFunc:
    def pick(results: GradeResults) -> list[float]:
        if sub is None:
            return results.rewards
        return [r.sub_rewards.get(sub, 0.0) for r in results]

    def reward(
        prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        return pick(shared.graded(completions, kwargs, prompts))

    async def reward_async(
        prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        return pick(await asyncio.to_thread(shared.graded, completions, kwargs, prompts))

    func: RewardFunc = reward_async if shared.is_async else reward
    func.__name__ = name if sub is None else f"{shared.grader.name}/{name}"
    func.grader_reward = shared  # type: ignore[attr-defined]  # lets callbacks find the stats
    return func
