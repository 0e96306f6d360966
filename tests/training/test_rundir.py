"""The run directory's contract, each producer against its readers: what training writes (the
callback's metrics lines, checkpoint info and pause file, the evaluator's samples, the failure
recorder's error file) read back by the service (the progress tail, the worker, the dashboard)
and by the report. Real writers, real readers; a tiny model for the evaluation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from sqlalchemy.engine import RowMapping
from transformers import TrainerControl, TrainerState

from openrft.errors import ConfigError, DatasetError, GradingError, Problem
from openrft.service import progress
from openrft.service.dashboard.jobs import pause_of, read_samples
from openrft.service.settings import Settings
from openrft.service.store import Store, new_id, now
from openrft.service.worker import STDERR_LOG, JobWorker, Run, _one_line_per_step
from openrft.training import report, rundir
from openrft.training.callbacks import RunCallback, build_run_callback
from openrft.training.config import TrainingConfig
from openrft.training.evaluate import build_evaluator
from openrft.training.grpo import load_model
from openrft.training.records import load_rows
from openrft.training.rewards import GraderReward
from openrft.training.rundir import (
    CHECKPOINTS,
    EXIT_DONE,
    EXIT_PAUSED,
    METRICS,
    PAUSE_REQUEST,
    MetricsLine,
    Scores,
    Timing,
    Usage,
    checkpoint_name,
    failing_as,
    failure,
    failures_recorded,
)

LOGS = {
    "reward": 0.4,
    "rewards/total/mean": 0.4,
    "rewards/total/has_one/mean": 0.5,
    "rewards/total/has_e/mean": 0.3,
    "completions/mean_length": 5.0,
    "kl": 0.01,
    "loss": 0.2,
    "learning_rate": 0.01,  # not one of ours: left out of the line
}
"""What TRL logs after a step of the `total` grader (`conftest.GRADER`)."""


@pytest.fixture
def config(make_config: Any) -> TrainingConfig:
    config: TrainingConfig = make_config(max_steps=10, eval_samples=2, n_checkpoints=2, lora=None)
    return config


@pytest.fixture
def callback(config: TrainingConfig, sums_file: Path, tmp_path: Path) -> RunCallback:
    """The run's callback as `grpo.run` builds it, with a real evaluator on the tiny model."""
    model, tokenizer = load_model(config)
    reward = GraderReward(config.grader or {})
    evaluator = build_evaluator(config, model, tokenizer, load_rows(sums_file), reward)
    return build_run_callback(config, tmp_path, reward, evaluator)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.engine.dispose()


def state(step: int, total: int = 10) -> TrainerState:
    return TrainerState(global_step=step, max_steps=total, num_input_tokens_seen=64 * step)


def claimed_job(store: Store, config: dict[str, Any] | None = None) -> RowMapping:
    """A job a worker has claimed (as `JobWorker.run_next` does)."""
    row = {
        "id": new_id("ftjob"),
        "project": "p",
        "status": "queued",
        "model": "tiny",
        "training_file": "file-x",
        "seed": 1,
        "config": config or {},
        "created_at": now(),
        "control": "",
        "attempts": 0,
    }
    store.add_job(row, {})
    job = store.claim_job("w")
    assert job is not None
    return job


def ended(store: Store, jobdir: Path, exit_code: int, config: dict[str, Any] | None = None) -> Run:
    """A finished attempt of a claimed job whose training exited with `exit_code`."""
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({exit_code})"])
    proc.wait()
    job = claimed_job(store, config)
    return Run(job, jobdir, proc, 0, progress.Tail(jobdir / METRICS))


# --- metrics.jsonl ---------------------------------------------------------------------------


def test_a_step_line_from_the_callback_is_what_the_service_reads(
    callback: RunCallback, tmp_path: Path
) -> None:
    callback.on_log(None, state(3), TrainerControl(), logs=dict(LOGS))  # type: ignore[arg-type]
    tail = progress.Tail(tmp_path / METRICS)
    [(number, text)] = tail.read()
    event = progress.metrics_event(number, text)
    assert (event["type"], event["key"], event["source"]) == ("metrics", 3, "metrics")
    assert event["message"] == "Step 3/10: train reward 0.400"
    line: MetricsLine = event["data"]
    assert set(line) == MetricsLine.__required_keys__
    assert set(line["scores"]) == Scores.__required_keys__
    assert set(line["usage"]) == Usage.__required_keys__
    assert set(line["timing"]) == Timing.__required_keys__ | Timing.__optional_keys__
    assert line["scores"]["train_graders"] == {"has_one": 0.5, "has_e": 0.3}
    assert line["usage"]["trained_tokens"] == 192
    assert line["trl"] == {"kl": 0.01, "loss": 0.2, "completions/mean_length": 5.0}
    assert progress.step_scores(event) == {**line["scores"], "loss": 0.2}
    # the report, the CLI's summary and the worker's result file read the same line
    assert rundir.read_metrics(tmp_path) == [line]
    assert report.read_metrics(tmp_path) == [line]
    assert _one_line_per_step(tmp_path / METRICS) == text + "\n"
    assert tail.read() == []  # nothing twice


