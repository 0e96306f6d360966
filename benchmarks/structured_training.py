"""What `response_format` costs while training on CPU: seconds per GRPO step with the JSON-schema
constraint against the same job without it (the anchor), and the mask's own cost per token.

Both sides are `openrft.training.grpo.build_grpo_trainer` on the same tiny random-weight Llama
(built locally; 4 prompts × 8 generations, ≤ 24 new tokens, LoRA r16 on q,k,v,o): **constrained**
has `response_format` `{"answer": 1|2|3}` (every row ends inside the limit), **anchor** has none.
A step's time is the gap between consecutive `on_step_begin` calls, the first step left out,
in CPU seconds of this process with one torch thread (wall time on this shared 2-core machine
swings several-fold with other work). Rounds alternate; the headline is the median of the
per-round ratios. The two sides sample different texts: constrained rows end after ~10 tokens,
a random model's free rows run to the limit, so that ratio is the job's cost, not the mask's.
The mask's cost is measured apart: one `ConstrainedLogits` call on 32 rows (a step's batch)
against one forward of the same 32 rows through the model, with `--vocab-model DIR` for a real
vocabulary (SmolLM2's 49k: `~/.cache/openrft/models/SmolLM2-135M-Instruct`).

Run: .venv/bin/python benchmarks/structured_training.py [--steps 10] [--rounds 3]
     [--vocab-model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from openrft.inference import constrained
from openrft.training.callbacks import build_run_callback
from openrft.training.config import TrainingConfig
from openrft.training.constrained_generation import schema_processors, schema_regex
from openrft.training.evaluate import build_evaluator
from openrft.training.grpo import build_grpo_trainer, load_model
from openrft.training.models import build_tiny_model, known_deprecations_silenced
from openrft.training.rewards import GraderReward
from training import GRADER, rows  # type: ignore[import-not-found]

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": [1, 2, 3]}},
    "required": ["answer"],
    "additionalProperties": False,
}
ROWS = 32
"""Rows of one step's generate: 4 prompts × 8 generations."""


class CpuStepClock(TrainerCallback):
    def __init__(self) -> None:
        self.begins: list[float] = []

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        self.begins.append(time.process_time())

    def step_seconds(self) -> list[float]:
        gaps = [b - a for a, b in zip(self.begins, self.begins[1:], strict=False)]
        return gaps[1:]  # drop the warm-up step; the last step has no following begin


def step_seconds(config: TrainingConfig, out: Path) -> float:
    model, tokenizer = load_model(config)
    reward = GraderReward(config.grader or GRADER, response_format=config.response_format)
    evaluator = build_evaluator(config, model, tokenizer, rows()[:4], reward)
    callback = build_run_callback(config, out, reward, evaluator)
    trainer = build_grpo_trainer(config, model, tokenizer, rows(), reward, callback, out)
    clock = CpuStepClock()
    trainer.add_callback(clock)
    trainer.train()
    return statistics.median(clock.step_seconds())


def mask_against_forward(model_dir: str, repeats: int) -> None:
    """CPU seconds of one mask call and of one forward, both over `ROWS` rows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    found = constrained.constraint(tokenizer, schema_regex(SCHEMA))
    ids = tokenizer(["What is 3 + 4?"] * ROWS, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        scores = model(ids).logits[:, -1, :]
        # a forward of one new token per row against a cached prompt: what decoding repeats
        cache = model(ids, use_cache=True).past_key_values
        started = time.process_time()
        for _ in range(repeats):
            model(ids[:, -1:], past_key_values=cache, use_cache=True)
            cache.crop(-1)  # drop the token again: every repeat decodes the same position
        forward = (time.process_time() - started) / repeats
    eos = tokenizer.eos_token_id
    processors = schema_processors(found, ROWS, eos)
    processors(ids, scores)  # the first call sees the prompt; from the second the rows advance
    started = time.process_time()
    for _ in range(repeats):
        processor = schema_processors(found, ROWS, eos)[0]
        processor(ids, scores)
        processor(ids[:, :1] * 0 + tokenizer.convert_tokens_to_ids("{"), scores)
    mask = (time.process_time() - started) / (2 * repeats)
    vocab = len(tokenizer)
    print(
        f"{vocab}-token vocabulary, {ROWS} rows: mask {mask * 1e3:.2f} ms, one-token forward "
        f"{forward * 1e3:.2f} ms per decoding step; mask/forward {mask / forward:.3f}"
    )


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vocab-model", default=None, help="a model dir with a real vocabulary")
    opts = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # CPU seconds stay comparable under other load
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        model = build_tiny_model(base / "model", hidden=64)
        settings: dict[str, Any] = {
            "model": str(model),
            "training_file": "unused.jsonl",
            "grader": GRADER,
            "max_steps": opts.steps,
            "batch_size": 4,
            "num_generations": 8,
            "max_completion_length": 24,
            "eval_interval": None,
            "eval_samples": 4,
            "n_checkpoints": 1,
        }
        anchor_config = TrainingConfig.model_validate(settings)
        config = TrainingConfig.model_validate({**settings, "response_format": SCHEMA})
        ratios = []
        for i in range(opts.rounds):
            with known_deprecations_silenced():
                ours = step_seconds(config, base / f"ours-{i}")
                anchor = step_seconds(anchor_config, base / f"anchor-{i}")
            ratios.append(ours / anchor)
            print(
                f"round {i + 1}: constrained {ours:.3f} CPU s/step, free {anchor:.3f} CPU "
                f"s/step, ratio {ours / anchor:.3f}",
                flush=True,
            )
        print(f"median of round ratios {statistics.median(ratios):.3f}")
        mask_against_forward(str(model), 50)
        if opts.vocab_model:
            mask_against_forward(str(Path(opts.vocab_model).expanduser()), 10)


if __name__ == "__main__":
    main()
