"""`openrft train` / `openrft export` as commands, and multi-process training under torchrun."""

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from openrft.cli import train as train_cli
from openrft.cli.exits import Group

app = typer.Typer(cls=Group)  # the CLI's entry point: errors become exit codes there
app.command()(train_cli.train)
app.command()(train_cli.export)


def write_config(make_config: Any, path: Path, **overrides: Any) -> Path:
    config = make_config(**overrides)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    return path


def test_train_without_output_dir_picks_a_fresh_dir(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(make_config, tmp_path / "job.yaml", max_steps=1)
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(app, ["train", str(config)])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, ["train", str(config)])
    dirs = sorted((tmp_path / "runs").iterdir())
    assert len(dirs) == 2
    assert f"output: runs/{dirs[0].name}" in first.output + second.output
    assert (dirs[0] / "report.md").exists()


def test_export_merge_command(make_config: Any, tmp_path: Path) -> None:
    config = write_config(make_config, tmp_path / "job.yaml", max_steps=1)
    run = tmp_path / "run"
    assert CliRunner().invoke(app, ["train", str(config), "--output-dir", str(run)]).exit_code == 0
    [checkpoint] = (run / "checkpoints").glob("checkpoint-*")
    result = CliRunner().invoke(app, ["export", str(checkpoint), "--merge", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "config.json").exists()


def test_invalid_config_exits_2_with_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("training_file: x.jsonl\nnum_generation: 4\nlearning_rate: -1\n")
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 2
    assert "'num_generations'?" in result.output
    assert "learning_rate" in result.output


def test_two_cpu_ranks_really_train(make_config: Any, tmp_path: Path) -> None:
    config = write_config(
        make_config, tmp_path / "job.yaml", max_steps=3, batch_size=2, budget={"max_steps": 2}
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", str(config), "--output-dir", str(out), "--num-processes", "2"]
    )
    assert result.exit_code == 0, result.output
    ranks = [json.loads((out / "ranks" / f"rank-{i}.json").read_text()) for i in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["steps"] == 2 for r in ranks)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 2]  # only rank 0 writes metrics


def test_resume_a_paused_run_from_the_command_line(
    make_config: Any, tmp_path: Path, read_lines: Any
) -> None:
    config = write_config(make_config, tmp_path / "job.yaml", max_steps=3, budget={"max_steps": 2})
    run = tmp_path / "run"
    first = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(run)])
    assert first.exit_code == 0, first.output
    assert [x["step"] for x in read_lines(run)] == [0, 1, 2]
    second = CliRunner().invoke(app, ["train", str(config), "--resume", str(run)])
    assert second.exit_code == 0, second.output
    assert f"output: {run}" in second.output.replace("\n", "")
    assert [x["step"] for x in read_lines(run)] == [0, 1, 2, 3]
    assert "Stopped early" not in (run / "report.md").read_text()


@pytest.mark.parametrize("name", ["deepspeed_zero2.yaml", "fsdp.yaml"])
def test_gpu_accelerate_configs_are_used_by_the_launcher(make_config: Any, name: str) -> None:
    path = Path(__file__).parents[2] / "examples" / "accelerate" / name
    settings = yaml.safe_load(path.read_text())
    assert settings["distributed_type"] in {"DEEPSPEED", "FSDP"}
    config = make_config(accelerate_config=str(path), num_processes=8, batch_size=4)
    command = train_cli.launch_command(config, Path("c.json"), Path("out"))
    assert command[1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(path)]
    assert command[-4:] == ["-m", "openrft.training.grpo", "c.json", "out"]


def test_cpu_ranks_start_under_torchrun(make_config: Any) -> None:
    command = train_cli.launch_command(make_config(num_processes=2), Path("c.json"), Path("o"))
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
