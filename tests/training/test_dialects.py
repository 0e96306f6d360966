import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from openrft.errors import ConfigError
from openrft.graders import load_grader
from openrft.training.config import LoraSettings, SFTSettings, TrainingConfig
from openrft.training.dialects import detect_dialect, load

REWARD = {"format_reward_weight": 0.1, "graders": [{"type": "string_check", "operation": "equals"}]}
GRADER = load_grader({"reward_components": REWARD}).model_dump(mode="json", exclude_none=True)

OPENAI = {
    "model": "tiny",
    "training_file": "train.jsonl",
    "validation_file": "valid.jsonl",
    "suffix": "exp",
    "method": {
        "type": "reinforcement",
        "reinforcement": {
            "grader": GRADER,
            "hyperparameters": {"batch_size": 4, "n_epochs": 2, "learning_rate_multiplier": 0.5},
        },
    },
}
SEEKR = {
    "training_files": ["train.jsonl"],
    "validation_files": ["valid.jsonl"],
    "model": "tiny",
    "n_epochs": 2,
    "learning_rate": 1e-4,
    "batch_size": 4,
    "experiment_name": "exp",
    "fine_tune_type": "REINFORCEMENT",
    "lora_config": {"r": 16, "alpha": 32, "dropout": 0.0},
    "reward_components": REWARD,
}
NATIVE = {
    "model": "tiny",
    "training_file": "train.jsonl",
    "validation_file": "valid.jsonl",
    "suffix": "exp",
    "n_epochs": 2,
    "learning_rate": 1e-4,
    "batch_size": 4,
    "grader": GRADER,
}


def rl_job(**settings: Any) -> dict[str, Any]:
    """OPENAI with `method.reinforcement` replaced (the grader kept unless given)."""
    return {
        **OPENAI,
        "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER, **settings}},
    }


