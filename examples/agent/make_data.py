"""Write the agent examples' data: "What is a * b?" for a in 100..999, b in 10..99
(`multiply.yaml`), and number-guessing rows (`guess.yaml`).

The products (four or five digits) are beyond what SmolLM2-135M computes in its head; the job's
`multiply` tool computes them. 300 training prompts and 50 held-out prompts, disjoint pairs,
with a fixed seed, so the shipped `train.jsonl` / `valid.jsonl` are reproducible:
`python make_data.py` rewrites them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PROMPT = "What is {a} * {b}? Use the multiply tool, then answer with just the number."
N_TRAIN, N_VALID = 300, 50


def rows() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    rng = random.Random(0)  # noqa: S311  # a fixed data split, not a secret
    pairs: list[tuple[int, int]] = []
    while len(pairs) < N_TRAIN + N_VALID:
        pair = (rng.randint(100, 999), rng.randint(10, 99))
        if pair not in pairs:
            pairs.append(pair)
    made = [
        {
            "messages": [{"role": "user", "content": PROMPT.format(a=a, b=b)}],
            "a": a,
            "b": b,
            "reference_answer": str(a * b),
        }
        for a, b in pairs
    ]
    return made[:N_TRAIN], made[N_TRAIN:]


GUESS_PROMPT = (
    "I am thinking of a whole number from 1 to 100. Find it with the guess tool, which says "
    "higher, lower or correct, then answer with the number."
)
N_GUESS = 60


def guess_rows() -> list[dict[str, object]]:
    """The environment example's rows (`guess.yaml`): the secret is in the row, the model never
    sees it; the environment answers its guesses."""
    rng = random.Random(1)  # noqa: S311  # a fixed data set, not a secret
    return [
        {"messages": [{"role": "user", "content": GUESS_PROMPT}], "secret": rng.randint(1, 100)}
        for _ in range(N_GUESS)
    ]


def main() -> None:
    here = Path(__file__).parent
    train, valid = rows()
    for name, part in (("train.jsonl", train), ("valid.jsonl", valid), ("guess.jsonl", guess_rows())):
        text = "".join(json.dumps(row) + "\n" for row in part)
        (here / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
