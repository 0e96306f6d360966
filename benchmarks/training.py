"""Seconds per GRPO step: `openrft train`'s trainer against bare TRL `GRPOTrainer`.

Both sides train the same tiny random-weight Llama (built locally) with the same `GRPOConfig`
(built by `openrft.training.config.build_grpo_config`: 4 prompts × 8 generations, ≤ 24 new
tokens, LoRA r16 on q,k,v,o, no gradient checkpointing) on the same prompts, in the same process:

- **ours**: `openrft.training.grpo.build_grpo_trainer` — the grader tree (a `multi` of two
  `string_check`s) through `rewards.py`, plus the `RunCallback` (metrics.jsonl, timing, progress
  bookkeeping) and the sampling timer;
- **anchor**: `trl.GRPOTrainer` with a hand-written reward computing the same numbers
  (`0.5 * ("1" in text) + 0.5 * ("e" in text)`), no callbacks of ours.

A step's time is the gap between consecutive `on_step_begin` calls (so it includes everything
the step does: sampling, grading, the update, our logging). The first step (warm-up) and the last
(ours evaluates and saves a checkpoint there, by design) are left out. Rounds alternate
ours/anchor so machine load hits both alike; the median step of each round is reported, and the
headline is the median of the per-round ratios (a load burst on this shared box skews one round,
not the result).

Run: .venv/bin/python benchmarks/training.py [--steps 24] [--rounds 5]
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

from openrft.training.callbacks import build_run_callback
from openrft.training.config import TrainingConfig, build_grpo_config, build_lora_config
from openrft.training.evaluate import build_evaluator
from openrft.training.grpo import build_grpo_trainer, load_model
from openrft.training.models import build_tiny_model, known_deprecations_silenced
from openrft.training.records import Row, grpo_records
from openrft.training.rewards import GraderReward

GRADER = {
    "type": "multi",
    "name": "total",
    "calculate_output": "0.5 * has_one + 0.5 * has_e",
    "graders": {
        key: {
            "type": "string_check",
            "name": key,
            "input": "{{ sample.output_text }}",
            "reference": ref,
            "operation": "like",
        }
        for key, ref in (("has_one", "1"), ("has_e", "e"))
    },
}


def hand_written_reward(completions: list[Any], **_: Any) -> list[float]:
    texts = [c[0]["content"] for c in completions]
    return [0.5 * ("1" in t) + 0.5 * ("e" in t) for t in texts]


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.begins: list[float] = []

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        self.begins.append(time.perf_counter())

    def step_seconds(self) -> list[float]:
        gaps = [b - a for a, b in zip(self.begins, self.begins[1:], strict=False)]
        return gaps[1:]  # drop the warm-up step; the last step has no following begin


def rows() -> list[Row]:
    return [
        Row(
            messages=[{"role": "user", "content": f"What is {a} + {b}?"}],
            item={"reference_answer": str(a + b)},
        )
        for a in range(1, 11)
        for b in range(1, 11)
    ]


def run_ours(config: TrainingConfig, out: Path) -> list[float]:
    model, tokenizer = load_model(config)
    reward = GraderReward(config.grader or GRADER)
    evaluator = build_evaluator(config, model, tokenizer, rows()[:4], reward)
    callback = build_run_callback(config, out, reward, evaluator)
    trainer = build_grpo_trainer(config, model, tokenizer, rows(), reward, callback, out)
    clock = StepClock()
    trainer.add_callback(clock)
    trainer.train()
    return clock.step_seconds()


def run_anchor(config: TrainingConfig, out: Path) -> list[float]:
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    model = AutoModelForCausalLM.from_pretrained(config.model)
    assert config.lora is not None
    model = get_peft_model(model, build_lora_config(config.lora))
    args = build_grpo_config(config, out / "checkpoints", 100)
    records = [{"prompt": r["prompt"]} for r in grpo_records(rows())]
    clock = StepClock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=hand_written_reward,
        args=args,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # as ours does: no per-step printing on either side
    trainer.train()
    return clock.step_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        model = build_tiny_model(base / "model", hidden=64)
        config = TrainingConfig.model_validate(
            {
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
        )
        table = []
        for i in range(opts.rounds):
            with known_deprecations_silenced():
                ours = statistics.median(run_ours(config, base / f"ours-{i}"))
                anchor = statistics.median(run_anchor(config, base / f"anchor-{i}"))
            table.append((i + 1, ours, anchor))
            print(
                f"round {i + 1}: ours {ours:.3f} s/step, bare TRL {anchor:.3f} s/step, "
                f"ratio {ours / anchor:.3f}",
                flush=True,
            )
    ours_all = statistics.median(t[1] for t in table)
    anchor_all = statistics.median(t[2] for t in table)
    ratio = statistics.median(t[1] / t[2] for t in table)
    print(
        f"median: ours {ours_all:.3f} s/step, bare TRL {anchor_all:.3f} s/step; "
        f"median of round ratios {ratio:.3f} (goal <= 1.05)"
    )


if __name__ == "__main__":
    main()
