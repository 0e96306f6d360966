"""text_similarity: every metric returns exactly what its reference library returns.

Expected numbers are computed here, in the test, by the libraries the metrics are defined by
(rapidfuzz, rouge-score, nltk with WordNet), and compared with `==`: the faster implementations
in `graders/metrics/overlap.py` must be bit-identical.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu
from nltk.translate.meteor_score import meteor_score
from rapidfuzz import fuzz
from rouge_score.rouge_scorer import RougeScorer
from rouge_score.tokenize import tokenize as rouge_tokenize

from openrft.errors import ConfigError
from openrft.graders import GradeContext, Sample, grade, grade_batch, load_grader
from openrft.graders.metrics import ngrams
from openrft.graders.metrics.overlap import rouge_tokens, words
from openrft.inference.local import serve_in_thread

LONG = " ".join(f"w{i % 23} x{i % 7}" for i in range(150))  # 300 tokens: LCS masks > 64 bits

CASES: list[tuple[str, str]] = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("the cat is on the mat", "The cat sat on the mat."),
    ("A big house by the river", "a large home near the river"),
    ("completely different words here", "nothing overlaps at all"),
    ("", ""),
    ("", "reference only"),
    ("input only", ""),
    ("42", "42"),
    ("42", "43"),
    ("The answer is 42.", "42"),
    ("the the the the the the the", "the cat is on the mat"),
    ("a b a b a b a b", "a b a b c"),
    ("running runs ran quickly", "run running runner quick"),
    ("Café naïve Über, déjà vu!", "cafe naive uber deja vu"),
    ("東京は日本の首都です", "日本の首都は東京です"),
    ("emoji 🎉 party 🎉 time", "party time 🎉"),
    ("Kelvin \u212a and I\u0307 dots", "kelvin k and i dots"),
    ("  spaces\tand\nnewlines  ", "spaces and newlines"),
    ("it's don't won't, (parens) [brackets] {braces}", "it is do not will not parens"),
    (LONG, LONG[: len(LONG) // 2] + " y1 y2 " + LONG[len(LONG) // 2 :]),
    ("x1 " + LONG, LONG + " w3"),
]

ROUGE_TYPES = {**{f"rouge_{n}": f"rouge{n}" for n in range(1, 6)}, "rouge_l": "rougeL"}


def reference_score(metric: str, text: str, reference: str) -> float:
    """The number the reference library gives for (input, reference)."""
    if metric == "fuzzy_match":
        return fuzz.ratio(text, reference) / 100
    if metric == "bleu":
        method4 = SmoothingFunction().method4
        score = sentence_bleu([words(reference)], words(text), smoothing_function=method4)
        return float(score)
    if metric == "gleu":
        return float(sentence_gleu([words(reference)], words(text)))
    if metric == "meteor":
        return float(meteor_score([words(reference)], words(text)))
    kind = ROUGE_TYPES[metric]
    return float(RougeScorer([kind]).score(reference, text)[kind].fmeasure)


METRICS = ["fuzzy_match", "bleu", "gleu", "meteor", *ROUGE_TYPES]


def similarity(metric: str, **extra: Any) -> Any:
    return load_grader(
        {
            "type": "text_similarity",
            "name": "sim",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.reference }}",
            "evaluation_metric": metric,
            **extra,
        }
    )


def run(metric: str, pairs: list[tuple[str, str]], **extra: Any) -> list[Any]:
    samples = [Sample.from_text(text) for text, _ in pairs]
    return grade_batch(similarity(metric, **extra), samples, [{"reference": r} for _, r in pairs])


@pytest.mark.parametrize("metric", METRICS)
def test_every_case_equals_the_reference_library(metric: str) -> None:
    results = run(metric, CASES)
    for (text, reference), result in zip(CASES, results, strict=True):
        assert not result.errors.any()
        assert result.metadata.type == "text_similarity"
        assert result.reward == reference_score(metric, text, reference), (text, reference)


@pytest.mark.parametrize("metric", METRICS)
def test_grpo_shaped_random_batches_equal_the_reference_library(metric: str) -> None:
    """Groups of edited completions sharing one reference (the per-reference caches)."""
    rng = random.Random(metric)
    vocab = ["the", "a", "cat", "dog", "sat", "on", ",", ".", "!", "runs", "ran", "big"]
    vocab += ["large", "42", "3.14", "Über", "café", "日本", "x"]
    pairs = []
    for _ in range(12):
        reference = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 25)))
        for _ in range(8):
            tokens = reference.split()
            for _ in range(rng.randint(0, 4)):
                tokens.insert(rng.randint(0, len(tokens)), rng.choice(vocab))
                if tokens and rng.random() < 0.5:
                    tokens.pop(rng.randrange(len(tokens)))
            pairs.append((" ".join(tokens), reference))
    results = run(metric, pairs)
    assert [r.reward for r in results] == [reference_score(metric, t, r) for t, r in pairs]


@pytest.mark.parametrize("metric", ["bleu", "gleu", *(f"rouge_{n}" for n in range(1, 6))])
def test_every_way_of_counting_ngrams_equals_the_reference_library(
    metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches smaller than `BATCH_MIN` count n-grams with `NgramIndex`, larger ones with
    numpy keys (base-vocabulary numbers, or ranks when those could overflow): all equal."""
    expected = [reference_score(metric, text, reference) for text, reference in CASES]
    assert [run(metric, [pair])[0].reward for pair in CASES] == expected  # one pair per batch
    assert len(CASES) >= ngrams.BATCH_MIN
    assert [r.reward for r in run(metric, CASES)] == expected
    monkeypatch.setattr(ngrams, "KEY_LIMIT", 0)  # force ranked keys
    assert [r.reward for r in run(metric, CASES)] == expected


