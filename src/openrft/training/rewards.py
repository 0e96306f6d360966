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
`GraderReward(load_grader(spec))` (or `reward_functions(spec)`) to your own `GRPOTrainer`. Grader
error flags and failed-sample counts are reported through TRL's `log_metric` (`errors/<flag>`).

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
from openrft.graders.registry import is_io_bound
from openrft.graders.result import GradeResult, GradeResults
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import Grader, MultiGrader

__all__ = ["GradeStats", "GraderReward", "completion_text", "reward_functions", "reward_weights"]

THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
"""The reasoning span of a completion (SeekrFlow's format)."""

ITEM_COLUMN = "openrft_item"
"""Dataset column holding each row's `item` as JSON (TRL passes columns to reward functions)."""


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a plain string, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion if m.get("role") == "assistant")


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
    """A grader tree as a TRL reward function (avnlp's `BaseReward` pattern): call it with
    `completions` and the dataset columns; it returns one float per completion."""

    def __init__(
        self,
        grader: Grader | dict[str, Any],
        context: GradeContext | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> None:
        self.grader: Grader = load_grader(grader) if isinstance(grader, dict) else grader
        self.context = context or GradeContext()
        self.response_format = response_format
        self.stats = GradeStats()
        self.__name__ = self.grader.name
        self._lock = threading.Lock()
        self._last: tuple[tuple[str, ...], GradeResults] | None = None

    @property
    def is_async(self) -> bool:
        return is_io_bound(self.grader)

    def grade(self, texts: Sequence[str], items: Sequence[Item]) -> GradeResults:
        """Grade completions against their items (one batch call into the grader engine)."""
        started = perf_counter()
        samples = [self._sample(text) for text in texts]
        results = grade_batch(self.grader, [s for s, _ in samples], items, self.context)
        for i, (_, parse_error) in enumerate(samples):
            if parse_error:
                results[i] = GradeResult.failed(
                    self.grader.name, self.grader.type, "sample_parse_error", parse_error
                )
        self.stats.add(results, perf_counter() - started)
        return results

    def graded(self, completions: Sequence[Any], kwargs: dict[str, Any]) -> GradeResults:
        """Results for this batch, graded once however many reward functions ask."""
        texts = tuple(completion_text(c) for c in completions)
        with self._lock:
            if self._last is not None and self._last[0] == texts:
                return self._last[1]
            results = self.grade(texts, items_from(kwargs, len(texts)))
            self.stats.reasoning_tokens += reasoning_tokens(texts, kwargs.get("completion_ids"))
            self._last = (texts, results)
        _log_errors(results, kwargs.get("log_metric"))
        return results

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return self.graded(completions, kwargs).rewards

    def _sample(self, text: str) -> tuple[Sample, str | None]:
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


def items_from(kwargs: dict[str, Any], n: int) -> list[Item]:
    """The `item` of each completion, from the dataset column TRL passes along."""
    column = kwargs.get(ITEM_COLUMN)
    if column is None:  # a plain TRL dataset: every extra column is an item field
        skip = {"prompt", "trainer_state", "log_extra", "log_metric", "completion_ids", "prompts"}
        keys = [k for k in kwargs if k not in skip]
        return [{k: kwargs[k][i] for k in keys} for i in range(n)]
    return [json.loads(value) for value in column]


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

    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return pick(shared.graded(completions, kwargs))

    async def reward_async(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return pick(await asyncio.to_thread(shared.graded, completions, kwargs))

    func: RewardFunc = reward_async if shared.is_async else reward
    func.__name__ = name if sub is None else f"{shared.grader.name}/{name}"
    func.grader_reward = shared  # type: ignore[attr-defined]  # lets callbacks find the stats
    return func