def test_a_baseline_line_and_a_partial_line(callback: RunCallback, tmp_path: Path) -> None:
    callback.on_train_begin(None, state(0), TrainerControl())  # type: ignore[arg-type]
    with (tmp_path / METRICS).open("a") as out:
        out.write('{"step": 1, "total_')  # still being written
    [(number, text)] = progress.Tail(tmp_path / METRICS).read()
    event = progress.metrics_event(number, text)
    assert event["message"].startswith("Step 0/10: valid reward")
    assert event["data"]["scores"]["valid_reward_mean"] is not None
    assert [line["step"] for line in rundir.read_metrics(tmp_path)] == [0]
    assert progress.metrics_event(7, "[1, 2]")["type"] == "message"  # not a metrics line


# --- evals/step-N.jsonl ----------------------------------------------------------------------


def test_evaluation_samples_are_what_the_dashboard_and_report_show(
    callback: RunCallback, tmp_path: Path
) -> None:
    callback.on_train_begin(None, state(0), TrainerControl())  # type: ignore[arg-type]
    by_step = read_samples(tmp_path)
    assert list(by_step) == [0]
    [first, second] = by_step[0]
    assert first["step"] == 0
    assert first["prompt"] == "What is 1 + 1?"
    assert first["reference"] == "2"
    assert isinstance(first["completion"], str)
    assert set(first["sub_rewards"]) == {"has_one", "has_e"}
    assert second["prompt"] == "What is 1 + 2?"
    report.write(tmp_path)  # its samples table reads the same file
    assert "What is 1 + 1?" in (tmp_path / rundir.REPORT).read_text()


# --- checkpoints/checkpoint-N/openrft_checkpoint.json ----------------------------------------


def test_checkpoint_info_is_what_the_worker_mirrors(callback: RunCallback, tmp_path: Path) -> None:
    callback.on_train_begin(None, state(0), TrainerControl())  # type: ignore[arg-type]
    checkpoints = tmp_path / CHECKPOINTS
    (checkpoints / checkpoint_name(5)).mkdir(parents=True)
    (checkpoints / checkpoint_name(6)).mkdir()  # being saved: no info file yet
    args = SimpleNamespace(output_dir=str(checkpoints))
    callback.on_save(args, state(5), TrainerControl())  # type: ignore[arg-type]
    valid = callback.evals[-1].reward_mean
    scores = {5: {"train_reward_mean": 0.4, "loss": 0.2, "train_reasoning_tokens_mean": 3.5}}
    [row] = progress.read_checkpoints(tmp_path, scores, "ft:tiny:x")
    assert (row["name"], row["step"], row["model"]) == ("checkpoint-5", 5, "ft:tiny:x:ckpt-step-5")
    assert row["metrics"] == {
        "step": 5.0,
        "train_reward_mean": 0.4,
        "valid_reward_mean": valid,
        "train_loss": 0.2,
        "train_reasoning_tokens_mean": 3.5,  # OpenAI's names, from the step's metrics line
        "valid_reasoning_tokens_mean": None,
    }
    info = rundir.read_checkpoint_info(checkpoints / "checkpoint-5")
    assert info == {"step": 5, "valid_reward_mean": valid, "paused": False}


# --- PAUSE and paused.json -------------------------------------------------------------------


def test_a_pause_request_reaches_the_worker_and_the_dashboard(
    callback: RunCallback, store: Store, tmp_path: Path
) -> None:
    (tmp_path / PAUSE_REQUEST).touch()  # what the worker does on `control: pause`
    control = TrainerControl()
    callback.on_step_end(None, state(3), control)  # type: ignore[arg-type]
    assert control.should_save
    assert control.should_training_stop
    assert rundir.paused_info(tmp_path) == {"reason": "request", "step": 3}
    assert 3 in read_samples(tmp_path)  # it evaluated before the checkpoint
    run = ended(store, tmp_path, EXIT_PAUSED)
    worker = JobWorker(Settings(data_dir=tmp_path), store)
    worker._finish(run)
    assert store.job(run.id)["status"] == "paused"  # type: ignore[index]
    assert pause_of(store, run.id) == {
        "reason": "request",
        "step": 3,
        "message": "Job paused on request at step 3; resume continues from its checkpoint",
    }


