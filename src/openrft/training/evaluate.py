"""Validation: generate on held-out rows and grade them with the job's grader.

`Evaluator.run(step)` samples one completion per validation row (greedy unless its
`EvalSettings.temperature > 0`) with plain `model.generate`, grades the batch with the same
`GraderReward` the trainer uses, and returns an `EvalResult` (mean reward, per-grader means, error
rates, completion lengths, reasoning tokens, and the samples themselves for the report). It
always evaluates the same rows (the first `EvalSettings.samples` of the validation split), so
scores are comparable over time. `build_evaluator` takes its settings from a job's config.

`reasoning_token_counts(tokenizer, texts)` counts the tokens inside each completion's
`<think>…</think>` spans with the model's tokenizer (OpenAI's `*_reasoning_tokens_mean`); the
training steps' counts use it too (`callbacks.py`).

It does not decide *when* to evaluate (that is `callbacks.py`) and never trains.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from openrft.data import Row
from openrft.graders.sample import Sample
from openrft.training.config import TrainingConfig
from openrft.training.constrained_generation import constraint_for, schema_processors
from openrft.training.records import render_prompt
from openrft.training.rewards import GraderReward
from openrft.training.rundir import EvalSample, write_eval_samples
from openrft.training.sampling import decode

if TYPE_CHECKING:
    from openrft.training.agent import Agent, Trajectory

EVAL_BATCH = 64
"""Rows generated together; larger batches give more sequences per second on CPU."""
REASONING = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
"""A reasoning span: `<think>…</think>`, or `<think>…` to the end of a completion cut off while
still reasoning."""


def reasoning_token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens each text spends reasoning: its `<think>` spans' text tokenized with `tokenizer`
    (no special tokens; the tags themselves are not counted). One tokenizer call for the batch.

    Spans are re-tokenized from the decoded text, so a count can differ by a token at a span's
    edges from how the model produced it; it is a count, not an estimate by character share."""
    spans = [(i, span) for i, text in enumerate(texts) for span in REASONING.findall(text)]
    counts = [0] * len(texts)
    if not spans:
        return counts
    encoded = tokenizer([span for _, span in spans], add_special_tokens=False)["input_ids"]
    for (i, _), ids in zip(spans, encoded, strict=True):
        counts[i] += len(ids)
    return counts


@dataclass
class EvalResult:
    """One evaluation pass over the validation rows."""

    step: int
    reward_mean: float
    grader_means: dict[str, float]
    error_rates: dict[str, float]
    completion_tokens_mean: float
    seconds: float
    samples: list[EvalSample] = field(default_factory=list)
    """`{step, prompt, reference, completion, reward, sub_rewards}` per row."""
    reasoning_tokens_mean: float = 0.0
    """Mean tokens inside `<think>…</think>`, counted with the tokenizer."""


@dataclass(frozen=True)
class EvalSettings:
    """What `Evaluator` needs of a job's config."""

    samples: int | None
    """Validation rows evaluated (the first ones); None: all of them."""
    temperature: float
    """Sampling temperature; 0 is greedy."""
    max_completion_length: int
    """Most new tokens per completion."""


def build_evaluator(
    config: TrainingConfig,
    model: Any,
    tokenizer: Any,
    rows: list[Row],
    reward: GraderReward,
    agent: Agent | None = None,
) -> Evaluator:
    """The `Evaluator` of a job, with the settings it reads from `config`."""
    settings = EvalSettings(
        samples=config.eval_samples,
        temperature=config.eval_temperature,
        max_completion_length=config.max_completion_length,
    )
    evaluator = Evaluator(model, tokenizer, rows, reward, settings)
    evaluator.constraint = constraint_for(config, tokenizer)
    evaluator.agent = agent
    return evaluator


