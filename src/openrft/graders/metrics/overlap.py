"""BLEU, GLEU and ROUGE-N/L computed exactly as nltk and rouge-score compute them, only faster.

Each scorer returns the float the reference library returns for the same tokens (tests compare
them with `==` over a table of cases): `bleu_from`/`bleu_all` is
`nltk.translate.bleu_score.sentence_bleu` with uniform 4-gram weights and
`SmoothingFunction().method4`; `gleu_from`/`gleu_all` is `nltk.translate.gleu_score.sentence_gleu`;
`rouge_n_from`/`rouge_n_all` and `Reference.rouge_l` are the F-measures of
`rouge_score.rouge_scorer.RougeScorer([...], use_stemmer=False)`.

Why faster: in GRPO a batch holds groups of completions that share one reference, so each
distinct reference is tokenized once, and the clipped n-gram matches of the whole batch are
counted at once by `ngrams.py` (numpy array operations instead of a hash table of
n-gram tuples per completion). ROUGE-L uses the bit-parallel LCS length (Hyyrö 2004) instead of
rouge-score's full dynamic-programming table: the same integer, from a few big-int operations
per token. The floating-point steps after the counts mirror the libraries' own expressions in
the same order, so results are bit-identical.

Tokenizers: `words` (BLEU, GLEU, METEOR) splits text into runs of word characters and single
punctuation marks — Unicode-aware, case kept, and needing no nltk data files (nltk's
`word_tokenize` needs the punkt model, which is not available offline). `rouge_tokens` is
rouge-score's own tokenizer (lower-case, ASCII letters and digits only; no stemming).

This module does no I/O and knows nothing about graders or templates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from openrft.graders.metrics import ngrams

BLEU_ORDER = 4
"""BLEU-4 with uniform weights (nltk's default)."""
SMOOTHING_K = 5
"""nltk `SmoothingFunction(k=5)`, used by method4."""
GLEU_MAX_ORDER = 4
"""nltk `sentence_gleu(min_len=1, max_len=4)`."""

_WORD = re.compile(r"\w+|[^\w\s]")
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """BLEU/GLEU/METEOR tokens: word-character runs and single punctuation marks.

    Equal to `re.findall(r"\\w+|[^\\w\\s]", text)`. No match of that pattern spans whitespace,
    so the text is split on whitespace first and only pieces that are not one word run go
    through the regex (`str.isalnum()` is exactly `\\w` without `_`), which is faster."""
    out: list[str] = []
    for piece in text.split():
        if piece.isalnum():
            out.append(piece)
        else:
            out += _WORD.findall(piece)
    return out


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokenizer without stemming: the `[a-z0-9]+` runs of the lower-cased text
    (it replaces every other character by a space and splits), whitespace pieces first as in
    `words`."""
    out: list[str] = []
    for piece in text.lower().split():
        if piece.isascii() and piece.isalnum():
            out.append(piece)
        else:
            out += _ROUGE_TOKEN.findall(piece)
    return out


def fmeasure(precision: float, recall: float) -> float:
    """rouge-score's `scoring.fmeasure`, operation for operation."""
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


class Reference:
    """One reference text for ROUGE-L, prepared once and scored against many completions."""

    def __init__(self, text: str) -> None:
        self.tokens = rouge_tokens(text)
        self._lcs_masks: dict[str, int] | None = None

    def rouge_l(self, prediction: Sequence[str]) -> float:
        """rouge-score `rougeL` F-measure."""
        target = self.tokens
        if not target or not prediction:
            return 0.0
        length = self.lcs_length(prediction)
        return fmeasure(length / len(prediction), length / len(target))

    def lcs_length(self, other: Sequence[str]) -> int:
        """Length of the longest common subsequence of the ROUGE tokens and `other`, by the
        bit-parallel algorithm: after each token of `other`, the clear bits of `row` count the
        LCS of the target and the tokens seen so far."""
        target = self.tokens
        if self._lcs_masks is None:
            masks: dict[str, int] = {}
            for position, token in enumerate(target):
                masks[token] = masks.get(token, 0) | (1 << position)
            self._lcs_masks = masks
        full = (1 << len(target)) - 1
        row = full
        get = self._lcs_masks.get
        for token in other:
            mask = get(token)
            if mask:
                hits = row & mask
                row = ((row + hits) | (row - hits)) & full
        return len(target) - row.bit_count()


def bleu_from(matches: Sequence[int], hyp_len: int, ref_len: int) -> float:
    """nltk's BLEU-4 with method4 smoothing from the clipped matches of orders 1..4; the float
    operations are nltk's, in its order."""
    if matches[0] == 0:
        return 0.0
    penalty = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    logs, smoothed = [], 1
    for n, match in enumerate(matches, start=1):
        denominator = max(1, hyp_len - n + 1)
        if match:
            precision = match / denominator
        elif hyp_len > 1:  # method4: 1 / (2^k · K / ln(len)) for the k-th empty order
            precision = 1 / (2**smoothed * SMOOTHING_K / math.log(hyp_len)) / denominator
            smoothed += 1
        else:  # nltk leaves a zero precision out of the geometric mean
            continue
        logs.append(1 / BLEU_ORDER * math.log(precision))
    return penalty * math.exp(math.fsum(logs))


def gleu_from(matches: Sequence[int], hyp_len: int, ref_len: int) -> float:
    """nltk's sentence GLEU: overlap / max(hyp, ref) n-gram totals, orders 1..4."""
    totals = max(_everygram_total(hyp_len), _everygram_total(ref_len))
    return sum(matches) / totals if totals > 0 else 0.0


def rouge_n_from(matches: int, prediction_len: int, target_len: int, n: int) -> float:
    """rouge-score's ROUGE-N F-measure from the n-gram overlap."""
    precision = matches / max(prediction_len - n + 1, 1)
    recall = matches / max(target_len - n + 1, 1)
    return fmeasure(precision, recall)


def _everygram_total(length: int) -> int:
    """How many n-grams of orders 1..4 a sequence of `length` tokens has."""
    return sum(max(0, length - n + 1) for n in range(1, GLEU_MAX_ORDER + 1))


Pair = tuple[str, str]
"""(text, reference)."""


def _word_scores(
    pairs: Sequence[Pair], order: int, score: Callable[[Sequence[int], int, int], float]
) -> list[float]:
    """`score(matches of orders 1..order, text length, reference length)` for each
    (text, reference), tokenized with `words`."""
    found, text_lens, ref_lens = ngrams.matched(pairs, words, range(1, order + 1))
    by_pair = zip(*found.values(), strict=True)
    return [score(m, t, r) for m, t, r in zip(by_pair, text_lens, ref_lens, strict=True)]


def bleu_all(pairs: Sequence[Pair]) -> list[float]:
    """`bleu_from` for each (text, reference), tokenized with `words`."""
    return _word_scores(pairs, BLEU_ORDER, bleu_from)


def gleu_all(pairs: Sequence[Pair]) -> list[float]:
    """`gleu_from` for each (text, reference), tokenized with `words`."""
    return _word_scores(pairs, GLEU_MAX_ORDER, gleu_from)


def rouge_l_all(pairs: Sequence[Pair]) -> list[float]:
    """`Reference.rouge_l` for each (text, reference); each distinct reference prepared once."""
    prepared: dict[str, Reference] = {}
    out = []
    for text, reference in pairs:
        ref = prepared.get(reference)
        if ref is None:
            ref = prepared[reference] = Reference(reference)
        out.append(ref.rouge_l(rouge_tokens(text)))
    return out


def rouge_n_all(pairs: Sequence[Pair], n: int) -> list[float]:
    """`rouge_n_from` for each (text, reference), tokenized with `rouge_tokens`."""
    found, text_lens, ref_lens = ngrams.matched(pairs, rouge_tokens, (n,))
    return [rouge_n_from(m, t, r, n) for m, t, r in zip(found[n], text_lens, ref_lens, strict=True)]
