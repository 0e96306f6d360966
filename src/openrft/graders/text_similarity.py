"""`text_similarity`: how similar the rendered `input` is to the rendered `reference`, in [0, 1].

| metric | definition (reference implementation the tests compare against) |
|---|---|
| `fuzzy_match` | `rapidfuzz.fuzz.ratio(input, reference) / 100` (normalized Indel similarity) |
| `bleu` | nltk `sentence_bleu`, BLEU-4, uniform weights, `SmoothingFunction().method4` |
| `gleu` | nltk `sentence_gleu` (n-grams of orders 1–4) |
| `meteor` | nltk `meteor_score` with WordNet 3.0 (alpha 0.9, beta 3, gamma 0.5) |
| `rouge_1`…`rouge_5`, `rouge_l` | rouge-score F-measure of `rouge1`…`rouge5`/`rougeL`, no stemmer |
| `cosine` | cosine similarity of sentence embeddings (see `graders/metrics/embedding.py`) |

Choices OpenAI does not document, made here and fixed by tests: BLEU uses nltk's method4
smoothing (Chen & Cherry's "NIST geometric" smoothing, also what Azure AI Evaluation's BLEU uses)
so a short answer missing some 4-gram does not collapse to ~0; ROUGE uses rouge-score's default
`use_stemmer=False`; BLEU/GLEU/METEOR tokenize with `overlap.words` (word runs and punctuation,
case kept for BLEU/GLEU; METEOR lower-cases as nltk does); ROUGE uses rouge-score's tokenizer.

BLEU, GLEU and ROUGE are computed by `graders/metrics/overlap.py`, which returns the libraries'
exact floats faster (each distinct reference tokenized once, a batch's n-grams counted with numpy
in `graders/metrics/ngrams.py`). `fuzzy_match` is rapidfuzz's own batch call (`process.cpdist`).
METEOR calls nltk itself, with memoized stemming and WordNet look-ups (same algorithm, same
numbers). Identical (input, reference) pairs in a batch are scored once.

A template naming a missing variable fails that sample with `invalid_variable_error`. A missing
resource (WordNet for `meteor`, the embedding model for `cosine`) raises `MissingResourceError`
for the whole batch, naming the command that installs it: it is a setup problem, not a sample's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from openrft.errors import TemplateError
from openrft.graders.context import GradeContext
from openrft.graders.metrics import overlap
from openrft.graders.result import GradeResult, GradeResults
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import TextSimilarityGrader
from openrft.graders.template import compile_template

Pair = tuple[str, str]
"""(input, reference) after rendering."""

ROUGE_ORDERS = {f"rouge_{n}": n for n in range(1, 6)}


Scorer = Callable[[Sequence[Pair]], list[float]]
"""Pairs in, one score per pair out."""


def _fuzzy(pairs: Sequence[Pair]) -> list[float]:
    # rapidfuzz's element-wise batch call: the same `fuzz.ratio` per pair, the loop in C.
    # float64, not cdist's default float32, so each score is the `fuzz.ratio` float itself.
    import numpy as np
    from rapidfuzz import fuzz, process

    texts, references = zip(*pairs, strict=True)
    scores = process.cpdist(texts, references, scorer=fuzz.ratio, dtype=np.float64)
    return (scores / 100).tolist()  # type: ignore[no-any-return]


def _rouge(n: int) -> Scorer:
    return lambda pairs: overlap.rouge_n_all(pairs, n)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _porter().stem(word)  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _porter() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


class _MemoStemmer:
    """nltk's PorterStemmer with a cache: METEOR stems the same words again and again."""

    stem = staticmethod(_stem)


class _MemoWordNet:
    """nltk's English WordNet with `synsets` cached (METEOR only calls `synsets(word)`)."""

    @staticmethod
    @lru_cache(maxsize=200_000)
    def synsets(word: str) -> list[Any]:
        from nltk.corpus import wordnet

        return wordnet.synsets(word)  # type: ignore[no-any-return]


