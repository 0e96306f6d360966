"""Structured output (`inference/structured.py`): constrained JSON and tool calls from a real
random-weight Llama over a real byte-level BPE tokenizer, built locally, driven through
transformers' `generate` with a batch that mixes constrained and free rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from openrft.inference.constrained import ConstrainedLogits, token_bytes
from openrft.inference.schemas import ChatRequest
from openrft.inference.structured import (
    StructuredOutputError,
    check,
    prepare,
    shows_tool_history,
)

CORPUS = [
    '{"name": "Ada", "age": 36, "tags": ["math", "code"], "ok": true, "score": null}',
    '{"city": "Paris", "unit": "celsius", "items": [{"id": 1}, {"id": 2}]}',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
    "What is the weather in Paris? It is sunny and 21 degrees. Zoë says héllo.",
    "system user assistant tool <tool_response> </tool_response>",
]
QWEN_LIKE = (  # takes tools and shows tool-call history, as Qwen2.5's template does
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
    "</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n'
    "</tool_call>{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHATML = (  # ignores tools and tool calls, as SmolLM2's template does
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
SCHEMAS = {
    "flat": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "mood": {"enum": ["happy", "sad"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        },
        "required": ["name", "age", "mood", "tags"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "user": {"$ref": "#/$defs/user"},
            "ok": {"type": "boolean"},
            "score": {"type": ["number", "null"]},
        },
        "required": ["user", "ok", "score"],
        "$defs": {
            "user": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "city": {"enum": ["Oslo", "Rome"]}},
                "required": ["id", "city"],
            }
        },
    },
}


def build_tokenizer(template: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|pad|>",  # special tokens, not passwords
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
    )
    tokenizer.chat_template = template
    tokenizer.padding_side = "left"
    return tokenizer


@pytest.fixture(scope="session")
def tiny_bpe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Llama over a byte-level BPE with a Qwen-like template, saved."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-bpe")
    tokenizer = build_tokenizer(QWEN_LIKE)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bpe(tiny_bpe_dir: Path) -> tuple[Any, Any]:
    """`(model, tokenizer)` loaded back from `tiny_bpe_dir`."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    loaded = AutoTokenizer.from_pretrained(tiny_bpe_dir)
    loaded.padding_side = "left"
    return LlamaForCausalLM.from_pretrained(tiny_bpe_dir).eval(), loaded


def request(**body: Any) -> ChatRequest:
    body.setdefault("messages", [{"role": "user", "content": "What is the weather in Paris?"}])
    return ChatRequest.model_validate({"model": "tiny", **body})


def generate(model: Any, tokenizer: Any, requests: list[ChatRequest], seed: int = 0) -> list[Any]:
    """One batched `generate` over `requests` (each one row); the finished choices."""
    import torch
    from transformers import LogitsProcessorList

    prepared = [prepare(r, tokenizer) for r in requests]
    rows = [p.constraint.start() if p.constraint else None for p in prepared]
    encoded = tokenizer([p.prompt for p in prepared], return_tensors="pt", padding=True)
    eos = tokenizer.eos_token_id
    torch.manual_seed(seed)
    with torch.no_grad():
        output = model.generate(
            **encoded,
            do_sample=True,
            max_new_tokens=300,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
            logits_processor=LogitsProcessorList([ConstrainedLogits(rows, eos)]),
        )
    choices = []
    for p, tokens in zip(
        prepared, output[:, encoded["input_ids"].shape[1] :].tolist(), strict=True
    ):
        ended = eos in tokens
        kept = tokens[: tokens.index(eos)] if ended else tokens
        text = tokenizer.decode(kept, skip_special_tokens=True)
        choices.append(p.choice(text, "stop" if ended else "length"))
    return choices


def json_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }


@pytest.mark.slow  # hundreds of decoding steps
def test_constrained_rows_match_their_schemas_and_free_rows_are_free(tiny_bpe: Any) -> None:
    model, tokenizer = tiny_bpe
    requests = [
        request(response_format=json_format(SCHEMAS["flat"])),
        request(),
        request(response_format=json_format(SCHEMAS["nested"])),
        request(response_format={"type": "json_object"}),
    ]
    flat, free, nested, anything = generate(model, tokenizer, requests)
    for choice, schema in ((flat, SCHEMAS["flat"]), (nested, SCHEMAS["nested"])):
        assert choice.finish_reason == "stop", choice.text
        jsonschema.validate(json.loads(choice.text), schema)
    assert anything.finish_reason == "stop"
    assert isinstance(json.loads(anything.text), dict)
    assert free.tool_calls is None
    with pytest.raises(json.JSONDecodeError):  # a random model left free does not write JSON
        json.loads(free.text)


