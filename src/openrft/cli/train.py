"""`openrft train CONFIG` and `openrft export CHECKPOINT --merge OUT`: thin shells over
`training.grpo.run` and `training.export.merge`. `export` also takes a service model id
(`ft:…`, `ft:…:ckpt-step-N`) with the service's `--data-dir`, and finds its checkpoint there.

`--num-processes N` (N > 1) starts N ranks with `torchrun --standalone` (gloo on CPU), each
running `python -m openrft.training.grpo`; `accelerate launch --cpu --num_processes N` is not
used because it silently starts a single process on CPU. A config's `accelerate_config` (DeepSpeed
or FSDP on GPUs) switches the launcher to `accelerate launch --config_file`.

Every reinforcement run starts with the pre-flight (`training/preflight.py`); `--preflight` runs
only that and prints its report, `--force` trains even when it fails.

Exit codes (`exits.py`): 0 done (also when a budget paused the run), 1 a rank failed or the
pre-flight did, 2 invalid input, 3 a resource missing here, 4 too many samples failed to grade,
75 paused because `RUN_DIR/PAUSE` asked it to (the service's worker does; `--resume` continues).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from openrft.cli.exits import EXIT_FAILED
from openrft.cli.service_models import DatabaseUrlOption, DataDirOption, service_checkpoint
from openrft.training.config import TrainingConfig
from openrft.training.dialects import load_file
from openrft.training.rundir import EXIT_PAUSED, PREFLIGHT, paused_info

out = Console(markup=False)  # paths and messages print as they are, never as Rich markup


def train(
    config_path: Annotated[Path, typer.Argument(help="Job config: YAML or JSON, any dialect.")],
    output_dir: Annotated[
        Path | None, typer.Option(help="Where metrics, checkpoints and the report go.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="A checkpoint, or a run dir to resume from its latest (and write to)."),
    ] = None,
    num_processes: Annotated[
        int | None, typer.Option(help="Data-parallel ranks (default: the config's).")
    ] = None,
    dialect: Annotated[
        str | None,
        typer.Option(
            help="The config's form (native, openai, seekrflow, service); default: "
            "recognised from its keys."
        ),
    ] = None,
    preflight: Annotated[
        bool,
        typer.Option(
            "--preflight",
            help="Run only the pre-flight (sample and grade a few prompts, report whether "
            "the grader gives GRPO anything to learn from); exit 0 if it passes, 1 if not.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train even when the pre-flight fails.")
    ] = False,
) -> None:
    """Fine-tune a model with GRPO (or SFT) as CONFIG says."""
    started = time.perf_counter()
    config = _preflight_flags(load_file(config_path, dialect), preflight, force)
    if num_processes is not None:
        config = config.model_copy(update={"num_processes": num_processes})
    target = output_dir or _run_dir_of(resume) or _fresh_dir(config, config_path)
    out.print(f"output: {target}")
    if config.num_processes > 1 and not config.preflight.only:
        _launch(config, target, resume)
    else:
        _run_here(config, target, resume)
    if config.preflight.only:
        out.print(f"pre-flight passed; report: {target / PREFLIGHT}")
        return
    _summary(target)
    out.print(f"done in {time.perf_counter() - started:.0f} s")
    paused = paused_info(target)
    if paused is not None and paused["reason"] == "request":
        out.print("paused on request; `--resume` continues from the checkpoint")
        raise typer.Exit(EXIT_PAUSED)


def export(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="A checkpoint dir (LoRA adapter or full), or a service model id: a job's "
            "`ft:…` model or a checkpoint model `ft:…:ckpt-step-N`."
        ),
    ],
    merge: Annotated[Path, typer.Option(help="Write a merged, transformers-loadable model here.")],
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Export a checkpoint (or a service `ft:` model) as a plain transformers model directory."""
    from openrft.training.export import merge as merge_checkpoint

    source = Path(checkpoint)
    if checkpoint.startswith("ft:"):
        source = service_checkpoint(checkpoint, data_dir, database_url)
    merge_checkpoint(source, merge)
    out.print(f"merged model: {merge}")


def _preflight_flags(config: TrainingConfig, only: bool, force: bool) -> TrainingConfig:
    """The config with `--preflight` (`preflight.only`) and `--force` (`preflight.force`)."""
    if not only and not force:
        return config
    changes: dict[str, bool] = {"force": True} if force else {}
    if only:
        changes |= {"only": True, "enabled": True}
    settings = config.preflight.model_copy(update=changes)
    return config.model_copy(update={"preflight": settings})


def _run_here(config: TrainingConfig, target: Path, resume: Path | None) -> None:
    """Train in this process; a failed pre-flight (its summary already printed) exits 1."""
    from openrft.training.grpo import run
    from openrft.training.preflight import PreflightError

    try:
        run(config, target, resume=resume, progress=True)
    except PreflightError:
        out.print(f"pre-flight failed; report: {target / PREFLIGHT}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def _run_dir_of(resume: Path | None) -> Path | None:
    """The run a `--resume` path belongs to: the dir itself, or a checkpoint's run dir."""
    if resume is None:
        return None
    if resume.parent.name == "checkpoints":
        return resume.parent.parent
    return resume


def _fresh_dir(config: TrainingConfig, config_path: Path) -> Path:
    """`config.output_dir`, or a new `runs/<config name>-<time>` directory."""
    if config.output_dir:
        return Path(config.output_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{config_path.stem}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def launch_command(
    config: TrainingConfig, config_json: Path, target: Path, resume: Path | None = None
) -> list[str]:
    """The command that starts `config.num_processes` ranks of `openrft.training.grpo`."""
    module = ["-m", "openrft.training.grpo", str(config_json), str(target)]
    module += [str(resume)] if resume is not None else []
    if config.accelerate_config:
        launcher = [sys.executable, "-m", "accelerate.commands.launch"]
        return [*launcher, "--config_file", config.accelerate_config, *module]
    n = str(config.num_processes)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*torchrun, "--nproc_per_node", n, *module]


def _launch(config: TrainingConfig, target: Path, resume: Path | None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    config_json = target / "config.json"
    files = {"training_file": str(Path(config.training_file).resolve())}
    if config.validation_file:
        files["validation_file"] = str(Path(config.validation_file).resolve())
    config_json.write_text(config.model_copy(update=files).model_dump_json(), encoding="utf-8")
    command = launch_command(config, config_json, target, resume)
    completed = subprocess.run(command, check=False)  # noqa: S603  # our own interpreter
    if completed.returncode:
        raise typer.Exit(EXIT_FAILED)


def _summary(target: Path) -> None:
    from openrft.training.report import outcome
    from openrft.training.rundir import read_metrics

    lines = read_metrics(target)
    valid = [
        (line["step"], reward)
        for line in lines
        if (reward := line["scores"].get("valid_reward_mean")) is not None
    ]
    if len(valid) >= 2:
        (s0, v0), (s1, v1) = valid[0], valid[-1]
        out.print(f"valid reward: step {s0} {v0:.3f} → step {s1} {v1:.3f} ({v1 - v0:+.3f})")
    said = outcome(lines, target)  # e.g. train up while valid down: likely reward hacking
    if said:
        out.print(said)
    if (target / "report.md").exists():
        out.print(f"report: {target / 'report.md'}")
    # keep a machine-readable pointer for scripts (the Makefile's demo target reads it)
    (target / "summary.json").write_text(json.dumps({"valid": valid}), encoding="utf-8")
