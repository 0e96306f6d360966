"""`openrft graders validate|run|audit`: the grader engine from the shell.

SPEC is a JSON or YAML file in either dialect (OpenAI grader, or SeekrFlow `reward_components`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from openrft.cli.exits import EXIT_FAILED, Group
from openrft.errors import DatasetError, Problem
from openrft.graders import GradeContext, Sample, grade_batch, load_grader_file
from openrft.graders.audit import AuditReport, AuditRow, audit
from openrft.graders.python_grader import describe_failure

app = typer.Typer(cls=Group, help="Validate, run and audit graders.", no_args_is_help=True)

SpecArg = Annotated[Path, typer.Argument(help="Grader spec, JSON or YAML, either dialect.")]


def _arg_text(value: str) -> str:
    """`@path` reads the file; anything else is the text itself."""
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError([Problem(value[1:], f"cannot read: {exc}")]) from None
    return value


def _arg_json(value: str, what: str) -> Any:
    text = _arg_text(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = value[1:] if value.startswith("@") else f"--{what}"
        raise DatasetError([Problem(f"{where}:{exc.lineno}", f"invalid JSON: {exc.msg}")]) from None


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a grader spec; print the normalized JSON (exit 0) or every problem (exit 2)."""
    grader = load_grader_file(spec)
    typer.echo(json.dumps(grader.model_dump(mode="json", exclude_none=True), indent=2))


@app.command()
def run(
    spec: SpecArg,
    sample: Annotated[
        list[str],
        typer.Option(
            help="Model output text, or @file. Repeat it to grade one prompt's group of "
            "completions together (group graders compare them); a JSON list is printed."
        ),
    ],
    item: Annotated[str, typer.Option(help="Item JSON object, or @file.json.")] = "{}",
    tools: Annotated[str | None, typer.Option(help="output_tools JSON list, or @file.")] = None,
) -> None:
    """Grade one sample (or one group); print OpenAI's grader run response JSON (and, when
    grading failed, the grader, its error flags and details on stderr)."""
    grader = load_grader_file(spec)
    item_value = _arg_json(item, "item")
    tool_calls = _arg_json(tools, "tools") if tools else None
    if not isinstance(item_value, dict):
        raise DatasetError([Problem("--item", "must be a JSON object, e.g. '{\"a\": 1}'")])
    sampled = [Sample.from_text(_arg_text(text), tool_calls) for text in sample]
    context = GradeContext.from_environment()
    results = grade_batch(grader, sampled, [item_value] * len(sampled), context, [len(sampled)])
    if len(results) == 1:
        typer.echo(results[0].model_dump_json(indent=2))
    else:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    for result in results:
        if result.errors.any():  # the JSON has it too; this is for a reader, as text (not markup)
            err = Console(stderr=True)
            failure = Text.assemble(("error: ", "red"), describe_failure(result))
            err.print(failure, highlight=False, soft_wrap=True)


@app.command("audit")
def audit_command(
    spec: SpecArg,
    data: Annotated[Path, typer.Option(help="Chat-format JSONL dataset to probe against.")],
    threshold: Annotated[
        float, typer.Option(help="Mean reward at which a probe is flagged.")
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score adversarial completions (empty, prompt echo, all answers, …) on every row.

    Exit 1 when a probe earns a high reward, so CI can gate on it."""
    grader = load_grader_file(spec)
    report = audit(grader, read_audit_rows(data), threshold, GradeContext.from_environment())
    if as_json:
        typer.echo(json.dumps(_report_json(report), indent=2))
    else:
        _print_report(report)
    if report.flagged:
        raise typer.Exit(EXIT_FAILED)


def read_audit_rows(path: Path) -> list[AuditRow]:
    from openrft.data import load_dataset

    return [AuditRow(messages=row.messages, item=dict(row.item)) for row in load_dataset(path)]


def _report_json(report: AuditReport) -> dict[str, Any]:
    return {
        "rows": report.rows,
        "threshold": report.threshold,
        "probes": [vars(p) for p in report.probes],
    }


def _print_report(report: AuditReport) -> None:
    out = Console()
    table = Table(title=f"Reward-hacking audit: {report.rows} rows, flag at ≥ {report.threshold}")
    for column in ("probe", "mean reward", "max", "pass rate", ""):
        table.add_column(column)
    for p in report.probes:
        mark = "[red]HIGH[/red]" if p.flagged else "[green]ok[/green]"
        table.add_row(  # a probe's description quotes dataset text: never markup
            Text(p.description),
            f"{p.mean_reward:.3f}",
            f"{p.max_reward:.3f}",
            f"{p.pass_rate:.0%}",
            mark,
        )
    out.print(table)
    for p in report.flagged:
        for warning in p.warnings:
            out.print(Text.assemble(("warning:", "yellow"), f" {warning}"), highlight=False)
    if not report.flagged:
        out.print("No probe earned a high reward.")
    sys.stdout.flush()
