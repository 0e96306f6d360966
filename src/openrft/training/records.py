"""Dataset rows as training sees them: read, split, and shaped into TRL records (the dataset
files themselves are `openrft.data`'s: `data/rows.py` reads and checks them).

RL rows are read and validated by `openrft.data.load_dataset` (every problem with its line,
including fields the grader's templates need); the validation carve-out is
`openrft.data.split_validation` (10% of the training rows, at least 1, at most 100, picked with
the job's `seed`). Supervised files, whose rows end with the assistant's answer, are read with
`read_sft_jsonl`, which checks only what SFT needs. Nothing here trains.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openrft.data import Row, load_dataset, split_validation
from openrft.data.rows import parse_line, read_lines
from openrft.errors import DatasetError, Problem
from openrft.graders.spec import Grader
from openrft.graders.template import render
from openrft.training.rewards import ITEM_COLUMN

__all__ = [
    "Row",
    "grpo_records",
    "load_rows",
    "prompt_only",
    "read_sft_jsonl",
    "render_prompt",
    "sft_records",
    "split_rows",
]


def load_rows(path: str | Path, grader: Grader | None = None) -> list[Row]:
    """Read and validate a chat-format JSONL file of prompts (final message from the user)."""
    return load_dataset(path, grader)


def split_rows(rows: list[Row], share: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Hold out validation rows when a job has no validation file."""
    return split_validation(rows, share, seed)


def read_sft_jsonl(path: str | Path, grader: Grader | None = None) -> list[Row]:
    """Supervised rows: chat-format JSONL lines (`openrft.data.rows` checks each one), usually
    ending with the assistant's answer (a row ending with the user needs a `completion`
    template, `sft_records`); other keys except `tools` become the item. Raises `DatasetError`
    listing every bad line. (`grader` is accepted so it reads like `load_rows`; unused.)"""
    del grader
    rows: list[Row] = []
    problems: list[Problem] = []
    try:
        for line in read_lines(Path(path)):
            found, messages = (None, [line.problem or ""])
            if line.text is not None:
                found, messages = parse_line(line.text, line.number, last_role=None)
            problems += [Problem(f"{path}:{line.number}", message) for message in messages]
            rows += [found] if found is not None else []
    except OSError as exc:
        raise DatasetError([Problem(str(path), f"cannot read the file: {exc}")]) from None
    if problems or not rows:
        raise DatasetError(problems or [Problem(str(path), "the file has no rows")])
    return rows


def prompt_only(row: Row) -> Row:
    """The row without a trailing assistant answer (what the model is asked at evaluation)."""
    if row.messages and row.messages[-1].get("role") == "assistant":
        return Row(messages=row.messages[:-1], tools=row.tools, item=row.item, line=row.line)
    return row


def grpo_records(
    rows: list[Row], tokenizer: Any = None, environment: Callable[[Row], str] | None = None
) -> list[dict[str, Any]]:
    """TRL prompt records: conversational `prompt` plus the item as a JSON column.

    An agent job (`environment`: the row's TRL environment name, `training/agent.py`) keeps
    prompts conversational and adds the `environment` column: TRL renders each prompt with its
    environment's tool schemas. Otherwise, when rows carry `tools`, every prompt is rendered to
    text here with its own row's tool schemas (TRL renders one tool list for the whole run, and
    will not mix text and chat prompts in a batch)."""
    if environment is not None:
        return [
            {
                "prompt": row.messages,
                ITEM_COLUMN: json.dumps(row.item),
                "environment": environment(row),
            }
            for row in rows
        ]
    if tokenizer is None or not any(row.tools for row in rows):
        return [{"prompt": row.messages, ITEM_COLUMN: json.dumps(row.item)} for row in rows]
    return [
        {"prompt": render_prompt(tokenizer, row), ITEM_COLUMN: json.dumps(row.item)} for row in rows
    ]


def render_prompt(tokenizer: Any, row: Row) -> str:
    """The row's prompt as the model sees it, its tool schemas included."""
    text: str = tokenizer.apply_chat_template(
        row.messages, tools=row.tools or None, tokenize=False, add_generation_prompt=True
    )
    return text


def sft_records(
    rows: list[Row],
    completion: str | None,
    tools_for: Callable[[Row], list[dict[str, Any]] | None] | None = None,
) -> list[dict[str, Any]]:
    """TRL prompt-completion records: the final assistant message is the target, or, for rows
    ending with the user, `completion` rendered over the item. The tools a row is shown
    (`tools_for(row)`, default: its own `tools`) go in a `tools` column (JSON), which TRL's
    `SFTTrainer` renders into the prompt: an agent's warm-up sees the prompts its rollouts
    will (a `completion` like `<tool_call>{...}</tool_call>` renders as a call)."""
    shown = tools_for or (lambda row: row.tools)
    with_tools = any(shown(row) for row in rows)
    records = []
    for i, row in enumerate(rows):
        if row.messages[-1].get("role") == "assistant":
            prompt, target = row.messages[:-1], row.messages[-1]
        elif completion is not None:
            text = render(completion, sample={}, item=row.item)
            prompt, target = row.messages, {"role": "assistant", "content": text}
        else:
            raise DatasetError(
                [
                    Problem(
                        f"line {row.line or i + 1}",
                        "a supervised row must end with an assistant message; or set "
                        "`sft_warmup.completion`, e.g. '{{ item.reference_answer }}'",
                    )
                ]
            )
        record: dict[str, Any] = {"prompt": prompt, "completion": [target]}
        if with_tools:
            record["tools"] = json.dumps(shown(row) or None)
        records.append(record)
    return records
