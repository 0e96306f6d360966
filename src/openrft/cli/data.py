"""`openrft data validate FILE`: every problem in a chat-format JSONL dataset, and statistics.

Exit 0 when the file is clean, 2 when it has problems (each printed as `file:line: message`).
Warnings (repeated rows, with their lines) are printed but do not fail the check.
`--grader` also checks each row has the item fields the grader's templates read; `--model` (a
Hugging Face directory or hub id) measures prompts in tokens and flags prompts longer than the
model's context. Loading the tokenizer is the only heavy part and happens only with `--model`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from openrft.cli.exits import EXIT_INVALID, Group
from openrft.data import DatasetReport, validate_dataset
from openrft.errors import MissingResourceError
from openrft.graders import Grader, load_grader_file

app = typer.Typer(cls=Group, help="Check chat-format JSONL datasets.", no_args_is_help=True)


@app.callback()
def data() -> None:
    """Check chat-format JSONL datasets."""  # keeps `validate` a subcommand while it is alone


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Chat-format JSONL dataset.")],
    grader: Annotated[
        Path | None, typer.Option(help="Grader spec (JSON/YAML): check the item fields it reads.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="HF model directory or hub id: count prompt tokens, check context."),
    ] = None,
    max_prompt_tokens: Annotated[
        int | None, typer.Option(help="Flag prompts longer than this (default: model context).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """List every problem (file:line: what to do) and print statistics; exit 2 on problems."""
    spec: Grader | None = load_grader_file(grader) if grader else None
    tokenizer, context = load_tokenizer(model) if model else (None, None)
    report = validate_dataset(file, spec, tokenizer, max_prompt_tokens or context)
    if as_json:
        typer.echo(json.dumps(report_json(report), indent=2))
    else:
        print_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_INVALID)


def load_tokenizer(model: str) -> tuple[Any, int | None]:
    """The model's tokenizer and its context length (`max_position_embeddings`, if declared)."""
    try:
        from transformers import AutoConfig, AutoTokenizer

        from openrft.training.models import resolve_model
    except ImportError as exc:
        raise MissingResourceError(
            f"--model needs the training extra ({exc.name} is missing): "
            "pip install 'openrft[train]'"
        ) from None
    path = resolve_model(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise MissingResourceError(f"cannot load the tokenizer of {model!r}: {exc}") from None
    context = getattr(config, "max_position_embeddings", None)
    return tokenizer, context if isinstance(context, int) else None


def report_json(report: DatasetReport) -> dict[str, Any]:
    """The report as plain JSON data."""
    return {
        "path": report.path,
        "ok": report.ok,
        "rows": report.rows,
        "lines": report.lines,
        "problems": [{"where": p.where, "message": p.message} for p in report.problems],
        "warnings": [{"where": w.where, "message": w.message} for w in report.warnings],
        "duplicate_rows": report.duplicate_rows,
        "prompt_length": asdict(report.prompt_length) if report.prompt_length else None,
        "item_fields": report.item_fields,
    }


def print_report(report: DatasetReport) -> None:
    """Problems first, then warnings (one per line, never wrapped), then a statistics table.
    File contents and paths are printed as plain text, never as Rich markup."""
    out = Console()
    for problem in report.problems:
        out.print(Text.assemble(("✗", "red"), f" {problem}"), highlight=False, soft_wrap=True)
    for warning in report.warnings:
        shown = Text.assemble(("warning:", "yellow"), f" {warning}")
        out.print(shown, highlight=False, soft_wrap=True)
    table = Table(title=Text(report.path), show_header=False)
    table.add_column("statistic")
    table.add_column("value")
    table.add_row("valid rows", f"{report.rows} of {report.lines}")
    if report.duplicate_rows:
        table.add_row("rows repeating an earlier row", str(report.duplicate_rows))
    if report.prompt_length:
        stats = report.prompt_length
        table.add_row(
            f"prompt {stats.unit} (min / median / max)",
            f"{stats.min} / {stats.median:g} / {stats.max}",
        )
    for name, count in report.item_fields.items():
        table.add_row(Text(f"rows with item.{name}"), str(count))
    out.print(table)
    if report.ok:
        out.print("[green]No problems found.[/green]")
    else:
        out.print(f"[red]{len(report.problems)} problem(s).[/red] Fix them and run again.")