def test_tokenizers_equal_their_regex_definitions() -> None:
    """`words` and `rouge_tokens` split on whitespace before using a regex; prove that changes
    nothing: per character (every code point), then on random strings of awkward characters."""
    word, space = re.compile(r"\w"), re.compile(r"\s")
    for char in map(chr, range(sys.maxunicode + 1)):
        assert bool(word.match(char)) == (char.isalnum() or char == "_"), hex(ord(char))
        assert bool(space.match(char)) == char.isspace() == (len(f"a{char}b".split()) == 2)
    pattern = re.compile(r"\w+|[^\w\s]")
    alphabet = "abXZ09_ .,;'-!\t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000\u200b²٣éÉßİ\u212a日本🎉\u0301"
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert words(text) == pattern.findall(text), repr(text)
        assert rouge_tokens(text) == rouge_tokenize(text, None), repr(text)


def test_identical_texts_score_one_and_disjoint_texts_zero() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    for metric in METRICS:
        same, other = run(metric, [(text, text), ("alpha beta gamma", text)])
        assert same.reward == pytest.approx(1.0, abs=1e-3 if metric == "meteor" else 0), metric
        assert other.reward < (0.5 if metric == "fuzzy_match" else 0.2), metric


def test_meteor_matches_synonyms_through_wordnet() -> None:
    # "car" ~ "auto" only through WordNet: 2 of 2 words matched in one chunk gives fmean 1 and
    # penalty 0.5 * (1/2)^3, so 0.9375; exact and stem matching alone would match 1 word: 0.25.
    # (nltk looks synonyms up after stemming, so "big" ~ "large" does not match: "larg".)
    car, big = run("meteor", [("car house", "auto house"), ("big house", "large house")])
    assert car.reward == 0.9375
    assert big.reward == 0.25


def test_pass_threshold_sets_passed() -> None:
    pairs = [("the cat sat", "the cat sat"), ("a dog", "the cat sat")]
    high, low = run("rouge_l", pairs, pass_threshold=0.5)
    assert high.metadata.scores == {"passed": True}
    assert low.metadata.scores == {"passed": False}
    assert high.reward == 1.0  # the reward stays the score
    exactly = run("fuzzy_match", [("abcd", "abcd")], pass_threshold=1.0)[0]
    assert exactly.metadata.scores["passed"] is True
    assert run("fuzzy_match", pairs)[0].metadata.scores == {}


def test_templates_render_json_fields_and_missing_variables_fail_only_that_sample() -> None:
    spec = load_grader(
        {
            "type": "text_similarity",
            "name": "sim",
            "input": "{{ sample.output_json.answer }}",
            "reference": "{{ item.gold[0] }}",
            "evaluation_metric": "fuzzy_match",
        }
    )
    samples = [Sample.from_text(json.dumps({"answer": "Paris"})), Sample.from_text("not json")]
    good, bad = grade_batch(spec, samples, [{"gold": ["Paris"]}, {"gold": ["Paris"]}])
    assert good.reward == 1.0
    assert not good.errors.any()
    assert bad.reward == 0.0
    assert bad.errors.flags() == ["invalid_variable_error"]
    assert "sample.output_json" in (bad.errors.invalid_variable_error_details or "")
    missing = grade(similarity("bleu"), "x", {"other": 1})
    assert missing.errors.invalid_variable_error
    assert (
        missing.errors.invalid_variable_error_details
        == "`item.reference` does not exist in this item"
    )


def test_duplicate_pairs_in_a_batch_get_equal_scores() -> None:
    pairs = [("the cat", "the cat sat"), ("a cat", "the cat sat"), ("the cat", "the cat sat")]
    first, _, again = run("meteor", pairs)
    assert first.reward == again.reward
    assert first is not again


