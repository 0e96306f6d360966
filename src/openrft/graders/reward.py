"""A grader as a reward function: `reward(prompts, completions, **columns) -> list[float]`.

This is the signature TRL's `GRPOTrainer` calls its `reward_funcs` with (by keyword:
`prompts=`, `completions=`, `completion_ids=`, then every dataset column and `trainer_state`,
`log_metric`, …), so any grader spec is a reward function:

```python
from openrft.graders import load_grader

grader = load_grader({"type": "string_check", "name": "exact", "operation": "eq",
                      "input": "{{ sample.output_answer }}",
                      "reference": "{{ item.reference_answer }}"})
grader(prompts, completions, reference_answer=["6", "6"])   # -> [1.0, 0.0]
GRPOTrainer(..., reward_funcs=[grader])                     # logs rewards/exact/mean
GRPOTrainer(..., reward_funcs=[grader.as_fn()])             # picklable, for spawned workers
```

- A completion is a string or a list of chat messages (its assistant messages' text is graded).
- The item of completion i is built from the columns: an `openrft_item` column (OpenRFT's own
  datasets) holds it as JSON; otherwise every column but TRL's own arguments is an item field,
  `{"reference_answer": reference_answer[i], …}`. Each column holds one value per completion.
- Groups, for group-wise graders (python `grade_group`, score_model `group`): a group is a run
  of consecutive completions with the same prompt and item (TRL passes each prompt's
  `num_generations` completions together), cut into chunks of `group_size` when it is given
  (so a prompt repeated in the dataset and sampled twice in a row still makes two groups).
  Without prompts, equal consecutive items make a group. Other graders ignore groups. An
  OpenRFT job sets `group_size` to `num_generations`; its validation samples one completion
  per row, so there every group has one (see the `grade_group` and `group` sections).
- Grading uses `GradeContext.from_environment()` (the local default: judges from
  `$OPENRFT_JUDGES`, secrets from `$OPENRFT_SECRET_<NAME>`), read at call time.

`as_fn()` returns `functools.partial(spec_reward, "<spec JSON>")`: it pickles as the JSON and
the function's import path, so it survives `pickle` and multiprocessing's spawn; each process
parses the JSON once. TRL names a partial after the wrapped function (`spec_reward`); pass the
grader itself for its own name. Training's `GraderReward` (`training/rewards.py`) builds on
the same functions and adds statistics, `response_format` checks and a shared batch cache.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from openrft.graders import GradeContext, Grader, GradeResults, grade_batch, load_grader
from openrft.graders.registry import is_group_wise
from openrft.graders.sample import Item

__all__ = [
    "ITEM_COLUMN",
    "TRL_ARGUMENTS",
    "as_fn",
    "completion_text",
    "grade_completions",
    "group_sizes",
    "items_from",
    "rewards",
    "spec_reward",
]

ITEM_COLUMN = "openrft_item"
"""Dataset column holding each row's `item` as JSON (TRL passes columns to reward functions)."""

TRL_ARGUMENTS = frozenset(
    {
        "prompt",
        "prompts",
        "completion",
        "completions",
        "completion_ids",
        "trainer_state",
        "log_extra",
        "log_metric",
        "environments",
    }
)
"""What TRL passes a reward function besides dataset columns; never part of an item."""


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a plain string, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion if m.get("role") == "assistant")


def items_from(columns: Mapping[str, Any], n: int) -> list[Item]:
    """The `item` of each of `n` completions, from the dataset columns (see module docstring)."""
    column = columns.get(ITEM_COLUMN)
    if column is not None:
        return [json.loads(value) for value in column]
    keys = [k for k in columns if k not in TRL_ARGUMENTS]
    for key in keys:
        values = columns[key]
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise ValueError(
                f"column `{key}` must hold one value per completion (a list of {n}), "
                f"got {type(values).__name__}: pass e.g. {key}=[...] with {n} values"
            )
        if len(values) != n:
            raise ValueError(
                f"column `{key}` has {len(values)} values for {n} completions: pass one per "
                "completion (TRL repeats each row's columns for its num_generations completions)"
            )
    return [{k: columns[k][i] for k in keys} for i in range(n)]


def _key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def group_sizes(
    prompts: Sequence[Any] | None, items: Sequence[Item], group_size: int | None = None
) -> list[int]:
    """Sizes of the consecutive groups: runs of the same prompt (when given) and item, each cut
    into chunks of `group_size` (when given; the last chunk may be shorter)."""
    keys = [
        (_key(prompts[i]) if prompts is not None else "", _key(dict(item)))
        for i, item in enumerate(items)
    ]
    sizes: list[int] = []
    run = 0
    for i, key in enumerate(keys):
        run += 1
        if i + 1 == len(keys) or keys[i + 1] != key or run == group_size:
            sizes.append(run)
            run = 0
    return sizes


def grade_completions(
    grader: Grader,
    prompts: Sequence[Any] | None,
    completions: Sequence[Any] | None,
    columns: Mapping[str, Any],
    context: GradeContext | None = None,
    group_size: int | None = None,
) -> GradeResults:
    """Grade TRL-shaped arguments: one result per completion."""
    if completions is None:
        raise TypeError("a reward function needs `completions`: call reward(prompts, completions)")
    if prompts is not None and len(prompts) != len(completions):
        raise ValueError(
            f"{len(prompts)} prompts but {len(completions)} completions: pass one prompt per "
            "completion (TRL repeats each prompt for its num_generations completions)"
        )
    texts = [completion_text(c) for c in completions]
    items = items_from(columns, len(texts))
    groups = group_sizes(prompts, items, group_size) if is_group_wise(grader) else None
    return grade_batch(grader, texts, items, context or GradeContext.from_environment(), groups)


def rewards(
    grader: Grader,
    prompts: Sequence[Any] | None,
    completions: Sequence[Any] | None,
    columns: Mapping[str, Any],
    group_size: int | None = None,
) -> list[float]:
    """One reward per completion (what `grader(prompts, completions, **columns)` returns)."""
    return grade_completions(grader, prompts, completions, columns, None, group_size).rewards


@functools.lru_cache(maxsize=64)
def _parsed(spec_json: str) -> Grader:
    return load_grader(json.loads(spec_json))


def spec_reward(
    spec_json: str,
    prompts: Sequence[Any] | None = None,
    completions: Sequence[Any] | None = None,
    *,
    group_size: int | None = None,
    **columns: Any,
) -> list[float]:
    """The reward function `as_fn` wraps: the grader given as its spec's JSON."""
    return rewards(_parsed(spec_json), prompts, completions, columns, group_size)


def spec_json(grader: Grader) -> str:
    """The spec as JSON that `load_grader` reads back to an equal spec."""
    return grader.model_dump_json(exclude_none=True)


def as_fn(grader: Grader, group_size: int | None = None) -> functools.partial[list[float]]:
    """`grader` as a picklable plain function (see module docstring)."""
    fn = functools.partial(spec_reward, spec_json(grader))
    if group_size is not None:
        fn = functools.partial(spec_reward, spec_json(grader), group_size=group_size)
    fn.__name__ = grader.name  # type: ignore[attr-defined]  # kept by pickle (partial.__dict__)
    return fn
