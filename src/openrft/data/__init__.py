"""Datasets: chat-format JSONL rows, their validation (every problem, with line numbers), loading,
and the validation carve-out.

A row is `{"messages": [...ending with the user's turn], "tools": [...]?, ...item fields}`
(a supervised row's messages end with the assistant's answer: `last_role="assistant"`);
`load_dataset` returns `Row(messages, tools, item, line)` objects and raises `DatasetError` with
every problem; `validate_dataset` returns a `DatasetReport` with the problems and statistics
instead of raising. Nothing here imports torch or transformers.
"""

from __future__ import annotations

from openrft.data.rows import Row, prompt_text
from openrft.data.split import MAX_VALIDATION_ROWS, VALIDATION_SHARE, split_validation
from openrft.data.validate import (
    DatasetReport,
    LengthStats,
    count_tokens,
    grader_needs,
    load_dataset,
    validate_dataset,
)

__all__ = [
    "MAX_VALIDATION_ROWS",
    "VALIDATION_SHARE",
    "DatasetReport",
    "LengthStats",
    "Row",
    "count_tokens",
    "grader_needs",
    "load_dataset",
    "prompt_text",
    "split_validation",
    "validate_dataset",
]
