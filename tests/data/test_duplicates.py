"""Repeated rows are a warning with counts, not an error: in `validate_dataset`, `openrft data
validate`, training start (`grpo.read_rows`) and a job's `validating_files` step (a `warn` event).
"""

import json
import logging
from pathlib import Path

import httpx
import pytest
from tests.service.conftest import EXACT, Server, wait_for
from typer.testing import CliRunner

from openrft.cli import app
from openrft.data import load_dataset, validate_dataset
from openrft.data.validate import DUPLICATES_SHOWN
from openrft.training.config import TrainingConfig
from openrft.training.grpo import read_rows

runner = CliRunner()


def rows_with_repeats(tmp_path: Path) -> Path:
    """40 distinct rows, then line 34 onwards repeats lines 3 and 4 (twelve repeats in all):
    the shape of the file that used to be refused with "duplicate of line 3 … remove one"."""
    rows = [
        {"messages": [{"role": "user", "content": f"What is {i} + 1?"}], "reference_answer": str(i)}
        for i in range(33)
    ]
    rows += [rows[2 + i % 2] for i in range(12)]  # lines 34..45 repeat lines 3 and 4
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_repeats_are_counted_not_refused(tmp_path: Path) -> None:
    path = rows_with_repeats(tmp_path)
    report = validate_dataset(path)
    assert report.ok, report.problems
    assert (report.rows, report.duplicate_rows) == (45, 12)
    assert report.duplicates[:3] == [(34, 3), (35, 4), (36, 3)]
    (warning,) = report.warnings
    assert warning.where == str(path)
    assert warning.message.startswith(
        "12 of 45 rows repeat an earlier row (lines 34, 36, 38 repeat line 3; lines 35, 37 "
        f"repeat line 4; and {12 - DUPLICATES_SHOWN} more): repeated prompts weigh more"
    )
    assert "remove them if unintended" in warning.message
    assert len(load_dataset(path)) == 45  # every row kept: repeating a prompt weights it


def test_data_validate_cli_accepts_with_the_warning(tmp_path: Path) -> None:
    path = rows_with_repeats(tmp_path)
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: 12 of 45 rows repeat an earlier row (lines 34," in result.stdout
    assert "rows repeating an earlier row" in result.stdout
    assert "No problems found." in result.stdout
    as_json = runner.invoke(app, ["data", "validate", str(path), "--json"])
    assert as_json.exit_code == 0
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["duplicate_rows"]) == (True, 12)
    assert report["warnings"][0]["message"].startswith("12 of 45 rows repeat")


def test_training_start_logs_the_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = rows_with_repeats(tmp_path)
    config = TrainingConfig(training_file=str(path), grader=EXACT, validation_share=0.1)
    with caplog.at_level(logging.WARNING, logger="openrft.data"):
        train, valid = read_rows(config, tmp_path / "run")
    assert len(train) + len(valid) == 45
    (record,) = [r for r in caplog.records if r.name == "openrft.data.validate"]
    assert record.levelno == logging.WARNING
    assert f"{path}: 12 of 45 rows repeat an earlier row" in record.getMessage()


def test_validating_files_step_records_a_warn_event(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    try:
        server.register_model("tiny-test-model", "/models/tiny")  # validation never loads it
        with server.client("alpha") as client:
            upload = client.files.create(
                file=("train.jsonl", rows_with_repeats(tmp_path).read_bytes()),
                purpose="fine-tune",
            )
            job = client.fine_tuning.jobs.create(
                model="tiny-test-model",
                training_file=upload.id,
                method={"type": "reinforcement", "reinforcement": {"grader": EXACT}},
            )
            checked = httpx.post(  # the dashboard's check of an uploaded file says the same
                f"http://127.0.0.1:{server.port}/dashboard/api/files/{upload.id}/validation",
                headers={"Authorization": f"Bearer {server.key('alpha')}"},
                timeout=60,
            ).json()
            status = wait_for(
                lambda: (
                    (s := client.fine_tuning.jobs.retrieve(job.id).status) != "validating_files"
                    and s
                ),
            )
            assert status == "queued"  # accepted: no worker runs here
            events = client.fine_tuning.jobs.list_events(job.id, limit=50).data
    finally:
        server.stop()
    warned = [e for e in events if e.level == "warn"]
    assert len(warned) == 1, [(e.level, e.message) for e in events]
    assert warned[0].message.startswith(
        "training_file: 12 of 45 rows repeat an earlier row (lines 34, 36, 38 repeat line 3;"
    )
    assert str(tmp_path) not in warned[0].message  # no server path in what the tenant reads
    assert "Files validated; job queued" in [e.message for e in events]
    assert checked["ok"], checked
    assert checked["duplicate_rows"] == 12
    assert checked["warnings"][0].startswith("12 of 45 rows repeat an earlier row")
