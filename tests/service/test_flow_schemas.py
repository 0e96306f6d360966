"""SeekrFlow's wire objects built from store rows (`service/flow/schemas.py`): what the SDK's
enums receive for every OpenRFT state."""

from __future__ import annotations

from typing import Any

import pytest

from openrft.service.flow.schemas import event_type, fine_tune, flow_event, normalized_components


def event(message: str = "", level: str = "info", kind: str = "message", **data: Any) -> Any:
    return {
        "id": "ftevent-1",
        "created_at": 1_700_000_000,
        "level": level,
        "message": message,
        "type": kind,
        "data": data or None,
    }


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (event("Created fine-tuning job: ftjob-1"), "JOB_PENDING"),
        (event("Files validated; job queued"), "TRAINING_DATA_DOWNLOAD_COMPLETE"),
        (event("Fine-tuning job started"), "JOB_START"),
        (event("Resuming from the latest checkpoint (attempt 2)"), "JOB_RESTARTED"),
        (event("Job paused at step 2: it reached its budget"), "JOB_STOPPED"),
        (event("New fine-tuned model created: ft:tiny::1"), "TRAINING_COMPLETE"),
        (event("The job has successfully completed"), "JOB_COMPLETE"),
        (event("Training failed (exit code 1): boom", "error"), "JOB_ERROR"),
        (event("something else went wrong", "error"), "JOB_ERROR"),
        (event("Step 3: entropy collapsed", "warn"), "WARNING"),
        (event("a note", "info"), None),
        (event("Step 4/8", kind="metrics", trl={"epoch": 1.0}), "EPOCH_COMPLETE"),
        (event("Step 2/8", kind="metrics", trl={"epoch": 0.5}), None),
        (event("Step 0/8", kind="metrics", trl={}), None),
    ],
)
def test_each_event_has_a_seekrflow_type(row: Any, expected: str | None) -> None:
    assert event_type(row) == expected


def test_a_metrics_event_carries_loss_reward_and_epoch() -> None:
    row = event(
        "Step 2/8: train reward 0.500",
        kind="metrics",
        step=2,
        trl={"loss": 0.25, "epoch": 0.5},
        scores={"train_reward_mean": 0.5, "valid_reward_mean": None},
    )
    shown = flow_event(row)
    assert (shown.loss, shown.epoch, shown.reward, shown.step) == (0.25, 0.5, 0.5, 2)
    assert shown.valid_reward is None
    assert shown.level == "Info"
    assert shown.created_at is not None
    assert shown.created_at.isoformat() == "2023-11-14T22:13:20+00:00"
    plain = flow_event(event("Job cancelled", "warn"))
    assert (plain.loss, plain.reward, plain.level, plain.type) == (
        None,
        None,
        "Warning",
        "JOB_STOPPED",
    )


def job(**columns: Any) -> dict[str, Any]:
    row = {
        "id": "ftjob-abc",
        "config": {"method": "reinforcement", "n_epochs": 2, "batch_size": 4, "lora": None},
        "flow": None,
        "training_file": "file-1",
        "validation_file": None,
        "model": "tiny",
        "created_at": 1_700_000_000,
        "suffix": None,
        "status": "queued",
        "finished_at": None,
        "error": None,
        "fine_tuned_model": None,
    }
    return row | columns


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("validating_files", "pending"),
        ("queued", "queued"),
        ("running", "running"),
        ("paused", "pending"),
        ("succeeded", "completed"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
    ],
)
def test_every_status_reads_as_one_of_seekrflows(status: str, shown: str) -> None:
    made = fine_tune(job(status=status), False, ("CPU", 0))
    assert made.status == shown
    assert made.openrft_status == status


def test_a_job_created_through_openai_shows_the_servers_kind_or_none() -> None:
    made = fine_tune(job(), False, ("CPU", 0))
    assert made.id == "ft-abc"
    assert made.openai_id == "ftjob-abc"
    assert (made.accel_type, made.n_accel, made.project_id) == ("A10", 0, None)
    assert made.fine_tune_type == "REINFORCEMENT"
    assert made.lora_config is None
    on_gpus = fine_tune(job(), False, ("H100", 8))
    assert (on_gpus.accel_type, on_gpus.n_accel) == ("H100", 8)
    failed = fine_tune(job(status="failed", error={"message": "no memory"}), False, ("CPU", 0))
    assert failed.error_analysis == "no memory"
    supervised = {"method": "supervised", "sft_warmup": {"n_epochs": 3, "learning_rate": 1e-5}}
    sft = fine_tune(job(config=supervised), False, ("CPU", 0))
    assert (sft.fine_tune_type, sft.n_epochs, sft.learning_rate) == ("STANDARD", 3, 1e-5)


def test_reward_components_are_shown_with_seekrais_weights() -> None:
    none_given = normalized_components({"graders": [{"type": "math_accuracy"}, {"type": "llm"}]})
    assert none_given["format_reward_weight"] == 0.1
    assert [g["weight"] for g in none_given["graders"]] == [pytest.approx(0.45)] * 2
    explicit = normalized_components(
        {"format_reward_weight": 0.2, "graders": [{"type": "math_accuracy", "weight": 0.8}]}
    )
    assert explicit["graders"][0]["weight"] == 0.8