def test_grader_engine_imports_neither_torch_nor_wordnet_until_used() -> None:
    code = (
        "import sys\n"
        "from openrft.graders import grade, load_grader\n"
        "spec = load_grader({'type': 'text_similarity', 'name': 's', 'input': 'a b',"
        " 'reference': 'a c', 'evaluation_metric': 'rouge_l'})\n"
        "print(grade(spec, 'x', {}).reward)\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["0.5", "[]"]


# --- cosine -------------------------------------------------------------------------------


class Embeddings:
    """An OpenAI-compatible /v1/embeddings server: letter-count vectors, deterministic."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/embeddings")(self.embed)
        self.app.post("/broken/embeddings")(self.broken)

    @staticmethod
    def vector(text: str) -> list[float]:
        return [float(text.lower().count(c)) for c in "abcdefghijklmnopqrstuvwxyz"]

    async def embed(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("authorization")})
        if request.headers.get("authorization") != "Bearer s3cret":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        data = [
            {"object": "embedding", "index": i, "embedding": self.vector(text)}
            for i, text in enumerate(body["input"])
        ]
        return JSONResponse({"object": "list", "model": body["model"], "data": data[::-1]})

    async def broken(self, request: Request) -> Response:
        return JSONResponse({"error": "overloaded"}, status_code=503)


@pytest.fixture
def embeddings() -> Iterator[tuple[Embeddings, str]]:
    server = Embeddings()
    with serve_in_thread(server.app) as url:
        yield server, url


def cosine_of(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    return dot / norm if norm else 0.0


def test_cosine_through_an_embeddings_endpoint(
    embeddings: tuple[Embeddings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = embeddings
    monkeypatch.setenv("EMBED_KEY", "s3cret")
    options = {"base_url": f"{url}/v1", "model": "tiny-embed", "api_key_env": "EMBED_KEY"}
    context = GradeContext(options={"embeddings": {**options, "batch_size": 2}})
    pairs = [("hello world", "hello there"), ("abc", "abc"), ("zzz", "hello there"), ("", "x")]
    samples = [Sample.from_text(t) for t, _ in pairs]
    spec = similarity("cosine", pass_threshold=0.9)
    results = grade_batch(spec, samples, [{"reference": r} for _, r in pairs], context)
    for (text, reference), result in zip(pairs, results, strict=True):
        expected = cosine_of(Embeddings.vector(text), Embeddings.vector(reference))
        assert result.reward == pytest.approx(expected, abs=1e-12)
    assert results[1].reward == pytest.approx(1.0)
    assert results[1].metadata.scores == {"passed": True}
    assert results[3].reward == 0.0  # an empty text embeds to zeros here: no direction
    sent = [text for request in server.requests for text in request["body"]["input"]]
    assert sorted(sent) == sorted({t for pair in pairs for t in pair})  # each text once
    assert all(len(r["body"]["input"]) <= 2 for r in server.requests)
    assert {r["body"]["model"] for r in server.requests} == {"tiny-embed"}


def test_cosine_endpoint_failures_are_flagged_per_sample(
    embeddings: tuple[Embeddings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = embeddings
    monkeypatch.setenv("EMBED_KEY", "wrong")
    spec = similarity("cosine")
    items = [{"reference": "a"}, {"reference": "b"}]
    for base, key in ((f"{url}/v1", "EMBED_KEY"), (f"{url}/broken", None)):
        options = {"base_url": base, "model": "m", "max_retries": 1, "backoff": 0.01}
        if key:
            options["api_key_env"] = key
        context = GradeContext(options={"embeddings": options})
        results = grade_batch(spec, ["a", "b"], items, context)
        for result in results:
            assert result.reward == 0.0
            assert result.errors.flags() == ["other_error"]
        details = results[0].errors.other_error_details or ""
        assert ("401" in details and "bad key" in details) or "503" in details


def test_cosine_endpoint_settings_are_checked() -> None:
    context = GradeContext(options={"embeddings": {"base_url": "", "api_key_env": "NOPE_X"}})
    with pytest.raises(ConfigError) as caught:
        grade(similarity("cosine"), "a", {"reference": "b"}, context)
    text = str(caught.value)
    assert "embeddings.base_url" in text
    assert "embeddings.model" in text
    assert "$NOPE_X is not set" in text


@pytest.mark.slow
def test_cosine_with_the_bundled_local_model_matches_sentence_transformers() -> None:
    from sentence_transformers.util import cos_sim

    from openrft.graders.metrics.embedding import local_model

    pairs = [
        ("The cat sits on the mat.", "A cat is sitting on a mat."),
        ("The cat sits on the mat.", "Quarterly revenue grew by ten percent."),
        ("same text", "same text"),
        ("", "empty input"),
    ]
    results = run("cosine", pairs)
    model = local_model()
    for (text, reference), result in zip(pairs, results, strict=True):
        a, b = model.encode([text, reference])
        assert result.reward == pytest.approx(float(cos_sim(a, b)[0][0]), abs=1e-5)
    assert results[0].reward > 0.7 > 0.2 > results[1].reward
    assert results[2].reward == pytest.approx(1.0, abs=1e-6)
