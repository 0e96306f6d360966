"""The one loader: every dialect through one registry, validated once, problems at their paths."""

from pathlib import Path
from typing import Any

import pytest

import openrft.graders.spec as spec_module
from openrft.errors import ConfigError
from openrft.service.settings import default_train_command
from openrft.training import dialects
from openrft.training.config import TrainingConfig
from openrft.training.dialects import DIALECTS, detect_dialect, load

ANSWER = {
    "type": "string_check",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}
GOOD = {"type": "multi", "graders": {"ans": ANSWER}, "calculate_output": "ans"}
# two mistakes in two sub-graders: each must be reported at its own full path
BAD = {
    "type": "multi",
    "graders": {
        "ans": {**ANSWER, "operation": "equals"},
        "fmt": {**ANSWER, "wieght": 1},
    },
    "calculate_output": "ans + fmt",
}
BODY = {"model": "m", "training_file": "file-1"}


def openai_job(grader: Any) -> dict[str, Any]:
    return {**BODY, "method": {"type": "reinforcement", "reinforcement": {"grader": grader}}}


def found(data: Any, dialect: str | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(data, dialect)
    return {p.where: p.message for p in caught.value.problems}


@pytest.mark.parametrize(
    ("data", "dialect", "root"),
    [
        ({"training_file": "t", "grader": BAD}, None, "$.grader"),
        (openai_job(BAD), None, "$.method.reinforcement.grader"),
        ({**openai_job(GOOD), "openrft": {"grader": BAD}}, "service", "$.openrft.grader"),
    ],
    ids=["native", "openai", "service-override"],
)
def test_nested_grader_problems_keep_their_full_json_paths(
    data: dict[str, Any], dialect: str | None, root: str
) -> None:
    problems = found(data, dialect)
    # was `$.grader` with the text "$.graders.ans.operation: …; $.graders.fmt.wieght: …"
    assert set(problems) == {f"{root}.graders.ans.operation", f"{root}.graders.fmt.wieght"}
    assert problems[f"{root}.graders.ans.operation"].startswith("must be ")
    assert problems[f"{root}.graders.fmt.wieght"].startswith("unknown key 'wieght'")


def test_service_overrides_are_reported_under_openrft_and_files_stay_the_bodys() -> None:
    problems = found({**openai_job(GOOD), "openrft": {"num_generation": 4}}, "service")
    assert problems["$.openrft.num_generation"].startswith(
        "unknown key 'num_generation' (did you mean 'num_generations'?)"
    )
    body = {**openai_job(GOOD), "openrft": {"num_generations": 4, "training_file": "other"}}
    config = load(body, "service")
    assert (config.num_generations, config.training_file) == (4, "file-1")
    assert load({**openai_job(GOOD), "openrft": {"lora": None}}, "service").lora is None
    assert found({**openai_job(GOOD), "openrft": [1]}, "service") == {
        "$.openrft": "must be an object of TrainingConfig fields"
    }


def test_one_registry_recognises_every_dialect() -> None:
    assert set(DIALECTS) == {"native", "openai", "seekrflow", "service"}
    seekr = {"training_files": ["t"], "model": "m", "n_epochs": 1}
    assert detect_dialect({"training_file": "t", "grader": GOOD}) == "native"
    assert detect_dialect(openai_job(GOOD)) == "openai"
    assert detect_dialect(seekr) == "seekrflow"
    assert detect_dialect({**openai_job(GOOD), "openrft": {}}) == "service"
    problems = found({**seekr, "openrft": {}})
    assert (
        "mixes SeekrFlow keys (training_files) with OpenAI job-body keys (openrft)"
        in (problems["$"])
    )
    assert found(BODY, "klingon") == {
        "$": "unknown dialect 'klingon'; use one of native, openai, seekrflow, service"
    }
    assert found([1, 2]) == {"$": "the config must be a mapping of keys to values"}


def test_a_job_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grader is parsed once and the config validated once per load (the create request
    used to validate the config twice and parse the grader twice, and the worker again)."""
    calls = {"grader": 0, "config": 0}
    adapter = spec_module._ADAPTER
    validate = TrainingConfig.model_validate.__func__  # type: ignore[attr-defined]

    class CountingAdapter:
        def validate_python(self, data: Any) -> Any:
            calls["grader"] += 1
            return adapter.validate_python(data)

    def counting_validate(cls: type[TrainingConfig], data: Any, **kwargs: Any) -> Any:
        calls["config"] += 1
        return validate(cls, data, **kwargs)

    monkeypatch.setattr(spec_module, "_ADAPTER", CountingAdapter())
    monkeypatch.setattr(TrainingConfig, "model_validate", classmethod(counting_validate))
    body = {**openai_job(GOOD), "openrft": {"num_generations": 4, "max_completion_length": 32}}
    config = load(body, "service")
    assert calls == {"grader": 1, "config": 1}
    # what the worker runs: the stored native JSON, loaded as native, never re-recognised
    stored = config.model_dump(mode="json", exclude_none=True)
    monkeypatch.setattr(dialects, "detect_dialect", lambda data: pytest.fail("re-detected"))
    assert load(stored, "native") == config
    assert calls == {"grader": 2, "config": 2}
    assert default_train_command()[-2:] == ["--dialect", "native"]


def test_a_config_file_in_any_dialect_resolves_paths_against_its_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.jsonl").write_text("{}\n")
    path = tmp_path / "job.json"
    path.write_text('{"model": "m", "training_file": "train.jsonl", "method": '
                    '{"type": "reinforcement", "reinforcement": {"grader": '
                    '{"type": "string_check", "input": "a", "reference": "a", '
                    '"operation": "eq"}}}}')  # fmt: skip
    assert load(path).training_file == str(tmp_path / "train.jsonl")
    assert dialects.load_file(path, "openai") == load(path)
