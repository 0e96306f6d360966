"""Write the demo's data: "What is a + b?" for a, b in 1..20, as chat-format JSONL.

350 training prompts and 50 held-out prompts, disjoint pairs, shuffled with a fixed seed, so the
shipped `train.jsonl` / `valid.jsonl` are reproducible: `python make_data.py` rewrites them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PROMPT = "What is {a} + {b}? Answer with just the number."
N_TRAIN, N_VALID = 350, 50


def rows() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    pairs = [(a, b) for a in range(1, 21) for b in range(1, 21)]
    random.Random(0).shuffle(pairs)  # noqa: S311  # a fixed data split, not a secret
    made = [
        {
            "messages": [{"role": "user", "content": PROMPT.format(a=a, b=b)}],
            "reference_answer": str(a + b),
        }
        for a, b in pairs[: N_TRAIN + N_VALID]
    ]
    return made[:N_TRAIN], made[N_TRAIN:]


def main() -> None:
    here = Path(__file__).parent
    train, valid = rows()
    for name, part in (("train.jsonl", train), ("valid.jsonl", valid)):
        text = "".join(json.dumps(row) + "\n" for row in part)
        (here / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
