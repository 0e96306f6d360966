"""Model grader throughput: 64 judge calls to a local judge that takes ~100 ms per answer.

The judge is `openrft serve-model --scripted` in its own process (real HTTP, 100 ms simulated
latency). Anchor: the same 64 chat completion requests sent one after another with a plain
httpx client (what a simple reward function does). Ours: `grade_batch` on a `score_model` spec,
with the judge's default settings (32 calls in flight). Prints both times and the ratio; the goal
is >= 10x.

Run: .venv/bin/python benchmarks/model_grader.py
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from openrft.graders import GradeContext, grade_batch, load_grader
from openrft.graders.judges import JudgeConfig
from openrft.graders.model_grader import parse_output, request_body

CALLS = 64
LATENCY = 0.1
SCRIPT = f"""
delay: {LATENCY}
rules:
  - match: 'answer (\\d+)'
    reply: '{{"steps": [], "result": 0.$1}}'
"""
SPEC = load_grader(
    {
        "type": "score_model",
        "name": "judge",
        "model": "local-judge",
        "input": [
            {"role": "system", "content": "Score the answer from 0 to 1."},
            {"role": "user", "content": "{{ sample.output_text }}"},
        ],
    }
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_judge(script: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "openrft.cli.serve_model", "--scripted", str(script)]
    server = subprocess.Popen([*command, "--port", str(port)])
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the judge server did not start")


def sequential(base_url: str, texts: list[str]) -> list[float]:
    """The anchor: one request at a time."""
    judge = JudgeConfig(base_url=base_url)
    scores = []
    with httpx.Client(timeout=60) as client:
        for text in texts:
            messages = [
                {"role": "system", "content": "Score the answer from 0 to 1."},
                {"role": "user", "content": text},
            ]
            response = client.post(
                f"{base_url}/chat/completions", json=request_body(SPEC, messages, judge)
            )
            parsed = parse_output(response.json()["choices"][0]["message"]["content"])
            scores.append(float(parsed["result"]) if parsed else 0.0)
    return scores


def main() -> None:
    texts = [f"answer {i % 10}" for i in range(CALLS)]
    expected = [float(f"0.{i % 10}") for i in range(CALLS)]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "judge.yaml"
        script.write_text(SCRIPT)
        port = free_port()
        server = start_judge(script, port)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            started = time.perf_counter()
            anchor_scores = sequential(base_url, texts)
            anchor = time.perf_counter() - started
            context = GradeContext(judges={"local-judge": {"base_url": base_url}})
            started = time.perf_counter()
            results = grade_batch(SPEC, texts, [{}] * CALLS, context)
            ours = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
    if anchor_scores != expected or [r.reward for r in results] != expected:
        raise SystemExit("the two ways disagree on the scores; the benchmark is invalid")
    print(f"{CALLS} judge calls, {LATENCY * 1000:.0f} ms judge latency")
    print(f"  sequential httpx calls : {anchor:6.2f} s")
    print(f"  openrft grade_batch    : {ours:6.2f} s")
    print(f"  ratio                  : {anchor / ours:6.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