class Evaluator:
    """Generates and grades on a fixed set of validation rows."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        rows: list[Row],
        reward: GraderReward,
        settings: EvalSettings,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.rows = rows[: settings.samples] if settings.samples else rows
        self.held_out = len(rows)
        """Validation rows there are (the evaluation uses the first `samples` of them)."""
        self.reward = reward
        self.settings = settings
        self.constraint: Any = None
        """The `response_format` constraint decoding follows (`constrained_generation.py`)."""
        self.agent: Agent | None = None
        """An agent job's tools: each row is a whole rollout (`agent.rollout`)."""
        self._trajectories: list[Trajectory] = []

    def run(self, step: int) -> EvalResult:
        started = perf_counter()
        texts, lengths, prompt_lengths = self.generate()
        rollouts = [t.messages for t in self._trajectories] or None
        environment = [
            t.episode.environment_reward if t.episode else None for t in self._trajectories
        ]
        # evaluation grading must not leak into the training step's grader statistics
        saved = self.reward.stats.take()
        items = [row.item for row in self.rows]
        results = self.reward.grade(texts, items, None, rollouts, environment or None)
        self.reward.stats = saved
        flags: Counter[str] = Counter()
        for result in results:
            flags.update(result.errors.flags())
        keys = sorted({k for r in results for k in r.sub_rewards})
        n = max(1, len(results))
        mean = fmean(r.reward for r in results) if results else 0.0
        by_grader = {k: fmean(r.sub_rewards.get(k, 0.0) for r in results) for k in keys}
        return EvalResult(
            step=step,
            reward_mean=mean,
            grader_means=by_grader or {self.reward.grader.name: mean},
            error_rates={flag: count / n for flag, count in flags.items()},
            completion_tokens_mean=fmean(lengths) if lengths else 0.0,
            reasoning_tokens_mean=fmean(reasoning_token_counts(self.tokenizer, texts) or [0]),
            seconds=perf_counter() - started,
            samples=[
                cast(EvalSample, sample)
                for sample in self._samples(step, texts, results, prompt_lengths, lengths)
            ],
        )

    def _samples(
        self,
        step: int,
        texts: list[str],
        results: Any,
        prompt_lengths: list[int],
        lengths: list[int],
    ) -> list[dict[str, Any]]:
        return [
            {
                "step": step,
                "prompt": row.messages[-1].get("content"),
                "reference": row.item.get("reference_answer", dict(row.item)),
                "completion": text,
                "reward": result.reward,
                "sub_rewards": result.sub_rewards,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
            }
            | (_trajectory_fields(self._trajectories[i]) if self._trajectories else {})
            for i, (row, text, result, prompt_tokens, completion_tokens) in enumerate(
                zip(self.rows, texts, results, prompt_lengths, lengths, strict=True)
            )
        ]

    def generate(self) -> tuple[list[str], list[int], list[int]]:
        """One completion per row, in batches; returns texts, their token counts and their
        prompts' token counts."""
        import torch

        texts: list[str] = []
        lengths: list[int] = []
        prompt_lengths: list[int] = []
        self._trajectories = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(self.rows), EVAL_BATCH):
                batch = self.rows[start : start + EVAL_BATCH]
                if self.agent is not None:
                    done = self._rollouts(batch)
                    texts += [_final_answer(t) for t in done]
                    lengths += [t.completion_tokens for t in done]
                    prompt_lengths += [t.prompt_tokens for t in done]
                    continue
                with torch.no_grad():
                    new_texts, new_lengths, new_prompts = self._generate_batch(batch)
                texts += new_texts
                lengths += new_lengths
                prompt_lengths += new_prompts
        finally:
            self.model.train(was_training)
        return texts, lengths, prompt_lengths

    def _rollouts(self, rows: list[Row]) -> list[Trajectory]:
        from openrft.training.agent import rollout

        assert self.agent is not None
        done = rollout(
            self.model,
            self.tokenizer,
            self.agent,
            rows,
            max_completion_length=self.settings.max_completion_length,
            temperature=self.settings.temperature,
        )
        self._trajectories += done
        return done

    def _generate_batch(self, rows: list[Row]) -> tuple[list[str], list[int], list[int]]:
        tok = self.tokenizer
        prompts = [render_prompt(tok, row) for row in rows]
        side, tok.padding_side = tok.padding_side, "left"
        encoded = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        tok.padding_side = side
        encoded = encoded.to(self.model.device)
        sampling = self.settings.temperature > 0
        processors = None
        if self.constraint is not None:  # `response_format`: the same JSON as training samples
            processors = schema_processors(self.constraint, len(rows), tok.eos_token_id)
        output = self.model.generate(
            **encoded,
            max_new_tokens=self.settings.max_completion_length,
            do_sample=sampling,
            temperature=self.settings.temperature if sampling else None,
            top_p=None,
            top_k=None,
            pad_token_id=tok.pad_token_id,
            logits_processor=processors,
            custom_generate=decode,
        )
        new = output[:, encoded["input_ids"].shape[1] :]
        ends = [_length(seq, tok.eos_token_id, tok.pad_token_id) for seq in new.tolist()]
        texts = [
            tok.decode(seq[:n], skip_special_tokens=True) for seq, n in zip(new, ends, strict=True)
        ]
        return texts, ends, [int(n) for n in encoded["attention_mask"].sum(dim=1).tolist()]


def _final_answer(trajectory: Trajectory) -> str:
    """The last assistant turn's text (a rollout cut off after a tool turn ends with it)."""
    return Sample.from_trajectory(trajectory.messages).output_text


def _trajectory_fields(trajectory: Trajectory) -> dict[str, Any]:
    """An agent row's extra sample fields: its messages, turns and tool calls."""
    episode = trajectory.episode
    calls = episode.calls if episode is not None else []
    return {
        "trajectory": Sample.from_trajectory(trajectory.messages).trajectory or [],
        "turns": sum(m.get("role") == "assistant" for m in trajectory.messages),
        "tool_calls": [
            {"name": c.name, "arguments": c.arguments, "error": c.error, "seconds": c.seconds}
            for c in calls
        ],
        "dropped": bool(episode and episode.dropped),
        "environment_reward": episode.environment_reward if episode else None,
        "truncated": trajectory.truncated,
    }


def _length(ids: list[int], eos: int | None, pad: int | None) -> int:
    """Tokens up to and including the first EOS (padding after it does not count)."""
    for i, token in enumerate(ids):
        if token == eos:
            return i + 1
        if token == pad and eos is None:
            return i
    return len(ids)


def write_samples(result: EvalResult, run_dir: Path) -> Path:
    """Save an evaluation's samples as `RUN_DIR/evals/step-N.jsonl` (read back by the report
    and the dashboard)."""
    return write_eval_samples(run_dir, result.step, result.samples)
