"""Seconds per GRPO step and peak memory: shared-prefix scoring and bf16 against bare TRL.

Each lever is measured on its own and combined, against bare TRL `GRPOTrainer` on the same
`GRPOConfig` (built by `openrft.training.config.build_grpo_config`: LoRA r16 on q,k,v,o, lr 2e-4,
no gradient checkpointing, generation every step) and the same prompts:

- **trl**: `trl.GRPOTrainer`, fp32, one row per completion (the anchor);
- **sharing**: ours (`build_grpo_trainer`) with `prefix_sharing: true`, `bf16: false` — exact,
  so this is the speed-up that costs nothing in numerics;
- **bf16**: ours with `prefix_sharing: false`, `bf16: true` (autocast, the frozen LoRA base
  stored in bf16, fp32 master weights for the adapter);
- **both**: ours with both on (what `auto` gives a LoRA run on a CPU with AVX512-BF16 or AMX).

Shapes (`--shapes`):

- **demo**: the embedded SmolLM2-135M-Instruct, the demo's prompts (~45 tokens with the chat
  template's system turn), 16-token completions, 4 prompts × 8 generations;
- **long**: SmolLM2, a 512-token prompt (a document and a question), 32-token completions,
  2 prompts × 8 generations;
- **tiny**: the tiny random-weight Llama (hidden 64), 24-token completions, 4 × 8.

Every run is its own subprocess (so peak memory is that run's), and rounds alternate the
variants so load on this shared machine hits all alike. A step's time is the gap between
consecutive `on_step_begin` calls, the first (warm-up) left out; the median step is reported,
with the median time of its sampling (`_generate_and_score_completions`: generation, grading and
any no-grad pass) beside it.
Peak memory is the process's peak resident set while training, above its resident set just
before (`VmHWM` after resetting it through `/proc/self/clear_refs`; Linux).

Run: .venv/bin/python benchmarks/prefix_sharing.py [--shapes demo,long,tiny] [--steps 5]
[--rounds 1] [--variants trl,sharing,bf16,both]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

VARIANTS = {
    "trl": None,
    "sharing": {"prefix_sharing": True, "bf16": False},
    "bf16": {"prefix_sharing": False, "bf16": True},
    "both": {"prefix_sharing": True, "bf16": True},
}
SHAPES: dict[str, dict[str, Any]] = {
    "demo": {"max_completion_length": 16, "batch_size": 4, "prompt": "sums"},
    "long": {"max_completion_length": 32, "batch_size": 2, "prompt": "document"},
    "tiny": {"max_completion_length": 24, "batch_size": 4, "prompt": "sums"},
}
GRADER = {
    "type": "string_check",
    "name": "has_digit_one",
    "input": "{{ sample.output_text }}",
    "reference": "1",
    "operation": "like",
}


def reward(completions: list[Any], **_: Any) -> list[float]:
    """The anchor's reward: the same numbers as `GRADER`."""
    return [float("1" in c[0]["content"]) for c in completions]


def messages(kind: str, tokenizer: Any, index: int) -> list[dict[str, str]]:
    a, b = index // 10 + 1, index % 10 + 1
    if kind == "sums":
        return [{"role": "user", "content": f"What is {a} + {b}?"}]
    facts = " ".join(
        f"Item {k} of the ledger weighs {(k * 37 + a) % 97} grams." for k in range(400)
    )
    head = tokenizer(facts, add_special_tokens=False)["input_ids"]
    question = f"\nHow much does item {b} weigh?"
    budget = 512 - _chat_tokens(tokenizer, [{"role": "user", "content": question}])
    text = tokenizer.decode(head[: max(budget, 0)]) + question
    return [{"role": "user", "content": text}]


def _chat_tokens(tokenizer: Any, chat: list[dict[str, str]]) -> int:
    encoded = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)
    return len(encoded["input_ids"])


