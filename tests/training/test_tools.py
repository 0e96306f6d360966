"""Rows with `tools`: the model is prompted with its row's tool schemas, and tool calls it
writes reach graders as `sample.output_tools`."""

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from openrft.graders import Sample, grade, load_grader
from openrft.training.grpo import run
from openrft.training.records import grpo_records, load_rows

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "tools.jsonl"
    rows = [
        {
            "messages": [{"role": "user", "content": f"Weather in city {i}?"}],
            "tools": [WEATHER],
            "reference_answer": "get_weather",
        }
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_prompts_carry_their_rows_tool_schemas(tiny_model: Path, tmp_path: Path) -> None:
    rows = load_rows(tools_file(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    records = grpo_records(rows, tokenizer)
    assert isinstance(records[0]["prompt"], str)
    assert '"name": "get_weather"' in records[0]["prompt"]
    assert records[0]["prompt"].endswith("<|im_start|>assistant\n")
    # without tools the prompt stays conversational, rendered by TRL
    plain = grpo_records([rows[0].__class__(rows[0].messages, None, rows[0].item, 1)], tokenizer)
    assert plain[0]["prompt"] == rows[0].messages


def test_tool_calls_in_the_output_become_output_tools() -> None:
    call = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    text = f"Let me check.<tool_call>\n{call}\n</tool_call>"
    sample = Sample.from_text(text)
    assert sample.output_tools == [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    ]
    spec = load_grader(
        {"type": "string_check", "name": "tool", "operation": "eq",
         "input": "{{ sample.output_tools[0].function.name }}",
         "reference": "{{ item.reference_answer }}"}
    )  # fmt: skip
    assert grade(spec, sample, {"reference_answer": "get_weather"}).reward == 1.0
    assert Sample.from_text("<tool_call>not json</tool_call>").output_tools == []


def test_grpo_on_rows_with_tools(make_config: Any, read_lines: Any, tmp_path: Path) -> None:
    grader = {
        "type": "text_similarity",
        "name": "close",
        "evaluation_metric": "fuzzy_match",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.reference_answer }}",
    }
    out = tmp_path / "run"
    result = run(make_config(training_file=str(tools_file(tmp_path)), grader=grader), out)
    assert result.steps == 2
    assert read_lines(out)[-1]["step"] == 2
