"""`infrastructure_config` mapped onto a worker's machine (`service/flow/placement.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openrft.errors import ConfigError
from openrft.service.flow.placement import machine, place
from openrft.service.flow.schemas import Infrastructure
from openrft.service.settings import Settings
from openrft.training.config import TrainingConfig


def config(**fields: Any) -> TrainingConfig:
    grader = {"type": "math_accuracy", "name": "math"}
    values = {"training_file": "t.jsonl", "batch_size": 4, "num_generations": 2, "grader": grader}
    return TrainingConfig.model_validate(values | fields)


def asked(accel: str = "H100", n: int = 2, nodes: int = 1) -> Infrastructure:
    return Infrastructure(accel_type=accel, n_accel=n, n_node=nodes)  # type: ignore[arg-type]


def test_on_a_cpu_server_a_job_runs_as_one_process_and_says_so(tmp_path: Path) -> None:
    got = place(asked(n=2), config(), Settings(data_dir=tmp_path, accelerators=0))
    assert (got.processes, got.device, got.accelerators, got.short) == (1, "CPU", 0, True)
    assert got.message == (
        "Placement: asked for 2 × H100 on 1 node(s); running on 1 process on the CPU (2 "
        "accelerators asked for; a worker's machine has none)"
    )
    assert got.record() == {"processes": 1, "device": "CPU", "accelerators": 0, "nodes": 1}


def test_one_rank_per_accelerator_asked_for_up_to_what_the_machine_has(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, accelerators=4, accelerator_type="H100")
    got = place(asked(n=2), config(), settings)
    assert (got.processes, got.device, got.accelerators, got.short) == (2, "H100", 2, False)
    assert "running on 2 process(es), one per H100 (2 of 4 on one machine)" in got.message
    more = place(asked(n=8, nodes=2), config(), settings)
    assert (more.processes, more.short) == (4, True)
    assert "(2 nodes asked for; a job runs on one machine; " in more.message
    assert "8 accelerators asked for; a worker's machine has 4)" in more.message


def test_ranks_divide_the_batch_evenly(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, accelerators=8, accelerator_type="A100")
    # 3 prompts x 2 completions = 6 rows a step: 4 ranks cannot split them, 3 can
    got = place(asked("A100", 4), config(batch_size=3), settings)
    assert (got.processes, got.short) == (3, True)


def test_another_kind_runs_on_what_there_is_unless_strict(tmp_path: Path) -> None:
    loose = Settings(data_dir=tmp_path, accelerators=2, accelerator_type="A100")
    got = place(asked("H100", 2), config(), loose)
    assert (got.processes, got.device, got.short) == (2, "A100", True)
    assert got.message.endswith("(H100 asked for; the workers have A100)")
    strict = loose.model_copy(update={"strict_placement": True})
    with pytest.raises(ConfigError) as refused:
        place(asked("H100", 4, nodes=3), config(), strict)
    wheres = [p.where for p in refused.value.problems]
    assert wheres == [
        "$.infrastructure_config.n_node",
        "$.infrastructure_config.n_accel",
        "$.infrastructure_config.accel_type",
    ]
    assert place(asked("A100", 2), config(), strict).short is False  # what it has passes


def test_a_jobs_own_num_processes_is_kept_and_said(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, accelerators=0)
    got = place(asked(n=1), config(num_processes=2), settings, fixed=True)
    assert (got.processes, got.accelerators) == (2, 0)
    assert "running on 2 process(es) on CPU, as the job's `openrft.num_processes` says" in (
        got.message
    )


def test_the_machines_gpus_are_counted_when_the_operator_does_not_say(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"):
        (dev / name).touch()
    settings = Settings(data_dir=tmp_path, accelerator_type="H100")
    assert machine(settings, dev) == ("H100", 2)
    assert machine(settings, tmp_path / "absent") == ("CPU", 0)
    assert machine(settings.model_copy(update={"accelerators": 0}), dev) == ("CPU", 0)
