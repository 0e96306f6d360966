"""`openrft jobs create|list|get|events|cancel|pause|resume|promote`: a client of the service API.

Talks HTTP (httpx) to `--base-url` (`$OPENRFT_BASE_URL`, default http://127.0.0.1:8000/v1) with
`--api-key` (`$OPENRFT_API_KEY`). `--follow` polls the job and shows a progress bar with the
latest train/valid reward until the job ends. `create --preflight` makes a job that runs only the
pre-flight (the `openrft` extension's `preflight.only`) and succeeds with its report;
`--force` sets `preflight.force`. Register with
`app.add_typer(jobs.app, name="jobs")`. A refused or unanswered call raises `ApiCallError`
(`client.py`), which prints the server's message and exits 5 (`EXIT_API`); a followed job that
fails exits 1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from openrft.cli.client import Client
from openrft.cli.exits import EXIT_FAILED, Group
from openrft.graders import read_spec_file

app = typer.Typer(cls=Group, help="Fine-tuning jobs on an OpenRFT server.", no_args_is_help=True)
out = Console()
FINAL = ("succeeded", "failed", "cancelled")

BaseUrl = Annotated[str, typer.Option(envvar="OPENRFT_BASE_URL", help="API root, ending in /v1.")]
ApiKey = Annotated[str, typer.Option(envvar="OPENRFT_API_KEY", help="API key (Bearer).")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Stream progress until the end.")]
DEFAULT_URL = "http://127.0.0.1:8000/v1"


def _file_id(client: Client, value: str | None, purpose: str) -> str | None:
    """A local path is uploaded first; anything else is taken as a file id."""
    if value is None:
        return None
    path = Path(value)
    return client.upload(path, purpose) if path.is_file() else value


def _metadata(pairs: list[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--metadata")
        result[key] = value
    return result


@app.command()
def create(
    model: Annotated[str, typer.Option(help="Base model: HF directory or hub id.")],
    training_file: Annotated[str, typer.Option(help="A JSONL path (uploaded) or a file id.")],
    grader: Annotated[Path | None, typer.Option(help="Grader spec (JSON/YAML).")] = None,
    validation_file: Annotated[str | None, typer.Option(help="JSONL path or file id.")] = None,
    method: Annotated[str, typer.Option(help="reinforcement or supervised.")] = "reinforcement",
    suffix: Annotated[str | None, typer.Option(help="Name suffix of the fine-tuned model.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    overrides: Annotated[
        Path | None, typer.Option("--config", help="Native TrainingConfig overrides (JSON/YAML).")
    ] = None,
    preflight: Annotated[
        bool,
        typer.Option(
            "--preflight",
            help="Run only the pre-flight: the job samples and grades a few prompts, reports "
            "in a `preflight` event and its result file, and succeeds without training.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train even when the pre-flight fails.")
    ] = False,
    follow: Follow = False,
    base_url: BaseUrl = DEFAULT_URL,
    api_key: ApiKey = "",
) -> None:
    """Create a fine-tuning job (uploading local files first); print the job."""
    extra = read_spec_file(overrides) if overrides is not None else {}
    extra = _with_preflight(extra, preflight, force)
    with Client(base_url, api_key) as client:
        _create(
            client,
            model,
            training_file,
            grader,
            validation_file,
            method,
            suffix,
            seed,
            metadata,
            extra or None,
            follow,
        )


def _with_preflight(extra: dict[str, Any], only: bool, force: bool) -> dict[str, Any]:
    """`openrft` overrides with `--preflight` (`preflight.only`) and `--force`
    (`preflight.force`) merged into their `preflight` section."""
    if not only and not force:
        return extra
    section = dict(extra.get("preflight") or {})
    section |= {"only": True} if only else {}
    section |= {"force": True} if force else {}
    return {**extra, "preflight": section}


def _create(
    client: Client,
    model: str,
    training_file: str,
    grader: Path | None,
    validation_file: str | None,
    method: str,
    suffix: str | None,
    seed: int | None,
    metadata: list[str] | None,
    overrides: dict[str, Any] | None,
    follow: bool,
) -> None:
    purpose = "fine-tune"
    body: dict[str, Any] = {
        "model": model,
        "training_file": _file_id(client, training_file, purpose),
        "validation_file": _file_id(client, validation_file, purpose),
        "suffix": suffix,
        "seed": seed,
        "metadata": _metadata(metadata or []) or None,
    }
    section: dict[str, Any] = {}
    if grader is not None:
        section["grader"] = read_spec_file(grader)
    body["method"] = {"type": method, method: section}
    if overrides:
        body["openrft"] = overrides
    job = client.call("POST", "/fine_tuning/jobs", json={k: v for k, v in body.items() if v})
    _print_job(job)
    if follow:
        _follow(client, job["id"])


@app.command("list")
def list_jobs(
    limit: Annotated[int, typer.Option(help="Jobs to show.")] = 20,
    metadata: Annotated[list[str] | None, typer.Option(help="Filter KEY=VALUE.")] = None,
    base_url: BaseUrl = DEFAULT_URL,
    api_key: ApiKey = "",
) -> None:
    """List jobs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    params |= {f"metadata[{k}]": v for k, v in _metadata(metadata or []).items()}
    with Client(base_url, api_key) as client:
        page = client.call("GET", "/fine_tuning/jobs", params=params)
    for job in page["data"]:
        model = job.get("fine_tuned_model") or job["model"]
        out.print(f"{job['id']}  {job['status']:<16} {model}", highlight=False)


