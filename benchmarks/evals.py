"""An eval run through `openrft serve` against the sequential loop of chat and grader calls a
user would write for the same rows.

Models: the tiny random-weight Llama the tests build, and (unless `--quick`) the embedded default
`smollm2-135m-instruct` (converted once to `~/.cache/openrft/models/`). Rows: `--rows` arithmetic
questions (`{"question": "What is 12 + 5?", "answer": "17"}`), one `python` testing criterion
that passes when the reference answer appears in the output (`pass_threshold` 0.5), greedy
sampling (`temperature=0`, `max_completion_tokens=--max-tokens`, `seed=1`).

Ours: the official `openai` SDK against a real `openrft serve` (SQLite store, auth on, one
worker) on a free port: `evals.create` with a custom `item_schema` and the criterion, the rows
uploaded once as a JSONL file, then per round `evals.runs.create` with a `completions` data
source (the rows' templated `input_messages`, the model, the sampling params) polled until
`completed`; timed from `runs.create` to the first poll that reads `completed`. The worker
samples each chunk of 16 rows concurrently from its own model server and grades the chunk as one
batch in its sandboxed python-grader worker. A warm-up run of a few rows first starts that model
server and the grader's sandbox, so neither start is timed.
Anchor: the same rows, one after another, each a `client.chat.completions.create` against the
same server (same model, messages, params; its own model server, warmed up the same way) then a
`client.fine_tuning.alpha.graders.run` (`POST /v1/fine_tuning/alpha/graders/run`, OpenAI's run
grader call) with the same grader: `--rows` chat calls and `--rows` grader calls.
Both sides must agree: same pass count, same output text per row (greedy; a difference is
printed, and batched generation padding rows together may legitimately flip a near-tie token).

Goal: ours >= 3x the anchor's rows/s. Speed can only come from generating the chunk's rows
together (the model server batching concurrent requests) and from skipping the per-row HTTP
round trips; the grading itself is a few ms either way (`anchor split` prints where the
anchor's time goes). `floor` is the rows answered one at a time by `TransformersBackend.generate`
(the model server's code) in this process: what generation alone costs when it is serial, the
least any side can take unless rows are generated together; `ours' model server` reads the
worker's model server's `/health` batching counters (rows per `generate`). Rounds alternate
which side goes first. Both sides run torch with `--threads` CPU threads (default 1, as
benchmarks/chat.py).

Not measured: `ft:` models (a LoRA adapter over the base), the `jsonl` data source (no model
call), model graders, more than one worker. The rows file is uploaded with `purpose="evals"`,
as OpenAI's Evals guides do.

Run: `.venv/bin/python benchmarks/evals.py [--quick] [--rows 200] [--max-tokens 8] [--rounds 2]`
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.service.conftest import Server, jsonl

GOAL = 3.0
WARM_ROWS = 4
POLL_SECONDS = 0.05
PASS_THRESHOLD = 0.5
GRADER = {
    "type": "python",
    "name": "contains_answer",
    "source": (
        "def grade(sample, item):\n    return float(item['answer'] in sample['output_text'])\n"
    ),
    "pass_threshold": PASS_THRESHOLD,
}
ITEM_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
SYSTEM = "Answer with a number."
TEMPLATE = {
    "type": "template",
    "template": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "{{ item.question }}"},
    ],
}


@dataclass
class Side:
    """One side's timing of one round, and what it answered."""

    seconds: float
    passed: int
    texts: list[str]
    split: dict[str, float] = field(default_factory=dict)
    """Seconds per kind of call (the anchor's chat and grader calls)."""


def items(count: int) -> list[dict[str, str]]:
    return [{"question": f"What is {i} + {i % 7}?", "answer": str(i + i % 7)} for i in range(count)]


