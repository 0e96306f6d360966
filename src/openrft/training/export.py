"""Export a checkpoint as a plain model: merge a LoRA adapter into its base weights.

`merge(checkpoint, out)` loads the base model named in the adapter's `adapter_config.json`
(resolving the embedded default through `models.py`, and merging in the earlier adapters of a
chained job, `models.load_causal_lm`), applies the adapter, merges it and writes a directory
that `AutoModelForCausalLM.from_pretrained` loads without peft. A full fine-tune checkpoint (no
adapter) is copied through `save_pretrained` unchanged. Finding the checkpoint of an `ft:` id
is the service's (`service.resources.checkpoint_path`). Nothing here trains.
"""

from __future__ import annotations

from pathlib import Path

from openrft.errors import ConfigError, Problem
from openrft.training.models import (
    ADAPTER_CONFIG,
    known_deprecations_silenced,
    load_causal_lm,
    resolve_model,
    tokenizer_source,
)


def merge(checkpoint: Path, out: Path, base_model: str | None = None) -> Path:
    """Write a merged, transformers-loadable model (and tokenizer) to `out`; returns `out`.
    `base_model`: load the adapter over this model instead of the one it names."""
    from transformers import AutoTokenizer

    has_adapter = (checkpoint / ADAPTER_CONFIG).exists()
    if not has_adapter and not (checkpoint / "config.json").exists():
        raise ConfigError([Problem(str(checkpoint), "not a checkpoint: no adapter or config")])
    if has_adapter and base_model is not None:
        from peft import PeftModel

        model = load_causal_lm(base_model)
        with known_deprecations_silenced():
            model = PeftModel.from_pretrained(model, str(checkpoint)).merge_and_unload()
        source = str(checkpoint) if (checkpoint / "tokenizer_config.json").exists() else base_model
    else:
        model = load_causal_lm(str(checkpoint))
        source = tokenizer_source(str(checkpoint))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_model(source)).save_pretrained(out)
    return out