@pytest.mark.slow  # hundreds of decoding steps
def test_required_and_named_tool_choice_give_valid_calls(tiny_bpe: Any) -> None:
    model, tokenizer = tiny_bpe
    tools = [WEATHER, ADD]
    requests = [
        request(tools=tools, tool_choice="required"),
        request(tools=tools, tool_choice={"type": "function", "function": {"name": "add"}}),
        request(tools=tools),  # auto: a random model does not call
    ]
    required, named, auto = generate(model, tokenizer, requests)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    for choice in (required, named):
        assert choice.finish_reason == "tool_calls"
        assert choice.text is None
        [call] = choice.tool_calls
        assert call["type"] == "function"
        assert call["id"].startswith("call_")
        jsonschema.validate(
            json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]]
        )
    assert named.tool_calls[0]["function"]["name"] == "add"
    assert auto.tool_calls is None
    assert auto.finish_reason in ("stop", "length")


def test_logits_processor_contract(tiny_bpe: Any) -> None:
    """First call masks without advancing; `None` rows untouched; eos only where final."""
    import torch

    _, tokenizer = tiny_bpe
    prepared = prepare(request(response_format=json_format({"enum": ["yes"]})), tokenizer)
    assert prepared.constraint is not None
    eos = tokenizer.eos_token_id
    processor = ConstrainedLogits([prepared.constraint.start(), None], [eos])
    vocab = len(tokenizer)
    scores = torch.zeros(2, vocab)
    first = processor(torch.zeros(2, 3, dtype=torch.long), scores.clone())
    allowed = torch.isfinite(first[0]).nonzero().flatten().tolist()
    assert allowed
    assert eos not in allowed
    assert all(tokenizer.decode([t]).startswith('"') for t in allowed)
    assert torch.equal(first[1], scores[1])
    whole = tokenizer.encode('"yes"', add_special_tokens=False)
    ids = torch.zeros(2, 3, dtype=torch.long)
    for token in whole:
        ids = torch.cat([ids, torch.tensor([[token], [token]])], dim=1)
        step = processor(ids, scores.clone())
    assert torch.isfinite(step[0]).nonzero().flatten().tolist() == [eos]  # eos forced
    ids = torch.cat([ids, torch.tensor([[eos], [eos]])], dim=1)
    after = processor(ids, scores.clone())  # past eos (padding): left alone
    assert torch.equal(after, scores)


def test_auto_reads_tool_call_blocks_and_bare_calls(tiny_bpe: Any) -> None:
    _, tokenizer = tiny_bpe
    prepared = prepare(request(tools=[WEATHER, ADD]), tokenizer)
    assert prepared.constraint is None
    text = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", '
        '"unit": "celsius"}}\n</tool_call>\n<tool_call>{"name": "add", "arguments": {"a": 1, '
        '"b": 2}}</tool_call>'
    )
    choice = prepared.choice(text, "stop")
    assert choice.finish_reason == "tool_calls"
    assert choice.text == "Let me check."
    names = [c["function"]["name"] for c in choice.tool_calls]
    assert names == ["get_weather", "add"]
    assert json.loads(choice.tool_calls[1]["function"]["arguments"]) == {"a": 1, "b": 2}
    bare = prepared.choice('{"name": "add", "arguments": {"a": 3, "b": 4}}', "stop")
    assert bare.text is None
    assert bare.tool_calls[0]["function"]["name"] == "add"
    unknown = '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>'
    assert prepared.choice(unknown, "stop").tool_calls is None
    assert prepared.choice("It is sunny.", "stop").text == "It is sunny."
    broken = prepared.choice('<tool_call>{"name": "add", "argu', "length")
    assert broken.finish_reason == "length"
    assert broken.tool_calls is None
    one = prepare(request(tools=[WEATHER, ADD], parallel_tool_calls=False), tokenizer)
    assert [c["function"]["name"] for c in one.choice(text, "stop").tool_calls] == ["get_weather"]


