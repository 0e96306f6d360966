"""Metric back-ends for `text_similarity`: the numbers behind each `evaluation_metric`.

    overlap.py    BLEU, GLEU, ROUGE-N/L, bit-identical to nltk and rouge-score, only faster
    ngrams.py     clipped n-gram matches for a whole batch at once (what overlap.py counts with)
    wordnet.py    WordNet 3.0 for METEOR, installed offline where nltk finds it
    embedding.py  sentence embeddings for `cosine`: a bundled local model or an endpoint

None of them is a grader type: they take texts (or token lists) and return floats, and know
nothing of specs, templates or `GradeResult`s (`graders/text_similarity.py` does that part).
`wordnet.py` and `embedding.py` are imported only when `meteor` or `cosine` first runs, so
nltk's WordNet reader and torch load only then. Nothing is imported here.
"""
