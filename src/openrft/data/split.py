"""`split_validation`: the validation rows carved out of the training file when a job has none.

The carve-out is `share` of the rows (default 10%), at least 1 and at most `max_rows` (100), picked
at random with `seed` so a rerun of the same job holds out the same rows. The cap keeps a large
file from losing thousands of training rows to evaluation that only ever looks at
`eval_samples` of them. This module does not read files or shuffle the training order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from openrft.errors import DatasetError, Problem

VALIDATION_SHARE = 0.1
"""Default share of the training rows held out when no validation file is given."""
MAX_VALIDATION_ROWS = 100
"""Most rows the carve-out takes, however large the training file."""

T = TypeVar("T")


def validation_size(
    n_rows: int, share: float = VALIDATION_SHARE, max_rows: int = MAX_VALIDATION_ROWS
) -> int:
    """How many of `n_rows` rows the carve-out holds out: `round(share * n_rows)`, clamped to
    `[1, max_rows]` and always leaving at least one training row."""
    return max(1, min(round(share * n_rows), max_rows, n_rows - 1))


def split_validation(
    rows: Sequence[T],
    share: float = VALIDATION_SHARE,
    seed: int = 42,
    max_rows: int = MAX_VALIDATION_ROWS,
) -> tuple[list[T], list[T]]:
    """Split `rows` into `(train, valid)`; both keep the file's order.

    Raises `DatasetError` when there are fewer than 2 rows (nothing could be left to train on)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be between 0 and 1 (exclusive), got {share}")
    if len(rows) < 2:
        message = (
            f"{len(rows)} row(s) cannot be split into training and validation rows; "
            "add rows or give a validation_file"
        )
        raise DatasetError([Problem("training_file", message)])
    # a reproducible split, not security: the standard generator is right here
    rng = random.Random(seed)  # noqa: S311
    picked = set(rng.sample(range(len(rows)), validation_size(len(rows), share, max_rows)))
    train = [row for i, row in enumerate(rows) if i not in picked]
    valid = [row for i, row in enumerate(rows) if i in picked]
    return train, valid
