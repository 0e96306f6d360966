"""Grader throughput: `grade_batch` against the reference library called once per sample.

Workload: a GRPO-shaped batch — groups of completions that share one reference (32 groups of 8
for the text metrics). References are 25–60 words drawn from a small English vocabulary (the
`(long)` rows: 16 groups of 150–300 words); completions are edits of them (dropped, swapped and
substituted words), so scores spread over [0, 1] and no two completions in a group are equal
(in-batch de-duplication gets no free wins). math_accuracy: 32 groups of 8 answers per
reference, numbers (`42`, `-7.25`, `\\boxed{42}`) or LaTeX fractions (`$\\frac{3}{4}$`).

For each metric both sides score the same pairs in the same run: the anchor calls the library
the metric is defined by (rapidfuzz, rouge-score, nltk, sentence-transformers, math-verify) once
per sample, tokenizing both texts each time as a simple reward function would; ours is
`openrft.graders.grade_batch(...).rewards` on a spec (what a trainer reads; `built/s` is the
same call with every per-sample `GradeResult` object built too, as the API and CLI do, shown
for transparency). Every score is checked equal (cosine: within 1e-5, the float32 noise of
batched versus single-text encoding). The sides take turns, `--repeat` runs each, and each
keeps its best time (the machine may be shared). Caches that outlive a batch
(stemmer, WordNet look-ups, math parses) are cleared before each of our runs, so the figures are
for a cold batch. BLEU/GLEU/METEOR tokenize with `openrft.graders.metrics.overlap.words` on both
sides.

Run: .venv/bin/python benchmarks/graders.py [--repeat 5] [--only bleu,rouge_l]
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openrft.graders import Sample, grade_batch, load_grader

WORDS = (
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "an",
    "be",
    "this",
    "which",
    "or",
    "are",
    "were",
    "model",
    "answer",
    "reward",
    "policy",
    "gradient",
    "group",
    "sample",
    "reference",
    "score",
    "value",
    "training",
    "learning",
    "river",
    "mountain",
    "city",
    "library",
    "garden",
    "winter",
    "summer",
    "quickly",
    "slowly",
    "carefully",
    "bright",
    "dark",
    "running",
    "ran",
    "runs",
    "walked",
    "walking",
    "build",
    "built",
    "building",
    "large",
    "big",
    "small",
    "little",
    "happy",
    "glad",
    "cat",
    "cats",
    "dog",
    "dogs",
    "house",
    "houses",
    "car",
    "cars",
    "42",
    "3.14",
    "1,000",
    ",",
    ".",
    ";",
    "!",
    "?",
)


@dataclass
class Case:
    """One benchmark row: how the anchor scores a pair, and the spec ours grades with."""

    name: str
    anchor: Callable[[str, str], float]
    """Score one (completion, reference) with the reference library."""
    spec: dict[str, Any]
    """The grader spec for `grade_batch`."""
    data: Callable[[random.Random], tuple[list[str], list[str]]]
    """(completions, references), one reference per completion."""
    tolerance: float = 0.0
    reset: Callable[[], None] = lambda: None
    """Clears caches that outlive a batch before each of our runs."""


def sentence(rng: random.Random, low: int = 25, high: int = 60) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def edit(rng: random.Random, text: str) -> str:
    tokens = text.split()
    for _ in range(rng.randint(1, max(2, len(tokens) // 3))):
        i = rng.randrange(len(tokens))
        move = rng.random()
        if move < 0.3 and len(tokens) > 2:
            del tokens[i]
        elif move < 0.6:
            j = rng.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            tokens[i] = rng.choice(WORDS)
    return " ".join(tokens)


def text_groups(
    groups: int = 32, size: int = 8, length: tuple[int, int] = (25, 60)
) -> Callable[[random.Random], Any]:
    """`groups` references of `length` words, each with `size` distinct edited completions."""

    def make(rng: random.Random) -> tuple[list[str], list[str]]:
        completions, references = [], []
        for _ in range(groups):
            reference = sentence(rng, *length)
            seen = {reference}
            while len(seen) < size + 1:
                seen.add(edit(rng, reference))
            completions += sorted(seen - {reference})
            references += [reference] * size
        return completions, references

    return make


def words(text: str) -> list[str]:
    from openrft.graders.metrics.overlap import words as split

    return split(text)


def rouge_case(metric: str, name: str = "", data: Callable[..., Any] | None = None) -> Case:
    from rouge_score.rouge_scorer import RougeScorer

    kind = "rougeL" if metric == "rouge_l" else "rouge" + metric[-1]
    scorer = RougeScorer([kind])  # built once: only `score` is per sample
    return Case(
        name or metric,
        lambda c, r: scorer.score(r, c)[kind].fmeasure,
        spec(metric),
        data or text_groups(),
    )


def spec(metric: str) -> dict[str, Any]:
    return {
        "type": "text_similarity",
        "name": metric,
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.reference_answer }}",
        "evaluation_metric": metric,
    }


def bleu(completion: str, reference: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    method4 = SmoothingFunction().method4
    score: float = sentence_bleu([words(reference)], words(completion), smoothing_function=method4)
    return score


def gleu(completion: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    score: float = sentence_gleu([words(reference)], words(completion))
    return score


def meteor(completion: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    score: float = meteor_score([words(reference)], words(completion))
    return score


def fuzzy(completion: str, reference: str) -> float:
    from rapidfuzz.fuzz import ratio

    return ratio(completion, reference) / 100


def cosine(completion: str, reference: str) -> float:
    from sentence_transformers.util import cos_sim

    from openrft.graders.metrics.embedding import local_model

    a, b = local_model().encode([completion, reference])
    return float(cos_sim(a, b)[0][0])


def clear_meteor_caches() -> None:
    from openrft.graders import text_similarity

    text_similarity._stem.cache_clear()
    text_similarity._MemoWordNet.synsets.cache_clear()


def math_groups(latex: bool) -> Callable[[random.Random], Any]:
    def make(rng: random.Random) -> tuple[list[str], list[str]]:
        completions, references = [], []
        for _ in range(32):
            if latex:
                p, q = rng.randint(1, 9), rng.randint(2, 12)
                reference = f"$\\frac{{{p}}}{{{q}}}$"
                right = [f"$\\frac{{{p * 2}}}{{{q * 2}}}$", f"$\\frac{{{p}}}{{{q}}}$"]
                wrong = [f"$\\frac{{{p + k}}}{{{q}}}$" for k in range(1, 5)]
                wrong += [f"$\\sqrt{{{p + 1}}}$", f"${p}^{{{q}}}$"]
            else:
                value = rng.choice([rng.randint(-999, 9999), round(rng.uniform(-50, 500), 2)])
                reference = str(value)
                right = [str(value), f"\\boxed{{{value}}}"]
                wrong = [str(value + k) for k in (1, -1, 10, 0.5, 100, -7)]
            completions += right + wrong
            references += [reference] * (len(right) + len(wrong))
        return completions, references

    return make


def math_verify(completion: str, reference: str) -> float:
    from math_verify import parse, verify

    return float(verify(parse(reference), parse(completion)))


def clear_math_caches() -> None:
    from openrft.graders import math_accuracy

    math_accuracy.candidates.cache_clear()
    math_accuracy.symbolic_verdict.cache_clear()


MATH = {"type": "math_accuracy", "name": "math", "input": "{{ sample.output_text }}"}


def cases() -> list[Case]:
    """Every benchmark row. Another grader: append a Case here."""
    return [
        Case("fuzzy_match", fuzzy, spec("fuzzy_match"), text_groups()),
        Case("bleu", bleu, spec("bleu"), text_groups()),
        Case("bleu (long)", bleu, spec("bleu"), text_groups(16, 8, (150, 300))),
        Case("gleu", gleu, spec("gleu"), text_groups()),
        Case("meteor", meteor, spec("meteor"), text_groups(), reset=clear_meteor_caches),
        *(rouge_case(f"rouge_{n}") for n in (1, 2, 3, 4, 5)),
        rouge_case("rouge_l"),
        rouge_case("rouge_l", "rouge_l (long)", text_groups(16, 8, (150, 300))),
        Case("cosine", cosine, spec("cosine"), text_groups(8, 8), tolerance=1e-5),
        # math_accuracy (graders/math_accuracy.py): numbers take its Decimal fast path; LaTeX
        # fractions go through math-verify with the reference parse cached across the group.
        Case("math (numbers)", math_verify, MATH, math_groups(False), reset=clear_math_caches),
        Case("math (latex)", math_verify, MATH, math_groups(True), reset=clear_math_caches),
    ]


def measure(case: Case, repeat: int) -> tuple[int, float, float, float, float]:
    """(samples, anchor seconds, our seconds, our seconds building every result object, largest
    score difference). The sides take turns, `repeat` times each, and each keeps its best time:
    the machine is shared, and alternating makes all sides see the same background load."""
    completions, references = case.data(random.Random(0))
    samples = [Sample.from_text(c) for c in completions]
    items = [{"reference_answer": r} for r in references]
    grader = load_grader(case.spec)

    def anchor() -> list[float]:
        return [case.anchor(c, r) for c, r in zip(completions, references, strict=True)]

    def ours() -> list[float]:
        return grade_batch(grader, samples, items).rewards

    def ours_built() -> list[float]:  # what the API and CLI pay: every GradeResult built
        return [result.reward for result in grade_batch(grader, samples, items)]

    for result in grade_batch(grader, samples[:2], items[:2]):  # imports, model/WordNet load
        assert not result.errors.any(), result.errors.flags()
    case.anchor(completions[0], references[0])
    anchor_s = ours_s = built_s = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        expected = anchor()
        anchor_s = min(anchor_s, time.perf_counter() - started)
        case.reset()
        started = time.perf_counter()
        got = ours()
        ours_s = min(ours_s, time.perf_counter() - started)
        case.reset()
        started = time.perf_counter()
        built = ours_built()
        built_s = min(built_s, time.perf_counter() - started)
        assert built == got
    diff = max(abs(a - b) for a, b in zip(expected, got, strict=True))
    return len(samples), anchor_s, ours_s, built_s, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    warnings.simplefilter("ignore")  # library deprecation chatter would garble the table
    print(f"{'metric':<16}{'n':>5}{'anchor/s':>11}{'ours/s':>11}{'ratio':>8}{'built/s':>11}  equal")
    failed = []
    for case in cases():
        if wanted and case.name not in wanted:
            continue
        n, anchor_s, ours_s, built_s, diff = measure(case, args.repeat)
        equal = diff <= case.tolerance
        failed += [] if equal else [case.name]
        print(
            f"{case.name:<16}{n:>5}{n / anchor_s:>11.0f}{n / ours_s:>11.0f}"
            f"{anchor_s / ours_s:>7.1f}x{n / built_s:>11.0f}  {'yes' if equal else 'NO'}"
            f" (max diff {diff:.1e})",
            flush=True,
        )
    if failed:
        raise SystemExit(f"scores differ from the reference library: {', '.join(failed)}")


if __name__ == "__main__":
    main()
