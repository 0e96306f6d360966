"""Python grader throughput: one persistent sandboxed worker per batch vs one sandboxed process
per sample, for a trivial grader and a rapidfuzz grader, in the same run.

Both sides use the same sandbox (every layer this machine has: bubblewrap, Landlock, seccomp,
cgroups, rlimits, unprivileged uid) and go through the same code; the anchor starts a fresh
locked-down worker for each sample and stops it afterwards.

Run: .venv/bin/python benchmarks/python_grader.py [--samples 20000] [--anchor-samples 20]
Goal: ≥ 1,000 samples/s for the trivial grader, ≥ 50× the per-process anchor.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from openrft.graders import GradeContext, Sample, grade_batch, load_grader
from openrft.graders.python_grader import limits_from
from openrft.graders.sandbox import POOL, SandboxWorker, detect_layers

GRADERS = {
    "trivial": (
        "def grade(sample, item):\n"
        "    return float(sample['output_text'] == item['reference_answer'])\n"
    ),
    "rapidfuzz": (
        "from rapidfuzz import fuzz\n"
        "def grade(sample, item):\n"
        "    return fuzz.ratio(sample['output_text'], item['reference_answer']) / 100\n"
    ),
}


def data(n: int) -> tuple[list[Sample], list[dict[str, str]]]:
    samples = [Sample.from_text(f"the answer is {i % 97}") for i in range(n)]
    items = [{"reference_answer": f"the answer is {i % 89}"} for i in range(n)]
    return samples, items


def batched(source: str, n: int) -> tuple[float, float]:
    """(samples/s warm, seconds for the first call including the worker's start)."""
    spec = load_grader({"type": "python", "name": "bench", "source": source})
    context = GradeContext(owner=f"bench-{uuid.uuid4().hex}")
    samples, items = data(n)
    started = time.perf_counter()
    grade_batch(spec, samples[:1], items[:1], context)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    results = grade_batch(spec, samples, items, context)
    elapsed = time.perf_counter() - started
    assert not results.failures(), results.failures()[0][1].errors.flags()
    return n / elapsed, cold


def per_process(source: str, n: int) -> float:
    """samples/s when every sample gets its own freshly started, locked-down worker."""
    layers, limits = detect_layers(), limits_from(GradeContext())
    samples, items = data(n)
    started = time.perf_counter()
    for sample, item in zip(samples, items, strict=True):
        worker = SandboxWorker(source, limits, layers)
        try:
            failure = worker.start()
            assert failure is None, failure
            payload = json.dumps({"sample": sample.namespace(), "item": item}).encode()
            (outcome,) = list(worker.stream([payload]))
            assert outcome.kind == "ok", outcome
        finally:
            worker.stop()
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--anchor-samples", type=int, default=20)
    args = parser.parse_args()
    layers = detect_layers()
    on = [name for name, active in layers.effective(limits_from(GradeContext())).items() if active]
    print(f"sandbox layers in force: {', '.join(on)}")
    print(f"{'grader':<10} {'batched/s':>10} {'first call':>11} {'per-process/s':>14} {'ratio':>8}")
    for name, source in GRADERS.items():
        rate, cold = batched(source, args.samples)
        anchor = per_process(source, args.anchor_samples)
        print(f"{name:<10} {rate:>10,.0f} {cold:>10.3f}s {anchor:>14.1f} {rate / anchor:>7.0f}x")
    POOL.close()


if __name__ == "__main__":
    main()
