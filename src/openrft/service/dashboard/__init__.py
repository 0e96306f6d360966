"""The browser dashboard of `openrft serve`: jobs, live learning curves, samples, checkpoints,
a chat panel on a job's models, a New job page (pre-flight, then start), evals and their runs
(a job's base vs tuned outputs side by side), a grader playground and dataset validation, at
`/`.

`mount_dashboard(app)` adds the pages (`pages.py`, `chat.py`), the dashboard's JSON routes under
`/dashboard/api` (`jobs.py`, `checks.py`, `evals.py`, `new_job.py`) and the static assets under
`/dashboard/static` (plain JavaScript and CSS plus a vendored Chart.js: no Node toolchain is
needed to run or build it). The page scripts call the public OpenAI-compatible API for
everything it offers, with the same API keys, so the dashboard can do nothing a key's holder
could not do with the `openai` SDK.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from openrft.service.dashboard import chat, checks, evals, jobs, new_job, pages

STATIC = Path(__file__).parent / "static"

router = APIRouter()
router.include_router(pages.router)
router.include_router(chat.router)
router.include_router(jobs.router)
router.include_router(checks.router)
router.include_router(evals.router)
router.include_router(new_job.router)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard from `app`: pages at `/`, JSON under `/dashboard/api`."""
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")


__all__ = ["mount_dashboard", "router"]
