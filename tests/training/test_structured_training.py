"""`response_format` while training on CPU: transformers' sampling constrained to the job's JSON
schema (with and without LoRA), validation sampled the same way, rows cut only by
`max_completion_length`, and schemas outlines-core cannot compile refused at their JSON path."""

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from openrft.errors import ConfigError
from openrft.inference import constrained
from openrft.training.config import LoraSettings, build_lora_config
from openrft.training.constrained_generation import constrained_generate, schema_regex
from openrft.training.dialects import load
from openrft.training.grpo import run
from openrft.training.models import known_deprecations_silenced
from openrft.training.rundir import eval_steps, read_eval_samples

# every match is at most 16 characters, so each row ends well inside max_completion_length
ENUM = {
    "type": "object",
    "properties": {"answer": {"enum": [1, 2, 3]}},
    "required": ["answer"],
    "additionalProperties": False,
}
# digits can follow digits forever: a random model may still be inside it at the limit
INTEGER = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}
ANSWER_IS_ONE = {
    "type": "string_check",
    "name": "one",
    "input": "{{ sample.output_json.answer }}",
    "reference": "1",
    "operation": "eq",
}


def unsupported(schema: dict[str, Any]) -> dict[str, str]:
    """The problems of a native config with `schema` as its `response_format`, by path."""
    data = {"training_file": "train.jsonl", "grader": ANSWER_IS_ONE, "response_format": schema}
    with pytest.raises(ConfigError) as caught:
        load(data, dialect="native")
    return {p.where: p.message for p in caught.value.problems}


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_a_json_schema_job_samples_only_schema_valid_json_on_cpu(
    make_config: Any, read_lines: Any, tmp_path: Path, lora: bool
) -> None:
    config = make_config(
        grader=ANSWER_IS_ONE,
        response_format=ENUM,
        max_completion_length=24,
        lora=LoraSettings().model_dump() if lora else None,
        preflight={"enabled": False},
    )
    result = run(config, tmp_path)
    assert result.steps == 2
    lines = read_lines(tmp_path)
    # every training completion was graded: none failed to parse or match the schema
    for line in lines[1:]:
        assert line["errors"].get("sample_parse_error", 0.0) == 0.0, line
        assert line["usage"]["completion_tokens_mean"] > 0
    evaluations = eval_steps(tmp_path)
    assert sorted(evaluations) == [0, 2]
    for path in evaluations.values():
        for sample in read_eval_samples(path):
            jsonschema.validate(json.loads(sample["completion"]), ENUM)
    assert lines[0]["errors"].get("sample_parse_error", 0.0) == 0.0


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_each_row_follows_the_schema_and_is_cut_only_at_the_limit(
    tiny_model: Path, lora: bool
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    with known_deprecations_silenced():
        model: Any = AutoModelForCausalLM.from_pretrained(tiny_model)
        if lora:
            model = get_peft_model(model, build_lora_config(LoraSettings()))
    found = constrained.constraint(tokenizer, schema_regex(INTEGER))
    prompts = ["What is 1 + 2?", "Say 7."]
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    eos, limit = tokenizer.eos_token_id, 12
    torch.manual_seed(0)
    with known_deprecations_silenced(), constrained_generate(model, found, eos), torch.no_grad():
        output = model.generate(
            **encoded,
            do_sample=True,
            max_new_tokens=limit,
            num_return_sequences=4,  # 2 prompts × 4 generations: 8 rows, each with its own state
            pad_token_id=tokenizer.pad_token_id,
        )
    assert "generate" not in vars(model)  # the model's own generate is back
    rows = output[:, encoded["input_ids"].shape[1] :].tolist()
    assert len(rows) == 8
    for ids in rows:
        taken = ids[: ids.index(eos)] if eos in ids else ids
        state = found.index.get_initial_state()
        for token in taken:  # every sampled token is one the schema allows there
            state = found.index.get_next_state(state, token)
            assert state is not None, tokenizer.decode(taken)
        if eos in ids:
            assert found.index.is_final_state(state)
            jsonschema.validate(json.loads(tokenizer.decode(taken)), INTEGER)
        else:  # still inside the schema when the limit came: truncated, not wrong
            assert len(taken) == limit


def test_unsupported_schema_parts_are_refused_at_their_json_path() -> None:
    found = unsupported({"type": "object", "properties": {"x": {"not": {"type": "string"}}}})
    message = found["$.response_format.properties.x"]
    assert "outlines-core cannot constrain generation" in message
    assert '{"not":{"type":"string"}}' in message
    assert "check the format in the grader" in message
    nested = {"anyOf": [{"type": "integer"}, {"type": "string", "format": "hostname"}]}
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": nested}}},
    }
    found = unsupported(schema)
    assert (
        "Format hostname is not supported"
        in found["$.response_format.properties.a.properties.b.anyOf[1]"]
    )


def test_invalid_schemas_and_wrappers_are_refused_with_what_to_do() -> None:
    found = unsupported({"type": "object", "properties": {"x": {"type": "whole number"}}})
    assert "is not valid JSON schema" in found["$.response_format.properties.x.type"]
    missing = {"type": "object", "properties": {"x": {"$ref": "#/$defs/point"}}}
    assert "point `$ref` at a definition" in unsupported(missing)["$.response_format.properties.x"]
    wrapper = {"type": "json_schema", "json_schema": {"name": "a", "schema": ENUM}}
    assert "put the `json_schema.schema` object here" in unsupported(wrapper)["$.response_format"]


def test_the_openai_body_reports_problems_inside_its_json_schema() -> None:
    schema = {"type": "object", "properties": {"x": {"not": {}}}}
    wrapped = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    reinforcement = {"grader": ANSWER_IS_ONE, "response_format": wrapped}
    body = {
        "model": "m",
        "training_file": "file-abc",
        "method": {"type": "reinforcement", "reinforcement": reinforcement},
    }
    with pytest.raises(ConfigError) as caught:
        load(body)
    [problem] = caught.value.problems
    assert problem.where == "$.method.reinforcement.response_format.json_schema.schema.properties.x"


def test_json_object_is_sampled_as_objects_two_levels_deep() -> None:
    regex = schema_regex({"type": "object"})  # OpenAI's json_object
    assert re.fullmatch(regex, '{"a": {"b": 1}, "c": [1, "x"], "d": null}')
    assert not re.fullmatch(regex, '{"a": {"b": {"c": 1}}}')  # three levels: ~30 s to index
    assert not re.fullmatch(regex, "[1, 2]")
