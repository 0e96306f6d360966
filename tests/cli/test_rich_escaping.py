"""Text a user reads keeps its square brackets: job events, grading errors and dataset reports
go through Rich as text, never as markup (`[exact: sample_parse_error]` used to vanish, and a
stray `[/]` crashed the printer). Every test runs the real `openrft` command group."""

import json
from pathlib import Path

import pytest
import typer
from tests.service.conftest import EXACT, Server, arithmetic_rows, jsonl
from typer.testing import CliRunner

from openrft.cli import app
from openrft.cli.exits import Group
from openrft.errors import GradingError
from openrft.graders import GradeContext, grade_batch, load_grader
from openrft.graders.python_grader import check_error_rate
from openrft.graders.sandbox import SandboxLimits, detect_layers
from openrft.training.rewards import GraderReward

runner = CliRunner()

BRACKETS = (
    "8 of 8 samples failed to grade (100%, above the 20% threshold). First errors:\n\n"
    "[exact: sample_parse_error]\nthe output is not JSON; [bold]not bold[/bold] [/] [red]x"
)
"""A job error as the training writes it, plus markup-looking text (and a stray close tag)."""

RAISES = {
    "type": "python",
    "name": "checks_units",
    "source": "def grade(sample, item):\n"
    "    raise ValueError('[bold]no unit[/bold] in ' + repr(sample['output_text']))\n",
}


def sandbox_or_skip() -> None:
    missing = detect_layers().missing_requirements(SandboxLimits())
    if missing:
        pytest.skip(f"the python-grader sandbox cannot run here: missing {missing}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    running = Server(tmp_path_factory.mktemp("escaping") / "data")
    running.register_model("tiny-test-model", "/models/tiny")  # validation never loads it
    yield running  # type: ignore[misc]
    running.stop()


def test_job_events_print_their_text_verbatim(server: Server) -> None:
    key = server.key("alpha")
    with server.client("alpha", key) as client:
        upload = client.files.create(
            file=("t.jsonl", jsonl(arithmetic_rows(4))), purpose="fine-tune"
        )
        job = client.fine_tuning.jobs.create(
            model="tiny-test-model",
            training_file=upload.id,
            method={"type": "reinforcement", "reinforcement": {"grader": EXACT}},
        )
    store = server.store()
    try:
        store.log(job.id, f"Training failed (exit code 4): {BRACKETS}", "error")
        store.set_job(job.id, status="failed")  # so `--follow` ends
    finally:
        store.engine.dispose()
    where = ["--base-url", server.base_url, "--api-key", key]
    for follow in ([], ["--follow"]):
        result = runner.invoke(app, ["jobs", "events", job.id, *follow, *where])
        assert result.exit_code == (1 if follow else 0), result.output
        assert "[exact: sample_parse_error]" in result.stdout
        assert "[bold]not bold[/bold] [/] [red]x" in result.stdout


def test_response_format_failure_shows_grader_flag_and_details() -> None:
    reward = GraderReward(EXACT, response_format={"type": "object", "required": ["answer"]})
    texts = ["1 + 5 = 6", '{"answer_is": 6}', "6 [b]"] * 2
    results = reward.grade(texts, [{"reference_answer": "6"}] * 6)
    with pytest.raises(GradingError) as caught:
        check_error_rate([results[i] for i in range(6)])
    message = str(caught.value)
    assert "First errors:\n\n[exact: sample_parse_error]\nthe output is not JSON\n" in message
    assert "does not match response_format: 'answer' is a required property" in message


def test_python_grader_that_raises_names_itself_in_the_cli(tmp_path: Path) -> None:
    sandbox_or_skip()
    spec = tmp_path / "grader.json"
    spec.write_text(json.dumps(RAISES))
    result = runner.invoke(app, ["graders", "run", str(spec), "--sample", "12 [b]m[/b]"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metadata"]["errors"]["python_grader_runtime_error"]
    assert "error: [checks_units: python_grader_runtime_error]" in result.stderr
    assert "ValueError: [bold]no unit[/bold] in '12 [b]m[/b]'" in result.stderr


def test_grading_error_keeps_brackets_through_the_exit_printer() -> None:
    """The training's `GradingError` for a python grader that raises, printed by the command
    group's entry point as `openrft train` prints it (exit 4)."""
    sandbox_or_skip()
    grader = load_grader(RAISES)
    results = grade_batch(grader, [f"{n} m" for n in range(6)], [{}] * 6, GradeContext())
    group = typer.Typer(cls=Group)

    @group.command()
    def step() -> None:  # what a training step does with the step's results
        check_error_rate([results[i] for i in range(6)])

    @group.command()
    def other() -> None: ...

    result = runner.invoke(group, ["step"])
    assert result.exit_code == 4, result.output
    assert "6 of 6 samples failed to grade" in result.stderr
    assert "[checks_units: python_grader_runtime_error]" in result.stderr
    assert "ValueError: [bold]no unit[/bold] in '0 m'" in result.stderr  # first sample's details


def test_dataset_report_keeps_bracketed_paths_and_messages(tmp_path: Path) -> None:
    folder = tmp_path / "[bold]data"
    folder.mkdir()
    path = folder / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "hi"}], "[red]field": 1}
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\nnot json [/]\n")
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"✗ {path}:3: invalid JSON" in result.stdout
    assert f"warning: {path}: 1 of 2 rows repeats an earlier row" in result.stdout
    assert "rows with item.[red]field" in result.stdout