def problems(data: dict[str, Any]) -> tuple[str, dict[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(data)
    title = str(caught.value).splitlines()[0]
    return title, {p.where: p.message for p in caught.value.problems}


def test_each_dialect_maps_to_the_same_config() -> None:
    assert [detect_dialect(d) for d in (OPENAI, SEEKR, NATIVE)] == ["openai", "seekrflow", "native"]
    configs = [load(d) for d in (OPENAI, SEEKR, NATIVE)]
    assert configs[0] == configs[1] == configs[2]
    config = configs[0]
    assert config.grader is not None
    assert config.grader.type == "multi"
    assert (config.n_epochs, config.batch_size, config.learning_rate) == (2, 4, 1e-4)
    assert config.lora == LoraSettings()


def test_files_in_yaml_and_json_load_alike(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("")
    yaml_file = tmp_path / "job.yaml"
    yaml_file.write_text(yaml.safe_dump(SEEKR))
    json_file = tmp_path / "job.json"
    json_file.write_text(json.dumps(OPENAI))
    from_yaml, from_json = load(yaml_file), load(json_file)
    assert from_yaml == from_json
    assert from_yaml.training_file == str(tmp_path / "train.jsonl")  # relative to the config
    assert from_yaml.validation_file == "valid.jsonl"  # does not exist there: left as given
    assert load(NATIVE) == load(NATIVE)


def test_openai_auto_means_native_defaults() -> None:
    job = {**OPENAI, "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER}}}
    config = load(job)
    defaults = TrainingConfig.model_fields
    for field in ("batch_size", "n_epochs", "learning_rate", "eval_interval", "eval_samples"):
        assert getattr(config, field) == defaults[field].default, field
    assert config.num_generations == 8  # compute_multiplier auto = 1
    assert config.max_completion_length == 256  # reasoning_effort default = medium
    keys = ("batch_size", "n_epochs", "learning_rate_multiplier", "eval_interval", "eval_samples")
    explicit = dict.fromkeys((*keys, "compute_multiplier"), "auto")
    job["method"]["reinforcement"]["hyperparameters"] = explicit  # type: ignore[index]
    assert load(job) == config


@pytest.mark.parametrize(
    ("multiplier", "generations"), [(0.1, 2), (0.5, 4), (1, 8), (1.5, 12), (2, 16), (100, 64)]
)
def test_compute_multiplier_scales_generations(multiplier: float, generations: int) -> None:
    hyper = {"compute_multiplier": multiplier}
    assert load(rl_job(hyperparameters=hyper)).num_generations == generations


@pytest.mark.parametrize(("effort", "tokens"), [("low", 128), ("medium", 256), ("high", 512)])
def test_reasoning_effort_sets_completion_budget(effort: str, tokens: int) -> None:
    hyper = {"reasoning_effort": effort, "eval_interval": 5, "eval_samples": 7}
    config = load(rl_job(hyperparameters=hyper))
    assert config.max_completion_length == tokens
    assert (config.eval_interval, config.eval_samples) == (5, 7)


def test_openai_response_format_passes_the_schema_through() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    wrapped = {
        "type": "json_schema",
        "json_schema": {"name": "a", "schema": schema, "strict": True},
    }
    for response_format in (wrapped, schema):
        settings = {"grader": GRADER, "response_format": response_format}
        job = {**OPENAI, "method": {"type": "reinforcement", "reinforcement": settings}}
        assert load(job).response_format == schema
    settings = {"grader": GRADER, "response_format": {"type": "text"}}
    job = {**OPENAI, "method": {"type": "reinforcement", "reinforcement": settings}}
    assert load(job).response_format is None


def test_supervised_jobs_in_every_dialect() -> None:
    stage = SFTSettings(n_epochs=3, batch_size=2, learning_rate=1e-4)
    openai = {
        "model": "tiny",
        "training_file": "train.jsonl",
        "method": {
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 0.5}
            },
        },
    }
    legacy = {
        "model": "tiny",
        "training_file": "train.jsonl",
        "hyperparameters": {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 0.5},
    }
    seekr = {
        "model": "tiny",
        "training_files": ["train.jsonl"],
        "n_epochs": 3,
        "batch_size": 2,
        "learning_rate": 1e-4,
        "lora_config": {"r": 16, "dropout": 0},
    }
    native = {
        "model": "tiny",
        "training_file": "train.jsonl",
        "method": "supervised",
        "sft_warmup": stage.model_dump(),
    }
    configs = [load(d) for d in (openai, legacy, seekr, native)]
    assert all(c == configs[0] for c in configs)
    assert configs[0].method == "supervised"
    assert configs[0].sft_warmup == stage
    assert configs[0].grader is None


def test_seekr_defaults_and_rules() -> None:
    bare = {
        "training_files": ["t.jsonl"],
        "model": "tiny",
        "n_epochs": 1,
        "fine_tune_type": "reinforcement",
    }
    config = load(bare)
    assert config.lora is None  # no lora_config: a full fine-tune, as in SeekrFlow
    assert config.grader is not None
    assert config.grader.type == "multi"
    assert config.grader.calculate_output == "0.1 * format + 0.9 * math_accuracy"
    lora = load({**bare, "lora_config": {"extras": {"target_modules": "all-linear"}}})
    assert lora.lora == LoraSettings(r=8, alpha=32, dropout=0.1, target_modules="all-linear")
    assert load({**bare, "max_length": 96}).max_completion_length == 96


def test_seekr_refusals_reported_together() -> None:
    title, found = problems(
        {
            "training_files": ["a", "b"],
            "model": "m",
            "n_epochs": 0,
            "pre_train": True,
            "fine_tune_type": "PREFERENCE",
            "beta": 0.1,
            "lora_config": {"bias": "all", "extras": {"targets": 1}},
        }
    )
    assert title == "invalid training config (SeekrFlow TrainingConfig)"
    assert set(found) == {
        "$.n_epochs",
        "$.fine_tune_type",
        "$.pre_train",
        "$.training_files",
        "$.beta",
        "$.lora_config.bias",
        "$.lora_config.extras.targets",
    }
    assert found["$.fine_tune_type"].startswith("PREFERENCE (DPO) tuning is not supported")
    _, found = problems({**SEEKR, "fine_tune_type": "STANDARD"})
    assert "incompatible with STANDARD" in found["$.reward_components"]


def test_unknown_keys_with_did_you_mean_all_at_once() -> None:
    bad_grader = {**GRADER, "calculate_output": "format +"}
    hyper = {"batch_sise": 4, "n_epochs": "lots", "compute_multiplier": 0}
    job = {
        "model": "m",
        "training_file": "t",
        "sufix": "x",
        "method": {
            "type": "reinforcement",
            "reinforcement": {"grader": bad_grader, "hyperparameters": hyper, "respons_format": {}},
        },
    }
    title, found = problems(job)
    assert title == "invalid training config (OpenAI job body)"
    at = "$.method.reinforcement"
    assert found["$.sufix"].startswith("unknown key 'sufix' (did you mean 'suffix'?)")
    hp = f"{at}.hyperparameters"
    assert (
        "unknown key 'respons_format' (did you mean 'response_format'?)"
        in found[f"{at}.respons_format"]
    )
    assert "unknown key 'batch_sise' (did you mean 'batch_size'?)" in found[f"{hp}.batch_sise"]
    assert found[f"{hp}.n_epochs"] == "must be \"auto\" or a whole number ≥ 1, got 'lots'"
    assert found[f"{hp}.compute_multiplier"].startswith('must be "auto" or a number > 0')
    assert "formula_parse_error" in found[f"{at}.grader.calculate_output"]

    _, found = problems({**SEEKR, "lora_confg": {}, "n_epoch": 1})
    assert "did you mean 'lora_config'?" in found["$.lora_confg"]
    assert "did you mean 'n_epochs'?" in found["$.n_epoch"]

    title, found = problems({**NATIVE, "learning_rate_multiplier": 1, "lora": {"alfa": 8}})
    assert title == "invalid training config (native OpenRFT form)"
    assert "did you mean 'learning_rate'?" in found["$.learning_rate_multiplier"]
    assert "did you mean 'alpha'?" in found["$.lora.alfa"]


def test_native_problems_are_reported_at_the_dialect_path() -> None:
    hyper = {"batch_size": 3, "compute_multiplier": 0.5}
    _, found = problems({**rl_job(hyperparameters=hyper), "suffix": "x" * 65})
    assert "$.suffix" in found
    _, found = problems({**SEEKR, "experiment_name": "x" * 65})
    assert "$.experiment_name" in found


def test_mixed_and_unsupported_forms() -> None:
    title, found = problems({**SEEKR, "method": {"type": "reinforcement"}})
    assert title == "invalid training config (dialect unclear)"
    assert "mixes OpenAI job-body keys (method)" in found["$"]
    _, found = problems({**OPENAI, "method": {"type": "dpo"}})
    assert found["$.method.type"].startswith("DPO is not supported")
    _, found = problems({**OPENAI, "method": {"type": "reinforcement"}})
    assert "needs `reinforcement: {grader}`" in found["$.method.reinforcement"]


def test_the_documented_examples_load() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "training-config.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```yaml\n")[1:]]
    openai, seekr = (load(yaml.safe_load(b)) for b in blocks)
    assert openai.method == seekr.method == "reinforcement"
    assert (openai.n_epochs, openai.suffix) == (seekr.n_epochs, seekr.suffix) == (2, "arithmetic")
    assert openai.response_format == {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
    }