def anchor(client: openai.OpenAI, model: str, rows: list[dict[str, str]], tokens: int) -> Side:
    """The sequential loop: chat, then grade, row after row."""
    texts, passed, chat_s, grade_s = [], 0, 0.0, 0.0
    started = time.perf_counter()
    for item in rows:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": item["question"]},
        ]
        t0 = time.perf_counter()
        reply = client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_completion_tokens=tokens,
            seed=1,
        )
        text = reply.choices[0].message.content or ""
        t1 = time.perf_counter()
        result = client.fine_tuning.alpha.graders.run(
            grader=GRADER,  # type: ignore[arg-type]
            model_sample=text,
            item=item,
        )
        grade_s += time.perf_counter() - t1
        chat_s += t1 - t0
        texts.append(text)
        passed += result.reward >= PASS_THRESHOLD
    seconds = time.perf_counter() - started
    return Side(seconds, passed, texts, {"chat": chat_s, "grader": grade_s})


def floor(path: str, model: str, rows: list[dict[str, str]], tokens: int) -> float:
    """Seconds for `rows` generated one at a time in this process (after one warm-up row)."""
    from openrft.inference.backends import TransformersBackend
    from openrft.inference.schemas import ChatRequest

    backend = TransformersBackend(path)
    requests = [
        ChatRequest(
            model=model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
            temperature=0,
            max_completion_tokens=tokens,
            seed=1,
        )
        for q in (item["question"] for item in rows)
    ]
    backend.generate(requests[0])
    started = time.perf_counter()
    for request in requests:
        backend.generate(request)
    return time.perf_counter() - started


def batching(data_dir: Path, model: str) -> tuple[int, int] | None:
    """(`generate` calls, requests) so far of the worker's model server for `model`, from its
    `/health` (None when it reports no batching counters)."""
    for record in data_dir.glob("model-servers/worker-*/*.json"):
        port = json.loads(record.read_text())["port"]
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()
        if health.get("model") == model and "generate_calls" in health:
            return int(health["generate_calls"]), int(health["batched_requests"])
    return None


def data_source(model: str, source: dict[str, Any], tokens: int) -> dict[str, Any]:
    return {
        "type": "completions",
        "model": model,
        "input_messages": TEMPLATE,
        "sampling_params": {"temperature": 0, "max_completion_tokens": tokens, "seed": 1},
        "source": source,
    }


def eval_run(client: openai.OpenAI, eval_id: str, source: dict[str, Any], count: int) -> Side:
    """One eval run from `runs.create` until it reads `completed`; its output texts in row
    order (listed after the clock stops)."""
    started = time.perf_counter()
    run: Any = client.evals.runs.create(eval_id, data_source=source)  # type: ignore[arg-type]
    while run.status in ("queued", "in_progress"):
        time.sleep(POLL_SECONDS)
        run = client.evals.runs.retrieve(run.id, eval_id=eval_id)
    seconds = time.perf_counter() - started
    if run.status != "completed" or run.result_counts.total != count:
        raise RuntimeError(f"eval run {run.id} ended {run.status}: {run.error}")
    listed = client.evals.runs.output_items.list(run.id, eval_id=eval_id, limit=100)
    texts = dict.fromkeys(range(count), "")
    for output in listed:
        texts[output.datasource_item_id] = "".join(m.content or "" for m in output.sample.output)
    return Side(seconds, run.result_counts.passed, [texts[n] for n in range(count)])


def measure(
    server: Server,
    client: openai.OpenAI,
    model: str,
    path: str,
    file_id: str,
    args: argparse.Namespace,
) -> None:
    rows = items(args.rows)
    made = client.evals.create(
        name=f"bench {model}",
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA},
        testing_criteria=[GRADER],  # type: ignore[list-item]
    )
    warm = {"type": "file_content", "content": [{"item": i} for i in rows[:WARM_ROWS]]}
    started = time.perf_counter()
    eval_run(client, made.id, data_source(model, warm, args.max_tokens), WARM_ROWS)
    anchor(client, model, rows[:WARM_ROWS], args.max_tokens)
    load = time.perf_counter() - started
    uploaded = data_source(model, {"type": "file_id", "id": file_id}, args.max_tokens)
    before = batching(server.data_dir, model)
    rounds = []
    for n in range(args.rounds):
        if n % 2 == 0:
            base = anchor(client, model, rows, args.max_tokens)
            ours = eval_run(client, made.id, uploaded, len(rows))
        else:
            ours = eval_run(client, made.id, uploaded, len(rows))
            base = anchor(client, model, rows, args.max_tokens)
        rounds.append((base, ours))
    after = batching(server.data_dir, model)
    report(model, len(rows), load, rounds, floor(path, model, rows, args.max_tokens))
    if before and after:
        calls, requests = after[0] - before[0], after[1] - before[1]
        print(
            f"ours' model server: {requests} requests in {calls} `generate` calls"
            f" ({requests / max(calls, 1):.1f} per call)"
        )


