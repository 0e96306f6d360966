"""BLEU, GLEU and ROUGE-N/L computed exactly as nltk and rouge-score compute them, only faster.

Each scorer returns the float the reference library returns for the same tokens (tests compare
them with `==` over a table of cases): `bleu_from`/`bleu_all` is
`nltk.translate.bleu_score.sentence_bleu` with uniform 4-gram weights and
`SmoothingFunction().method4`; `gleu_from`/`gleu_all` is `nltk.translate.gleu_score.sentence_gleu`;
`rouge_n_from`/`rouge_n_all` and `Reference.rouge_l` are the F-measures of
`rouge_score.rouge_scorer.RougeScorer([...], use_stemmer=False)`.

Why faster: in GRPO a batch holds groups of completions that share one reference, so each
distinct reference is tokenized once. The clipped n-gram matches of a whole batch are counted by
`batch_matches` with a few numpy array operations per order (n-grams as integers, counted by
sorting) instead of a hash table of n-gram tuples per completion; batches smaller than
`BATCH_MIN`, where numpy's fixed cost per call dominates, use `NgramIndex` (the same counts).
ROUGE-L uses the bit-parallel LCS length (Hyyrö 2004) instead of rouge-score's full
dynamic-programming table: the same integer, from a few big-int operations per token. The
floating-point steps after the counts mirror the libraries' own expressions in the same order,
so results are bit-identical.

Tokenizers: `words` (BLEU, GLEU, METEOR) splits text into runs of word characters and single
punctuation marks — Unicode-aware, case kept, and needing no nltk data files (nltk's
`word_tokenize` needs the punkt model, which is not available offline). `rouge_tokens` is
rouge-score's own tokenizer (lower-case, ASCII letters and digits only; no stemming).

This module does no I/O and knows nothing about graders or templates.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from itertools import chain

BLEU_ORDER = 4
"""BLEU-4 with uniform weights (nltk's default)."""
SMOOTHING_K = 5
"""nltk `SmoothingFunction(k=5)`, used by method4."""
GLEU_MAX_ORDER = 4
"""nltk `sentence_gleu(min_len=1, max_len=4)`."""

_WORD = re.compile(r"\w+|[^\w\s]")
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")

Table = tuple[Counter[Hashable], frozenset[Hashable], frozenset[Hashable]]
"""One order of a text: its n-gram counts, its n-grams, and those occurring more than once."""


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


def ngram_counts(tokens: Sequence[Hashable], n: int) -> Counter[Hashable]:
    """How often each n-gram (a tuple; a bare token when n == 1) occurs."""
    if n == 1:
        return Counter(tokens)
    return Counter(zip(*(tokens[i:] for i in range(n)), strict=False))


def fmeasure(precision: float, recall: float) -> float:
    """rouge-score's `scoring.fmeasure`, operation for operation."""
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


class NgramIndex:
    """The n-gram counts of one token sequence, per order, built on first use."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = tokens
        self._tables: dict[int, Table] = {}

    def _table(self, n: int) -> Table:
        table = self._tables.get(n)
        if table is None:
            counts = ngram_counts(self.tokens, n)
            repeated = frozenset(gram for gram, count in counts.items() if count > 1)
            table = self._tables[n] = (counts, frozenset(counts), repeated)
        return table

    def matches(self, other: Sequence[str], n: int) -> int:
        """Σ over the n-grams of `other` of min(count in other, count here)."""
        if len(other) < n or len(self.tokens) < n:
            return 0
        reference, shared, repeated = self._table(n)
        counts = ngram_counts(other, n)
        # Σ_g min(h_g, r_g) over shared n-grams = their number + what repeats on *both* sides
        # adds: a C-level set intersection, then a loop over the few n-grams repeated here.
        hits = len(shared.intersection(counts))
        for gram in filter(counts.__contains__, repeated):
            hits += min(counts[gram], reference[gram]) - 1
        return hits


class Reference:
    """One reference text, prepared once and scored against many completions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._words: NgramIndex | None = None
        self._rouge: NgramIndex | None = None
        self._lcs_masks: dict[str, int] | None = None

    @property
    def words(self) -> NgramIndex:
        if self._words is None:
            self._words = NgramIndex(words(self.text))
        return self._words

    @property
    def rouge(self) -> NgramIndex:
        if self._rouge is None:
            self._rouge = NgramIndex(rouge_tokens(self.text))
        return self._rouge

    def word_matches(self, hypothesis: Sequence[str]) -> list[int]:
        """Clipped n-gram matches of `hypothesis` for n = 1..4 (nltk's modified precision
        numerators)."""
        found = [self.words.matches(hypothesis, 1)]
        for n in range(2, BLEU_ORDER + 1):  # once an order has no match, no longer one can
            found.append(self.words.matches(hypothesis, n) if found[-1] else 0)
        return found

    def bleu(self, hypothesis: Sequence[str]) -> float:
        """nltk `sentence_bleu([reference], hypothesis, smoothing_function=method4)`."""
        return bleu_from(self.word_matches(hypothesis), len(hypothesis), len(self.words.tokens))

    def gleu(self, hypothesis: Sequence[str]) -> float:
        """nltk `sentence_gleu([reference], hypothesis)`."""
        return gleu_from(self.word_matches(hypothesis), len(hypothesis), len(self.words.tokens))

    def rouge_n(self, prediction: Sequence[str], n: int) -> float:
        """rouge-score `rouge{n}` F-measure (reference = target, completion = prediction)."""
        matches = self.rouge.matches(prediction, n)
        return rouge_n_from(matches, len(prediction), len(self.rouge.tokens), n)

    def rouge_l(self, prediction: Sequence[str]) -> float:
        """rouge-score `rougeL` F-measure."""
        target = self.rouge.tokens
        if not target or not prediction:
            return 0.0
        length = self.lcs_length(prediction)
        return fmeasure(length / len(prediction), length / len(target))

    def lcs_length(self, other: Sequence[str]) -> int:
        """Length of the longest common subsequence of the ROUGE tokens and `other`, by the
        bit-parallel algorithm: after each token of `other`, the clear bits of `row` count the
        LCS of the target and the tokens seen so far."""
        target = self.rouge.tokens
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


BATCH_MIN = 16
"""Batches of at least this many pairs count n-grams with `batch_matches` (numpy); smaller ones,
where numpy's per-call cost dominates, with `NgramIndex`."""

KEY_LIMIT = 2**62
"""`batch_matches` keys n-grams as base-vocabulary numbers only below this."""

Pair = tuple[str, str]
"""(text, reference)."""


def matched(
    pairs: Sequence[Pair], tokenize: Callable[[str], list[str]], orders: Sequence[int]
) -> tuple[dict[int, list[int]], list[int], list[int]]:
    """For each (text, reference): the clipped n-gram matches of the tokenized text against the
    tokenized reference for each order (`{n: [per pair]}`), the text's and the reference's token
    counts. Each distinct reference is tokenized once."""
    owner_of: dict[str, int] = {}
    owner = [owner_of.setdefault(reference, len(owner_of)) for _, reference in pairs]
    references = [tokenize(reference) for reference in owner_of]
    texts = [tokenize(text) for text, _ in pairs]
    if len(pairs) >= BATCH_MIN:
        found = batch_matches(references, texts, owner, orders)
    else:
        indexes = [NgramIndex(tokens) for tokens in references]
        found = {
            n: [indexes[o].matches(text, n) for o, text in zip(owner, texts, strict=True)]
            for n in orders
        }
    return found, [len(t) for t in texts], [len(references[o]) for o in owner]


def bleu_all(pairs: Sequence[Pair]) -> list[float]:
    """`bleu_from` for each (text, reference), tokenized with `words`."""
    found, text_lens, ref_lens = matched(pairs, words, range(1, BLEU_ORDER + 1))
    by_pair = zip(*found.values(), strict=True)
    return [bleu_from(m, t, r) for m, t, r in zip(by_pair, text_lens, ref_lens, strict=True)]


def gleu_all(pairs: Sequence[Pair]) -> list[float]:
    """`gleu_from` for each (text, reference), tokenized with `words`."""
    found, text_lens, ref_lens = matched(pairs, words, range(1, GLEU_MAX_ORDER + 1))
    by_pair = zip(*found.values(), strict=True)
    return [gleu_from(m, t, r) for m, t, r in zip(by_pair, text_lens, ref_lens, strict=True)]


def rouge_n_all(pairs: Sequence[Pair], n: int) -> list[float]:
    """`rouge_n_from` for each (text, reference), tokenized with `rouge_tokens`."""
    found, text_lens, ref_lens = matched(pairs, rouge_tokens, (n,))
    return [rouge_n_from(m, t, r, n) for m, t, r in zip(found[n], text_lens, ref_lens, strict=True)]


def batch_matches(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[Sequence[str]],
    owner: Sequence[int],
    orders: Sequence[int],
) -> dict[int, list[int]]:
    """`NgramIndex(references[owner[i]]).matches(hypotheses[i], n)` for every i and every n in
    `orders` — the clipped n-gram counts of nltk's BLEU/GLEU and rouge-score's ROUGE-N — for a
    whole batch in a few array operations per order instead of hash tables per hypothesis.

    All sequences (references first, then hypotheses) are laid end to end as integer token ids.
    An n-gram is one integer: its leading (n-1)-gram's key times the vocabulary size plus its
    last token — or, when such keys could overflow 63 bits (tens of thousands of distinct
    tokens), the leading (n-1)-gram's rank among all (n-1)-grams, so keys stay below
    tokens × vocabulary. Sorting `(sequence, n-gram)` keys (`np.unique`) counts each n-gram
    per sequence; a binary search finds a hypothesis n-gram's count in its own reference; the
    clipped matches are `Σ min(both counts)` per hypothesis (`np.bincount`)."""
    import numpy as np

    sequences = [*references, *hypotheses]
    tokens = list(chain.from_iterable(sequences))
    vocabulary = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    ids = np.fromiter(map(vocabulary.__getitem__, tokens), np.int64, len(tokens))
    lengths = np.fromiter(map(len, sequences), np.int64, len(sequences))
    sequence = np.repeat(np.arange(len(sequences), dtype=np.int64), lengths)
    # how many tokens its sequence still has from each position on (that token included)
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(tokens))
    owners = np.asarray(owner, dtype=np.int64)
    size, gram = max(len(vocabulary), 1), ids
    # n-gram keys as base-`size` numbers while they fit in 63 bits (the usual case), else ranks
    direct = len(sequences) * size ** max(orders) < KEY_LIMIT
    found: dict[int, list[int]] = {}
    for n in range(1, max(orders) + 1):
        if n > 1:  # extend each (n-1)-gram by the token after it
            leading = gram[:-1] if direct else np.unique(gram[:-1], return_inverse=True)[1]
            gram = leading.reshape(-1) * size + ids[n - 1 :]
        if n not in orders:
            continue
        span = int(gram.max(initial=0)) + 1
        within = left[: len(gram)] >= n
        keys, counts = np.unique(
            sequence[: len(gram)][within] * span + gram[within], return_counts=True
        )
        which, grams = np.divmod(keys, span)
        boundary = int(np.searchsorted(which, len(references)))
        ref_keys, ref_counts = keys[:boundary], counts[:boundary]
        hyp, hyp_counts = which[boundary:] - len(references), counts[boundary:]
        wanted = owners[hyp] * span + grams[boundary:]  # the same n-gram, in its reference
        in_reference = np.zeros_like(hyp_counts)
        if len(ref_keys):
            at = np.minimum(np.searchsorted(ref_keys, wanted), len(ref_keys) - 1)
            in_reference = np.where(ref_keys[at] == wanted, ref_counts[at], 0)
        clipped = np.minimum(hyp_counts, in_reference)
        per_hypothesis = np.bincount(hyp, weights=clipped, minlength=len(hypotheses))
        found[n] = per_hypothesis.astype(np.int64).tolist()
    return found
