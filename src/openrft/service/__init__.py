"""The OpenAI-compatible fine-tuning service: API (`app.py`), durable store (`store.py`) and
workers that run training subprocesses (`worker.py`). Never imports torch."""

from __future__ import annotations

from openrft.service.settings import Settings

__all__ = ["Settings"]
