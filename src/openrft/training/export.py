"""Export a checkpoint as a plain model: merge a LoRA adapter into its base weights.

`merge(checkpoint, out)` loads the base model named in the adapter's `adapter_config.json`
(resolving the embedded default through `models.py`), applies the adapter, merges it and writes a
directory that `AutoModelForCausalLM.from_pretrained` loads without peft. A full fine-tune
checkpoint (no adapter) is copied through `save_pretrained` unchanged. Nothing here trains.
"""

from __future__ import annotations

import json
from pathlib import Path

from openrft.errors import ConfigError, Problem
from openrft.training.models import known_deprecations_silenced, resolve_model


def merge(checkpoint: Path, out: Path, base_model: str | None = None) -> Path:
    """Write a merged, transformers-loadable model (and tokenizer) to `out`; returns `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_config = checkpoint / "adapter_config.json"
    if adapter_config.exists():
        from peft import PeftModel

        base = base_model or json.loads(adapter_config.read_text())["base_model_name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(resolve_model(base))
        with known_deprecations_silenced():
            model = PeftModel.from_pretrained(model, str(checkpoint)).merge_and_unload()
        tokenizer_source = checkpoint if (checkpoint / "tokenizer_config.json").exists() else base
    elif (checkpoint / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(checkpoint)
        tokenizer_source = checkpoint
    else:
        raise ConfigError([Problem(str(checkpoint), "not a checkpoint: no adapter or config")])
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_model(str(tokenizer_source))).save_pretrained(out)
    return out
