"""Clipped n-gram matches: for each (text, reference) and order n, Σ over the text's n-grams of
min(count in the text, count in the reference) — the numerators of nltk's BLEU/GLEU modified
precisions and rouge-score's ROUGE-N overlap. `overlap.py` turns them into scores.

Two ways to count, with equal results (tests compare both with the libraries): `NgramIndex`, hash
tables of n-gram tuples per reference, for small batches; `batch_matches`, numpy array
operations over the whole batch, for batches of `BATCH_MIN` pairs or more, where it is several
times faster. This module does no I/O and knows nothing about graders or templates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from itertools import chain

BATCH_MIN = 16
"""Batches of at least this many pairs count with `batch_matches` (numpy); in smaller ones
numpy's fixed cost per call dominates (measured crossover: 8–16 pairs of ~40 tokens)."""

KEY_LIMIT = 2**62
"""`batch_matches` keys n-grams as base-vocabulary numbers only below this."""

Table = tuple[Counter[Hashable], frozenset[Hashable], frozenset[Hashable]]
"""One order of a text: its n-gram counts, its n-grams, and those occurring more than once."""


def ngram_counts(tokens: Sequence[Hashable], n: int) -> Counter[Hashable]:
    """How often each n-gram (a tuple; a bare token when n == 1) occurs."""
    if n == 1:
        return Counter(tokens)
    return Counter(zip(*(tokens[i:] for i in range(n)), strict=False))


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


def matched(
    pairs: Sequence[tuple[str, str]], tokenize: Callable[[str], list[str]], orders: Sequence[int]
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
        found = {n: [] for n in orders}
        for o, text in zip(owner, texts, strict=True):
            for n in orders:  # no (n-1)-gram matches: no n-gram can
                none_shorter = n - 1 in found and found[n - 1][-1] == 0
                found[n].append(0 if none_shorter else indexes[o].matches(text, n))
    return found, [len(t) for t in texts], [len(references[o]) for o in owner]


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
