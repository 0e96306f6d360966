"""`validate_dataset`: every problem in a chat-format JSONL file, with statistics; `load_dataset`.

On top of the per-line checks of `rows.py` this checks across rows and against the job: the item
fields the grader's templates need (`{{ item.reference_answer }}` in any grader of the tree,
judge messages included), and prompts longer than the model's context (when a tokenizer is
given). Every problem is reported with its `file:line`, none stops the scan.

Repeated rows are not problems: repeating a prompt is a legitimate way to weight it. They are
counted (`DatasetReport.duplicates`) and summed up in one warning (`duplicate_warning`) that
`openrft data validate`, training start (`load_dataset` logs it) and a job's `validating_files`
step (a `warn` event) show.

It does not grade, sample or load a model: a tokenizer, when wanted, is passed in (the CLI loads
one with transformers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from openrft.data.rows import LastRole, Row, parse_line, prompt_text, read_lines
from openrft.errors import DatasetError, Problem, TemplateError
from openrft.graders.spec import Grader, MultiGrader
from openrft.graders.template import lookup, variables

log = logging.getLogger(__name__)

DUPLICATES_KEPT = 1000
"""Repeated rows whose lines a report keeps (the rest are counted in `duplicate_rows`)."""
DUPLICATES_SHOWN = 5
"""Repeated rows the warning names by line."""


@dataclass(frozen=True)
class LengthStats:
    """Prompt lengths over the valid rows."""

    unit: Literal["tokens", "characters"]
    """Tokens (chat template applied) when a tokenizer was given, else characters."""
    min: int
    median: float
    max: int


@dataclass
class DatasetReport:
    """What `validate_dataset` found: every problem, and statistics over the valid rows."""

    path: str
    """The file checked."""
    problems: list[Problem] = field(default_factory=list)
    """Every problem, in line order; `where` is `file:line`."""
    problems_omitted: int = 0
    """Problems found beyond `max_problems` (counted, not kept)."""
    rows: int = 0
    """Rows that passed every per-line check."""
    lines: int = 0
    """Non-blank lines read."""
    prompt_length: LengthStats | None = None
    """Prompt length min/median/max; `None` when no row is valid."""
    item_fields: dict[str, int] = field(default_factory=dict)
    """How many rows have each top-level item field (everything besides `messages`/`tools`)."""
    duplicate_rows: int = 0
    """Rows that repeat an earlier row (same messages, tools and item fields)."""
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    """`(line, line first seen at)` of the first `DUPLICATES_KEPT` repeated rows."""

    @property
    def ok(self) -> bool:
        """True when the file has no problem at all (warnings do not count)."""
        return not self.problems

    @property
    def warnings(self) -> list[Problem]:
        """What is allowed but worth a look (today: repeated rows), each at the file."""
        warning = duplicate_warning(self)
        return [Problem(self.path, warning)] if warning else []


def duplicate_warning(report: DatasetReport) -> str | None:
    """One sentence on the repeated rows, or None: `2 of 40 rows repeat an earlier row (line 4
    repeats line 1, line 9 repeats line 1): …`."""
    n = report.duplicate_rows
    if not n:
        return None
    shown = report.duplicates[:DUPLICATES_SHOWN]
    by_first: dict[int, list[int]] = {}
    for line, first in shown:
        by_first.setdefault(first, []).append(line)
    parts = [
        f"line {ls[0]} repeats line {first}"
        if len(ls) == 1
        else f"lines {', '.join(map(str, ls))} repeat line {first}"
        for first, ls in by_first.items()
    ]
    more = n - len(shown)
    lines = "; ".join(parts) + (f"; and {more} more" if more else "")
    verb = "repeats" if n == 1 else "repeat"
    return (
        f"{n} of {report.rows} rows {verb} an earlier row ({lines}): repeated prompts weigh "
        "more in training and may land in both the training and the validation split; remove "
        "them if unintended"
    )


@dataclass(frozen=True)
class FieldNeed:
    """An `item` path some grader template refers to."""

    grader: str
    """Name of the grader whose template it is."""
    where: str
    """The spec key holding the template, e.g. `reference` or `input[1].content`."""
    path: tuple[str | int, ...]
    """The path under `item`."""

    @property
    def shown(self) -> str:
        return "item" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)


def grader_needs(grader: Grader) -> list[FieldNeed]:
    """Every `{{ item.… }}` reference in the grader tree (sub-graders and judge messages too).

    Python graders' source is code, not a template, so what it reads cannot be known here."""
    if isinstance(grader, MultiGrader):
        return [need for sub in grader.graders.values() for need in grader_needs(sub)]
    spec = grader.model_dump(mode="python", exclude={"source"})
    needs = []
    for where, text in _strings(spec, ""):
        for namespace, path in variables(text):
            if namespace == "item":
                needs.append(FieldNeed(grader.name, where, path))
    return needs


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, sub in value.items():
            yield from _strings(sub, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from _strings(sub, f"{where}[{index}]")


def missing_fields(row: Row, needs: Sequence[FieldNeed]) -> list[str]:
    """One message per item path the grader needs and the row lacks."""
    seen: set[tuple[str | int, ...]] = set()
    messages = []
    for need in needs:
        if need.path in seen:
            continue
        try:
            lookup(row.item, "item", need.path)
        except TemplateError:
            seen.add(need.path)
            messages.append(
                f"grader {need.grader!r} reads `{need.shown}` (in its `{need.where}`) but this "
                f"row has no such field; add it to the row or fix the template"
            )
    return messages


def count_tokens(tokenizer: Any, row: Row) -> int:
    """Prompt tokens as the model sees them: the chat template with the generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            row.messages, tools=row.tools, add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, Mapping):  # transformers 5 returns a BatchEncoding by default
            ids = ids["input_ids"]
        return len(ids)
    return len(tokenizer.encode(prompt_text(row)))


def validate_dataset(
    path: str | Path,
    grader: Grader | None = None,
    tokenizer: Any = None,
    max_prompt_tokens: int | None = None,
    max_problems: int | None = None,
    last_role: LastRole = "user",
) -> DatasetReport:
    """Check a chat-format JSONL file; report every problem with its line, and statistics.

    `grader`: also check each row has the item fields its templates read. `tokenizer` (a
    Hugging Face tokenizer): measure prompts in tokens, and flag prompts over
    `max_prompt_tokens` (default: the tokenizer's `model_max_length` when it is a real limit).
    `max_problems`: keep at most this many problems (the rest are counted in
    `problems_omitted`). `last_role`: whose turn ends each row, `user` (prompts) or
    `assistant` (supervised rows; `None`: either). The file is streamed: rows are checked and
    dropped, not kept.
    """
    path = Path(path)
    _, report = _scan(path, grader, tokenizer, max_prompt_tokens, max_problems, False, last_role)
    return report


def _scan(
    path: Path,
    grader: Grader | None,
    tokenizer: Any,
    limit: int | None,
    max_problems: int | None = None,
    keep: bool = True,
    last_role: LastRole = "user",
) -> tuple[list[Row], DatasetReport]:
    report = DatasetReport(str(path))
    needs = grader_needs(grader) if grader is not None else []
    # a limit counts tokens, so it only applies with a tokenizer
    limit = (limit or _tokenizer_limit(tokenizer)) if tokenizer is not None else None
    first_seen: dict[bytes, int] = {}
    rows: list[Row] = []
    lengths: list[int] = []
    fields: Counter[str] = Counter()
    try:
        for line in read_lines(path):
            report.lines += 1
            problems = [line.problem] if line.problem else []
            row = None
            if line.text is not None:
                row, problems = parse_line(line.text, line.number, last_role)
            if row is not None:
                problems += missing_fields(row, needs)
                _duplicate(row, first_seen, report)
                lengths.append(_length(row, tokenizer))
                problems += _too_long(lengths[-1], limit)
                fields.update(row.item.keys())
                report.rows += 1
                if keep:
                    rows.append(row)
            _add(report, [Problem(f"{path}:{line.number}", p) for p in problems], max_problems)
    except OSError as exc:
        report.problems.append(Problem(str(path), f"cannot read the file: {exc.strerror or exc}"))
        return [], report
    report.item_fields = dict(fields.most_common())
    _statistics(report, lengths, "tokens" if tokenizer is not None else "characters")
    if not report.lines:
        empty = "the file has no rows; add one JSON object per line"
        report.problems.append(Problem(str(path), empty))
    return rows, report


def _add(report: DatasetReport, problems: list[Problem], limit: int | None) -> None:
    room = len(problems) if limit is None else max(0, limit - len(report.problems))
    report.problems += problems[:room]
    report.problems_omitted += len(problems) - min(room, len(problems))


def _duplicate(row: Row, first_seen: dict[bytes, int], report: DatasetReport) -> None:
    """Count `row` in `report` when it repeats an earlier row."""
    key = json.dumps([row.messages, row.tools, row.item], sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(key.encode()).digest()[:16]  # 16 bytes a row, not a whole copy
    earlier = first_seen.setdefault(digest, row.line)
    if earlier == row.line:
        return
    report.duplicate_rows += 1
    if len(report.duplicates) < DUPLICATES_KEPT:
        report.duplicates.append((row.line, earlier))


def _length(row: Row, tokenizer: Any) -> int:
    return len(prompt_text(row)) if tokenizer is None else count_tokens(tokenizer, row)


def _too_long(n: int, limit: int | None) -> list[str]:
    if limit is None or n <= limit:
        return []
    return [
        f"the prompt is {n} tokens, over the model's limit of {limit}; shorten it or drop "
        "the row (the completion needs room too)"
    ]


def _tokenizer_limit(tokenizer: Any) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    # transformers uses a huge sentinel (~1e30) when the model declares no limit
    return limit if isinstance(limit, int) and 0 < limit < 10_000_000 else None


def _statistics(
    report: DatasetReport, lengths: list[int], unit: Literal["tokens", "characters"]
) -> None:
    if lengths:
        report.prompt_length = LengthStats(
            unit, min(lengths), statistics.median(lengths), max(lengths)
        )


def load_dataset(
    path: str | Path, grader: Grader | None = None, last_role: LastRole = "user"
) -> list[Row]:
    """Read a chat-format JSONL file into rows; raise `DatasetError` listing every problem
    (the same checks as `validate_dataset`, without a tokenizer). Warnings (repeated rows) are
    logged on this module's logger, which prints to stderr unless logging is configured."""
    rows, report = _scan(Path(path), grader, None, None, last_role=last_role)
    if report.problems:
        raise DatasetError(report.problems, f"{path}: {len(report.problems)} problem(s)")
    for warning in report.warnings:
        log.warning("warning: %s", warning)  # `file: message`
    return rows