HISTORY = [
    {"role": "user", "content": "Weather in Oslo?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city": "Oslo", "unit": "celsius"}',
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "rainy, 7 degrees"},
    {"role": "tool", "tool_call_id": "call_2", "content": "windy"},
]


def test_tools_and_history_render_through_a_template_that_takes_them(tiny_bpe: Any) -> None:
    _, tokenizer = tiny_bpe
    assert shows_tool_history(tokenizer)
    prompt = prepare(request(messages=HISTORY, tools=[WEATHER]), tokenizer).prompt
    assert prompt.startswith("<|im_start|>system\n<tools>")
    assert '"name": "get_weather"' in prompt
    assert "The weather in a city." in prompt
    assert '"arguments": {"city": "Oslo", "unit": "celsius"}' in prompt
    assert "<|im_start|>tool\nrainy, 7 degrees" in prompt
    assert "# Tools" not in prompt
    none = prepare(request(messages=HISTORY, tools=[WEATHER], tool_choice="none"), tokenizer)
    assert "<tools>" not in none.prompt
    assert none.constraint is None


@pytest.mark.parametrize("template", [CHATML, None])
def test_tools_and_history_fall_back_to_text(template: str | None) -> None:
    tokenizer = build_tokenizer(CHATML)
    tokenizer.chat_template = template
    assert not shows_tool_history(tokenizer)
    prepared = prepare(
        request(messages=HISTORY, tools=[WEATHER], response_format={"type": "json_object"}),
        tokenizer,
    )
    prompt = prepared.prompt
    assert "# Tools" in prompt
    assert "<tools>\n" + json.dumps(WEATHER) in prompt
    assert "Answer with one JSON object" in prompt
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'
        in prompt
    )
    assert "<tool_response>\nrainy, 7 degrees\n</tool_response>\n<tool_response>\nwindy" in prompt
    assert prompt.count("<tool_response>\n") == 2
    assert "tool\n" not in prompt.replace("<tool", "")
    # auto with a JSON response_format: constrained to that JSON or one call
    assert prepared.constraint is not None
    call = '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}'
    assert prepared.choice(call, "stop").finish_reason == "tool_calls"
    assert prepared.choice('{"answer": 1}', "stop").text == '{"answer": 1}'


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"tool_choice": "required"}, "tool_choice", "only allowed when `tools`"),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_wether"}},
            },
            "tool_choice.function.name",
            "did you mean 'get_weather'",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name", "offered twice"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "string"}},
                    }
                ]
            },
            "tools[0].function.parameters.type",
            "JSON object schema",
        ),
        (
            {
                "tools": [
                    WEATHER,
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "properties": {"x": {"not": {}}}},
                        },
                    },
                ],
                "tool_choice": "required",
            },
            "tools[1].function.parameters",
            "cannot be used to constrain decoding",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "'json_schema'"),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "must be an object",
        ),
        (
            {"response_format": json_format({"type": "string", "format": "hostname"})},
            "response_format.json_schema.schema",
            "hostname is not supported",
        ),
    ],
)
def test_bad_inputs_name_their_path(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(StructuredOutputError) as caught:
        check(request(**body))
    assert caught.value.param == param
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    assert words in caught.value.message
    assert caught.value.message.startswith(param + ": ")


def test_malformed_tools_are_refused_by_request_validation() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        request(tools=[{"type": "function", "function": {"name": "has space"}}])
    assert caught.value.errors()[0]["loc"] == ("tools", 0, "function", "name")
    with pytest.raises(ValidationError):
        request(tools=[WEATHER], tool_choice="sometimes")


SAMPLES = ['{"name": "Zoë", "n": -12.5e3}\n\t', "héllo wörld ✓ 日本語 🙂", "  spaced\r\nlines"]


def test_byte_level_vocabulary_spells_text_back(tiny_bpe: Any) -> None:
    _, tokenizer = tiny_bpe
    spelled = token_bytes(tokenizer)
    assert tokenizer.eos_token_id not in spelled
    assert tokenizer.pad_token_id not in spelled
    for sample in SAMPLES:
        ids = tokenizer.encode(sample, add_special_tokens=False)
        assert b"".join(spelled[i] for i in ids) == sample.encode()


def test_sentencepiece_vocabulary_with_byte_fallback() -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "<s>", "</s>", "▁", "▁h", "llo", "{", '"', *"abcdefghijklmnopqrstuvwxyz"]
    vocab = {p: i for i, p in enumerate([*pieces, *(f"<0x{b:02X}>" for b in range(256))])}
    bpe = Tokenizer(
        models.BPE(vocab=vocab, merges=[("▁", "h")], byte_fallback=True, unk_token="<unk>")
    )
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    bpe.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    spelled = token_bytes(tokenizer)
    assert spelled[vocab["▁h"]] == b" h"
    assert spelled[vocab["<0xC3>"]] == b"\xc3"
    sample = '{"a é" hi'
    ids = tokenizer.encode(sample, add_special_tokens=False)
    assert vocab["<0xC3>"] in ids
    assert b"".join(spelled[i] for i in ids) == sample.encode()