def report(
    model: str, count: int, load: float, rounds: list[tuple[Side, Side]], serial: float
) -> None:
    print(
        f"\n{model}: {count} rows x {len(rounds)} rounds, greedy; warm-up (both model servers"
        f" start + load, {WARM_ROWS} rows each side) {load:.1f} s"
    )
    print(f"{'round':<7}{'anchor s':>10}{'ours s':>9}{'anchor rows/s':>15}{'ours rows/s':>13}")
    ratios = []
    for n, (base, ours) in enumerate(rounds, 1):
        ratios.append(base.seconds / ours.seconds)
        print(
            f"{n:<7}{base.seconds:>10.2f}{ours.seconds:>9.2f}"
            f"{count / base.seconds:>15.2f}{count / ours.seconds:>13.2f}"
            f"   ratio {ratios[-1]:.2f}x"
        )
    for n, (base, ours) in enumerate(rounds, 1):
        differ = sum(a != b for a, b in zip(base.texts, ours.texts, strict=True))
        same = "same" if base.passed == ours.passed else "DIFFERENT"
        print(
            f"round {n} check: passed {base.passed} (anchor) / {ours.passed} (ours): {same};"
            f" output text differs on {differ} of {count} rows"
        )
    split = {k: statistics.mean(b.split[k] for b, _ in rounds) for k in rounds[0][0].split}
    total = statistics.mean(b.seconds for b, _ in rounds)
    shares = ", ".join(f"{k} calls {v:.2f} s ({v / total:.0%})" for k, v in split.items())
    print(f"anchor split (mean of rounds): {shares}")
    mean = statistics.mean(o.seconds for _, o in rounds)
    print(
        f"floor (in-process generate, 1 at a time): {serial:.2f} s, {count / serial:.2f} rows/s;"
        f" ours / floor {mean / serial:.2f}, anchor / floor {total / serial:.2f}"
    )
    ratio = statistics.median(ratios)
    met = "meets" if ratio >= GOAL else "misses"
    print(f"ratio ours/anchor rows/s (median of rounds): {ratio:.2f}x")
    print(f"goal >= {GOAL:.0f}x: {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only, 32 rows, 1 round")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, both sides")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rounds = min(args.rows, 32), 1
    if args.rows < WARM_ROWS:
        parser.error(f"--rows must be at least {WARM_ROWS}")
    # Inherited by the server, its worker and their model servers (see benchmarks/chat.py).
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(
        f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]};"
        f" torch threads {args.threads}"
    )
    from openrft.training.models import build_tiny_model, resolve_model

    with tempfile.TemporaryDirectory(prefix="openrft-bench-") as tmp:
        root = Path(tmp)
        models = {"tiny": str(build_tiny_model(root / "tiny"))}
        if not args.quick:
            models["smollm2-135m-instruct"] = resolve_model("smollm2-135m-instruct")
        server = Server(root / "data", workers=1)
        try:
            for name, path in models.items():
                server.register_model(name, path)
            key = server.key("bench")
            with openai.OpenAI(
                base_url=server.base_url, api_key=key, max_retries=0, timeout=600
            ) as client:
                rows = [{"item": item} for item in items(args.rows)]
                uploaded = client.files.create(file=("rows.jsonl", jsonl(rows)), purpose="evals")
                for name, path in models.items():
                    measure(server, client, name, path, uploaded.id, args)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