def _meteor(pairs: Sequence[Pair]) -> list[float]:
    from nltk.translate.meteor_score import meteor_score

    from openrft.graders.metrics.wordnet import ensure_wordnet

    ensure_wordnet()
    tokens: dict[str, list[str]] = {}
    out = []
    for text, reference in pairs:
        ref_tokens = tokens.get(reference)
        if ref_tokens is None:
            ref_tokens = tokens[reference] = overlap.words(reference)
        out.append(
            meteor_score(
                [ref_tokens], overlap.words(text), stemmer=_MemoStemmer, wordnet=_MemoWordNet
            )
        )
    return out


def _cosine(pairs: Sequence[Pair], context: GradeContext) -> list[float | str]:
    from openrft.graders.metrics.embedding import cosine_similarities

    return cosine_similarities(pairs, context.options.get("embeddings"))


METRICS: dict[str, Scorer] = {
    "fuzzy_match": _fuzzy,
    "bleu": overlap.bleu_all,
    "gleu": overlap.gleu_all,
    "meteor": _meteor,
    **{name: _rouge(n) for name, n in ROUGE_ORDERS.items()},
    "rouge_l": overlap.rouge_l_all,
}
"""Every metric but `cosine` (which needs the context): pairs in, one score per pair out."""


def score_pairs(metric: str, pairs: Sequence[Pair], context: GradeContext) -> list[float | str]:
    """Score each pair once; a `str` in the result is why that pair could not be scored."""
    unique = list(dict.fromkeys(pairs))
    scores: list[float | str] = (
        _cosine(unique, context) if metric == "cosine" else list(METRICS[metric](unique))
    )
    if len(unique) == len(pairs):
        return scores
    by_pair = dict(zip(unique, scores, strict=True))
    return [by_pair[pair] for pair in pairs]


def _render_all(
    spec: TextSimilarityGrader, samples: Sequence[Sample], items: Sequence[Item]
) -> list[Pair | str]:
    """Each sample's (input, reference), or why a template could not be rendered."""
    inputs = compile_template(spec.input).render_all(samples, items)
    references = compile_template(spec.reference).render_all(samples, items)
    rendered: list[Pair | str] = []
    for text, reference in zip(inputs, references, strict=True):
        if isinstance(text, TemplateError) or isinstance(reference, TemplateError):
            rendered.append(str(text if isinstance(text, TemplateError) else reference))
        else:
            rendered.append((text, reference))
    return rendered


def grade_batch(
    spec: TextSimilarityGrader,
    samples: Sequence[Sample],
    items: Sequence[Item],
    context: GradeContext,
) -> GradeResults:
    """Score every sample; one result per sample, in order."""
    rendered = _render_all(spec, samples, items)
    pairs = [pair for pair in rendered if type(pair) is tuple]
    # The usual case, every template rendered, skips the per-sample merge below: measured
    # 10-20% of fuzzy_match's batch, whose lead over a bare rapidfuzz loop is only ~1.3x.
    if len(pairs) == len(rendered):
        scores = score_pairs(spec.evaluation_metric, pairs, context) if pairs else []
    else:
        scored = iter(score_pairs(spec.evaluation_metric, pairs, context) if pairs else [])
        scores = [pair if isinstance(pair, str) else next(scored) for pair in rendered]
    failed: dict[int, GradeResult] = {}
    rewards: list[float] = []
    for i, score in enumerate(scores):
        if isinstance(score, str):
            flag = "invalid_variable_error" if isinstance(rendered[i], str) else "other_error"
            failed[i] = GradeResult.failed(spec.name, spec.type, flag, score)
            rewards.append(0.0)
        else:
            rewards.append(float(score))

    def make(i: int) -> GradeResult:
        score = rewards[i]
        if spec.pass_threshold is None:
            return GradeResult.of(spec.name, spec.type, score)
        return GradeResult.of(spec.name, spec.type, score, passed=score >= spec.pass_threshold)

    return GradeResults(rewards, make, failed)