@app.command()
def get(job_id: str, base_url: BaseUrl = DEFAULT_URL, api_key: ApiKey = "") -> None:
    """Print one job as JSON."""
    with Client(base_url, api_key) as client:
        _print_job(client.call("GET", f"/fine_tuning/jobs/{job_id}"))


@app.command()
def events(
    job_id: str,
    limit: Annotated[int, typer.Option(help="Most recent events to show.")] = 20,
    follow: Follow = False,
    base_url: BaseUrl = DEFAULT_URL,
    api_key: ApiKey = "",
) -> None:
    """Print a job's events, oldest first (`--follow` keeps streaming)."""
    with Client(base_url, api_key) as client:
        if follow:
            _follow(client, job_id)
            return
        page = client.call("GET", f"/fine_tuning/jobs/{job_id}/events", params={"limit": limit})
    for event in reversed(page["data"]):
        _print_event(event)


def _control(action: str) -> Any:
    def command(job_id: str, base_url: BaseUrl = DEFAULT_URL, api_key: ApiKey = "") -> None:
        with Client(base_url, api_key) as client:
            job = client.call("POST", f"/fine_tuning/jobs/{job_id}/{action}")
        out.print(f"{job['id']}  {job['status']}", highlight=False)

    command.__doc__ = f"{action.capitalize()} a job."
    return command


for _action in ("cancel", "pause", "resume"):
    app.command(_action)(_control(_action))


@app.command()
def promote(
    job_id: str,
    checkpoint_id: Annotated[str, typer.Argument(help="A checkpoint id (ftckpt-…).")],
    base_url: BaseUrl = DEFAULT_URL,
    api_key: ApiKey = "",
) -> None:
    """Make a succeeded job's fine-tuned model serve one of its checkpoints."""
    path = f"/fine_tuning/jobs/{job_id}/checkpoints/{checkpoint_id}/promote"
    with Client(base_url, api_key) as client:
        job = client.call("POST", path)
    out.print(f"{job['fine_tuned_model']} → {job['promoted_checkpoint']}", highlight=False)


def _print_job(job: dict[str, Any]) -> None:
    out.print_json(json.dumps(job))


def _print_event(event: dict[str, Any]) -> None:
    color = {"warn": "yellow", "error": "red"}.get(event["level"], "dim")
    stamp = time.strftime("%H:%M:%S", time.localtime(event["created_at"]))
    # a message is the server's text, never Rich markup: `[exact: …]` headers must survive
    out.print(Text.assemble((stamp, color), f" {event['message']}"), highlight=False)


def _new_events(client: Client, job_id: str, seen: set[str]) -> list[dict[str, Any]]:
    """Events not yet shown, oldest first (pages back until a seen one)."""
    fresh: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = client.call("GET", f"/fine_tuning/jobs/{job_id}/events", params=params)
        new = [e for e in page["data"] if e["id"] not in seen]
        fresh.extend(new)
        if len(new) < len(page["data"]) or not page.get("has_more"):
            break
        params["after"] = page["data"][-1]["id"]
    seen.update(e["id"] for e in fresh)
    return list(reversed(fresh))


def _follow(client: Client, job_id: str) -> None:
    seen: set[str] = set()
    columns = (
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[reward]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out) as bar:
        task = bar.add_task("job", total=None, status="…", reward="")
        while True:
            job = client.call("GET", f"/fine_tuning/jobs/{job_id}")
            for event in _new_events(client, job_id, seen):
                data = event.get("data") or {}
                if event.get("type") == "metrics" and isinstance(data, dict):
                    scores = data.get("scores") or {}
                    reward = _reward_text(scores)
                    bar.update(task, completed=data.get("step"), total=data.get("total_steps"))
                    bar.update(task, reward=reward)
                else:
                    bar.console.print(Text(f"  {event['message']}"), highlight=False)
            bar.update(task, status=job["status"])
            if job["status"] in FINAL or job["status"] == "paused":
                break
            time.sleep(1.0)
    out.print(
        f"{job_id}: {job['status']}"
        + (f" → {job['fine_tuned_model']}" if job.get("fine_tuned_model") else ""),
        markup=False,
    )
    if job["status"] == "failed":
        raise typer.Exit(EXIT_FAILED)


def _reward_text(scores: dict[str, Any]) -> str:
    parts = []
    for label, key in (("train", "train_reward_mean"), ("valid", "valid_reward_mean")):
        if isinstance(scores.get(key), int | float):
            parts.append(f"{label} reward {scores[key]:.3f}")
    return "  ".join(parts)