def worker(shape: str, variant: str, steps: int, model_dir: str, out: Path) -> dict[str, Any]:
    """One run: train `steps` steps; return step seconds, peak memory and prompt length."""
    from transformers import AutoTokenizer, TrainerCallback

    from openrft.training.config import TrainingConfig
    from openrft.training.models import known_deprecations_silenced, tokenizer_source

    settings = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(model_dir))
    rows = [messages(settings["prompt"], tokenizer, i) for i in range(64)]
    prompt_tokens = _chat_tokens(tokenizer, rows[0])
    config = TrainingConfig.model_validate(
        {
            "model": model_dir,
            "training_file": "unused.jsonl",
            "grader": GRADER,
            "max_steps": steps,
            "num_generations": 8,
            "batch_size": settings["batch_size"],
            "max_completion_length": settings["max_completion_length"],
            "eval_interval": None,
            "eval_samples": 1,
            "n_checkpoints": 1,
            **(VARIANTS[variant] or {"prefix_sharing": False, "bf16": False}),
        }
    )

    class Clock(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.begins: list[float] = []
            self.resident = 0

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set
            self.resident = _status("VmRSS")

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.begins.append(time.perf_counter())

    clock = Clock()
    with known_deprecations_silenced():
        if variant == "trl":
            trainer = _anchor(config, tokenizer, rows, out)
        else:
            trainer = _ours(config, tokenizer, rows, out)
        trainer.add_callback(clock)
        sampling = _time_sampling(trainer)
        trainer.train()
    gaps = [b - a for a, b in zip(clock.begins, clock.begins[1:], strict=False)][1:]
    return {
        "seconds": statistics.median(gaps),
        "sampling": statistics.median(sampling[1:]),
        "peak_mib": (_status("VmHWM") - clock.resident) / 1024,
        "prompt_tokens": prompt_tokens,
    }


def _ours(config: Any, tokenizer: Any, rows: list[Any], out: Path) -> Any:
    from openrft.graders.context import GradeContext
    from openrft.training.callbacks import build_run_callback
    from openrft.training.evaluate import build_evaluator
    from openrft.training.grpo import build_grpo_trainer, load_model
    from openrft.training.records import Row
    from openrft.training.rewards import GraderReward

    model, tokenizer = load_model(config)
    data = [Row(messages=m, item={}) for m in rows]
    grader = GraderReward(config.grader, GradeContext(), group_size=config.num_generations)
    evaluator = build_evaluator(config, model, tokenizer, data[:1], grader)
    callback = build_run_callback(config, out, grader, evaluator)
    return build_grpo_trainer(config, model, tokenizer, data, grader, callback, out)


def _anchor(config: Any, tokenizer: Any, rows: list[Any], out: Path) -> Any:
    from datasets import Dataset
    from peft import get_peft_model
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from openrft.training.config import build_grpo_config, build_lora_config
    from openrft.training.models import load_causal_lm

    model = get_peft_model(load_causal_lm(config.model), build_lora_config(config.lora))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=build_grpo_config(config, out / "checkpoints", len(rows)),
        train_dataset=Dataset.from_list([{"prompt": m} for m in rows]),
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def _time_sampling(trainer: Any) -> list[float]:
    """Seconds of each `_generate_and_score_completions` call (sampling, grading, the no-grad
    passes), timed the same way on both sides."""
    seconds: list[float] = []
    inner = trainer._generate_and_score_completions

    def timed(inputs: Any) -> Any:
        started = time.perf_counter()
        try:
            return inner(inputs)
        finally:
            seconds.append(time.perf_counter() - started)

    trainer._generate_and_score_completions = timed
    return seconds


def _status(field: str) -> int:
    """A `/proc/self/status` field in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def model_for(shape: str, base: Path) -> str:
    from openrft.training.config import DEFAULT_MODEL
    from openrft.training.models import build_tiny_model, resolve_model

    if shape == "tiny":
        return str(build_tiny_model(base / "tiny", hidden=64))
    return str(resolve_model(DEFAULT_MODEL))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="demo,long,tiny")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="trl always runs")
    parser.add_argument("--worker", nargs=4, metavar=("SHAPE", "VARIANT", "MODEL", "OUT"))
    opts = parser.parse_args()
    if opts.steps < 3:  # a step's time is a gap between steps, and the first gap is warm-up
        parser.error("--steps: at least 3 (the first step's time is left out as warm-up)")
    asked = opts.variants.split(",")
    unknown = sorted(set(asked) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    chosen = ["trl", *(v for v in VARIANTS if v in asked and v != "trl")]
    unknown = sorted(set(opts.shapes.split(",")) - set(SHAPES))
    if unknown:
        parser.error(f"--shapes: unknown {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    warnings.filterwarnings("ignore")
    if opts.worker:
        shape, variant, model, out = opts.worker
        print(json.dumps(worker(shape, variant, opts.steps, model, Path(out))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for shape in opts.shapes.split(","):
            model = model_for(shape, Path(tmp))
            results: dict[str, list[dict[str, Any]]] = {v: [] for v in chosen}
            for round_ in range(opts.rounds):
                for variant in chosen:
                    out = Path(tmp) / f"{shape}-{variant}-{round_}"
                    command = [sys.executable, __file__, "--steps", str(opts.steps)]
                    command += ["--worker", shape, variant, model, str(out)]
                    done = subprocess.run(command, capture_output=True, text=True, check=False)
                    if done.returncode:
                        sys.exit(f"{shape}/{variant} failed:\n{done.stderr[-3000:]}")
                    results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
            report(shape, results)


def report(shape: str, results: dict[str, list[dict[str, Any]]]) -> None:
    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    anchor_s, anchor_mib = median("trl", "seconds"), median("trl", "peak_mib")
    prompt = results["trl"][0]["prompt_tokens"]
    print(f"{shape} ({prompt}-token prompt, {SHAPES[shape]['max_completion_length']} new tokens)")
    for variant in results:
        seconds, mib = median(variant, "seconds"), median(variant, "peak_mib")
        sampling = median(variant, "sampling")
        print(
            f"  {variant:8s} {seconds:7.2f} s/step ({sampling:6.2f} sampling)  "
            f"{anchor_s / seconds:5.2f}x faster  "
            f"peak +{mib:7.0f} MiB ({mib / anchor_mib:4.2f}x of TRL's)",
            flush=True,
        )


if __name__ == "__main__":
    main()