def test_a_budget_pause_reaches_the_worker_and_the_dashboard(
    make_config: Any, callback: RunCallback, store: Store, tmp_path: Path
) -> None:
    budget = make_config(budget={"max_steps": 2}).budget
    callback.settings = replace(callback.settings, budget=budget)
    callback.on_train_begin(None, state(0), TrainerControl())  # type: ignore[arg-type]
    callback.on_step_end(None, state(1), TrainerControl())  # type: ignore[arg-type]
    assert rundir.paused_info(tmp_path) is None
    callback.on_step_end(None, state(2), TrainerControl())  # type: ignore[arg-type]
    assert rundir.paused_info(tmp_path) == {"reason": "budget", "step": 2}
    run = ended(store, tmp_path, EXIT_DONE, config={"budget": {"max_steps": 2}})
    JobWorker(Settings(data_dir=tmp_path), store)._finish(run)
    job = store.job(run.id)
    assert job is not None
    assert (job["status"], job["fine_tuned_model"]) == ("paused", None)
    found = pause_of(store, run.id)
    assert (found["reason"], found["step"]) == ("budget", 2)
    assert found["message"].startswith("Job paused at step 2: it reached its budget (max_steps 2)")


def test_a_job_paused_while_queued_was_paused_on_request(store: Store) -> None:
    job = claimed_job(store)
    store.log(job["id"], "Job paused")
    assert pause_of(store, job["id"])["reason"] == "request"
    assert pause_of(store, job["id"])["step"] is None


# --- error.json ------------------------------------------------------------------------------


def failed_with(store: Store, jobdir: Path, exc: Exception) -> dict[str, Any]:
    """The job's `error` after its training raised `exc` inside `failures_recorded` (as
    `grpo.run` and `grpo.main` do) and exited 1."""
    with pytest.raises(type(exc)), failures_recorded(jobdir):
        raise exc
    run = ended(store, jobdir, 1)
    JobWorker(Settings(data_dir=jobdir), store)._finish(run)
    job = store.job(run.id)
    assert job is not None
    assert job["status"] == "failed"
    error: dict[str, Any] = job["error"]
    return error


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (GradingError("5 of 8 samples failed to grade"), "grader_error_rate"),
        (torch.OutOfMemoryError("CUDA out of memory"), "out_of_memory"),
        (MemoryError(), "out_of_memory"),
        (ConfigError([Problem("$.beta", "must be positive")]), "invalid_config"),
        (RuntimeError("something else"), "training_failed"),
    ],
)
def test_a_failure_reaches_the_job_with_its_code(
    store: Store, tmp_path: Path, exc: Exception, code: str
) -> None:
    error = failed_with(store, tmp_path, exc)
    assert error == {"code": code, "message": failure(exc)["message"], "param": None}
    assert error["message"] == (str(exc).strip() or type(exc).__name__)
    assert rundir.read_error(tmp_path) == {**error, "type": type(exc).__name__}


def test_the_stage_that_failed_names_the_setting_at_fault(store: Store, tmp_path: Path) -> None:
    with failures_recorded(tmp_path), failing_as(tmp_path, "invalid_model", "model", OSError):
        pass  # nothing failed: nothing written
    assert rundir.read_error(tmp_path) is None
    problem = DatasetError([Problem("train.jsonl:3", "not valid JSON")])
    with (
        pytest.raises(DatasetError),
        failures_recorded(tmp_path),
        failing_as(tmp_path, "invalid_training_file", "training_file", DatasetError),
    ):
        raise problem
    run = ended(store, tmp_path, 1)
    JobWorker(Settings(data_dir=tmp_path), store)._finish(run)
    error = store.job(run.id)["error"]  # type: ignore[index]
    assert (error["code"], error["param"]) == ("invalid_training_file", "training_file")
    assert "train.jsonl:3: not valid JSON" in error["message"]


def test_an_earlier_error_file_is_not_this_runs(tmp_path: Path, monkeypatch: Any) -> None:
    rundir.write_error(tmp_path, failure(RuntimeError("last time")))
    assert not rundir.write_error(tmp_path, failure(RuntimeError("a second rank")))
    monkeypatch.setenv("RANK", "1")  # another rank leaves it: rank 0 may have failed already
    with failures_recorded(tmp_path):
        pass
    assert rundir.read_error(tmp_path) is not None
    monkeypatch.setenv("RANK", "0")
    with failures_recorded(tmp_path):
        pass
    assert rundir.read_error(tmp_path) is None


def test_without_an_error_file_the_job_fails_with_the_stderr_tail(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / STDERR_LOG).write_text("Traceback …\nSegmentation fault\n")
    run = ended(store, tmp_path, -9)
    JobWorker(Settings(data_dir=tmp_path), store)._finish(run)
    error = store.job(run.id)["error"]  # type: ignore[index]
    assert error == {
        "code": "training_failed",
        "message": "Traceback …\nSegmentation fault",
        "param": None,
    }