@pytest.mark.slow
def test_default_model_vocabulary_and_json_object_constraint() -> None:
    """The embedded default (SmolLM2-135M-Instruct): its byte-level vocabulary spells text back,
    and its tokenizer builds the generic JSON object constraint (seconds: a large index)."""
    from transformers import AutoTokenizer

    from openrft.errors import MissingResourceError
    from openrft.training.models import resolve_model

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    except MissingResourceError as exc:  # not installed here: nothing to check
        pytest.skip(f"the default model is not available: {exc}")
    spelled = token_bytes(tokenizer)
    assert len(spelled) > 49_000
    for sample in SAMPLES:
        ids = tokenizer.encode(sample, add_special_tokens=False)
        assert b"".join(spelled[i] for i in ids) == sample.encode()
    prepared = prepare(request(response_format={"type": "json_object"}), tokenizer)
    assert prepared.constraint is not None
    state = prepared.constraint.start()
    for token in tokenizer.encode('{"a": [1, null], "b": {"c": "d"}}', add_special_tokens=False):
        assert not state.done
        state.advance(token)
    assert state.final


def test_a_forced_call_is_the_whole_answer(tiny_bpe: Any) -> None:
    _, tokenizer = tiny_bpe
    body = {"tools": [WEATHER], "response_format": json_format(SCHEMAS["flat"])}
    forced = prepare(request(tool_choice="required", **body), tokenizer)
    assert "Answer with one JSON object" not in forced.prompt
    assert forced.plan.regex is not None
    assert forced.plan.regex.startswith('\\{[ ]?"name"[ ]?:[ ]?"get_weather"')
    auto = prepare(request(**body), tokenizer)
    assert "Answer with one JSON object" in auto.prompt


def test_importing_does_not_import_torch() -> None:
    code = (
        "import sys, openrft.inference.structured, openrft.inference.schemas\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow  # a model server and hundreds of decoding steps
def test_model_server_answers_tool_calls_and_refuses_bad_schemas(
    tiny_bpe_dir: Path, tiny_llama: Path
) -> None:
    """Through `serve-model`'s app and the `openai` SDK: a forced call comes back as
    `tool_calls`; a schema that cannot be compiled, or a vocabulary that cannot spell JSON (the
    word-level tokenizer has no quotes), is a 400 naming `response_format`."""
    import openai

    from openrft.inference.app import create_app
    from openrft.inference.backends import TransformersBackend
    from openrft.inference.local import serve_in_thread

    messages: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    with serve_in_thread(create_app(TransformersBackend(tiny_bpe_dir, max_tokens=300))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        reply = client.chat.completions.create(
            model="tiny", messages=messages, tools=[WEATHER], tool_choice="required", seed=1
        )
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(
                model="tiny",
                messages=messages,
                response_format=json_format({"not": {"type": "string"}}),  # type: ignore[arg-type]
            )
        client.close()
    [call] = reply.choices[0].message.tool_calls or []
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    assert bad.value.param == "response_format.json_schema.schema"
    with serve_in_thread(create_app(TransformersBackend(tiny_llama))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        with pytest.raises(openai.BadRequestError) as unspellable:
            client.chat.completions.create(
                model="tiny",
                messages=messages,
                response_format=json_format(SCHEMAS["flat"]),  # type: ignore[arg-type]
            )
        client.close()
    assert unspellable.value.param == "response_format"
    assert "cannot constrain decoding with this model's vocabulary" in unspellable.value.message
    assert "missing tokens" in unspellable.value.message
