"""Chat completions through `openrft serve` against transformers `generate` in this process.

Models: the tiny random-weight Llama the tests build, and (unless `--quick`) the embedded default
`smollm2-135m-instruct` (converted once to `~/.cache/openrft/models/`). Every request is greedy
(`temperature=0`) with the same `max_tokens`, one of `--requests` different arithmetic prompts.

1. Latency at 1 client. Anchor: transformers' `model.generate`, one request at a time, in this
   process on the same `ChatRequest`s (`TransformersBackend(continuous=False).generate`: the
   same prompt rendering, one `generate` call each). Ours: the official `openai` SDK against a
   real `openrft serve` (SQLite store, auth on) on a free port, which resolves the model in the
   key's project and proxies to its model-server subprocess (warmed up first: its start and
   model load are not timed). Goal: ours/anchor <= 1.2x.
2. Throughput. The same requests sent by 8 concurrent clients (`AsyncOpenAI`) against sent one at
   a time. Goal: >= 3x, from continuous batching (`inference/continuous.py`): the model server
   decodes every running request one token a step over one KV cache, a request joins the batch
   as soon as a row is free, and its prefill starts after the longest prompt prefix it shares
   with a recent request (here the chat template and SmolLM2's system prompt).

Both sides run torch with `--threads` CPU threads (default 1, see `main`). Requests are measured
in `--rounds` rounds (anchor and ours alternating request by request) after every prompt has
been sent once to each side.

Measured 2026-12-01 on a shared 2-core box with continuous batching (docs/benchmarks.md,
"Chat completions", run F, 64 requests): 8 clients / 1 client 3.63x on the tiny model, 2.71x on
SmolLM2-135M (goal missed: each request's prefill is compute-bound on a CPU and costs the same
at 1 client); latency at 1 client 0.94x on SmolLM2-135M (the cached system prompt), 1.07x on
the tiny model.

Run: `.venv/bin/python benchmarks/chat.py [--quick] [--requests 64] [--max-tokens 32] [--rounds 3]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.service.conftest import Server

from openrft.inference.backends import TransformersBackend
from openrft.inference.schemas import ChatRequest

CLIENTS = 8
GOAL_OVERHEAD = 1.2
GOAL_THROUGHPUT = 3.0
Run = tuple[list[float], int]
"""Per-request seconds, completion tokens in all."""
Call = Callable[[dict[str, Any]], int]


def bodies(model: str, count: int, max_tokens: int) -> list[dict[str, Any]]:
    return [
        {
            "model": model,
            "messages": [{"role": "user", "content": f"What is {i} + {i % 7}? Answer briefly."}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        for i in range(count)
    ]


def paired(calls: tuple[Call, Call], requests: list[dict[str, Any]]) -> tuple[Run, Run]:
    """Per-request seconds of each of `calls` (which return completion tokens), alternating
    request by request, so that load from other jobs on the machine hits both alike."""
    runs: tuple[Run, Run] = (([], 0), ([], 0))
    for body in requests:
        measured = []
        for call, (times, tokens) in zip(calls, runs, strict=True):
            started = time.perf_counter()
            tokens += call(body)
            times.append(time.perf_counter() - started)
            measured.append((times, tokens))
        runs = (measured[0], measured[1])
    return runs


async def concurrent(base_url: str, key: str, requests: list[dict[str, Any]]) -> float:
    """Wall seconds for `requests` sent by `CLIENTS` clients, each taking the next one."""
    queue = list(reversed(requests))
    async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0) as client:

        async def worker() -> None:
            while queue:
                await client.chat.completions.create(**queue.pop())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        return time.perf_counter() - started


def measure(server: Server, key: str, name: str, path: str, args: argparse.Namespace) -> None:
    """`--rounds` rounds of: anchor and ours at 1 client (alternating), then ours at 8 clients,
    on the same requests."""
    requests = bodies(name, args.requests, args.max_tokens)
    backend = TransformersBackend(path, continuous=False)  # one `model.generate` a request

    def generate(body: dict[str, Any]) -> int:
        return backend.generate(ChatRequest(**body)).completion_tokens

    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=600) as c:

        def chat(body: dict[str, Any]) -> int:
            reply = c.chat.completions.create(**body)
            return reply.usage.completion_tokens if reply.usage else 0

        started = time.perf_counter()
        chat(requests[0])  # starts the model server and loads the model
        load = time.perf_counter() - started
        paired((generate, chat), requests)  # warm-up: every prompt once on each side
        rounds = []
        for _ in range(args.rounds):
            base, ours = paired((generate, chat), requests)
            wall = asyncio.run(concurrent(server.base_url, key, requests))
            rounds.append((base, ours, wall))
    report(name, load, rounds)


def report(name: str, load: float, rounds: list[tuple[Run, Run, float]]) -> None:
    base = [t for r in rounds for t in r[0][0]]
    ours = [t for r in rounds for t in r[1][0]]
    count, tokens = len(rounds[0][1][0]), rounds[0][1][1]
    walls = [r[2] for r in rounds]
    print(
        f"\n{name}: {count} requests x {len(rounds)} rounds, greedy, {tokens} completion tokens"
        f" per round ({rounds[0][0][1]} in-process); first request (server start + load)"
        f" {load:.1f} s"
    )
    print(f"{'path':<44}{'p50 ms':>9}{'mean ms':>9}{'req/s':>8}")
    rows: tuple[tuple[str, list[float], float], ...] = (
        ("in-process generate, 1 at a time (anchor)", base, sum(base)),
        ("openrft serve, 1 client", ours, sum(ours)),
        (f"openrft serve, {CLIENTS} concurrent clients", [], sum(walls)),
    )
    for label, times, total in rows:
        p50 = f"{statistics.median(times) * 1000:.1f}" if times else "-"
        mean = f"{statistics.mean(times) * 1000:.1f}" if times else "-"
        print(f"{label:<44}{p50:>9}{mean:>9}{count * len(rounds) / total:>8.1f}")
    overhead = statistics.mean(ours) / statistics.mean(base)
    median_overhead = statistics.median(ours) / statistics.median(base)
    speedup = sum(ours) / sum(walls)
    print(
        f"ratio ours/anchor latency at 1 client: {overhead:.2f}x mean, {median_overhead:.2f}x p50"
    )
    print(f"ratio {CLIENTS} clients / 1 client throughput: {speedup:.2f}x")
    met = "meets" if overhead <= GOAL_OVERHEAD else "misses"
    print(f"goal latency overhead <= {GOAL_OVERHEAD}x (mean): {met}")
    met = "meets" if speedup >= GOAL_THROUGHPUT else "misses"
    print(f"goal throughput >= {GOAL_THROUGHPUT:.0f}x: {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only, 8 requests")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, both sides")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = min(args.requests, 8), 1
    # Inherited by the model servers. With 2 threads on a shared 2-core box, a descheduled
    # thread stalls the other at every op: single requests then vary 10x from one to the next.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(
        f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]};"
        f" torch threads {args.threads}"
    )
    import torch

    from openrft.training.models import build_tiny_model, resolve_model

    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="openrft-bench-") as tmp:
        root = Path(tmp)
        models = {"tiny": str(build_tiny_model(root / "tiny"))}
        if not args.quick:
            models["smollm2-135m-instruct"] = resolve_model("smollm2-135m-instruct")
        server = Server(root / "data")
        try:
            for name, path in models.items():
                server.register_model(name, path)
            key = server.key("bench")
            for name, path in models.items():
                measure(server, key, name, path, args)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
