"""The dashboard's HTML pages: server-rendered shells that the page scripts fill in.

The server renders only the layout (Jinja2); data comes from the browser calling the API with
the key kept in `sessionStorage`, so a page never holds another project's data and the server
needs no session state. Pages: the jobs list (`/`), a new job (`/jobs/new`), one job
(`/jobs/{id}`), the evals list (`/dashboard/evals`), one eval with its runs and two of them
side by side (`/dashboard/evals/{id}`), one run with its output items
(`/dashboard/evals/{id}/runs/{run}`, the API's `report_url`), the grader playground, the files
page and the login form.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str, title: str, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"title": title, "page": name.removesuffix(".html"), **context}
    )


@router.get("/", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    return _page(request, "jobs.html", "Jobs")


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(request: Request) -> HTMLResponse:
    return _page(request, "new_job.html", "New job")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    return _page(request, "job.html", job_id, job_id=job_id)


@router.get("/dashboard/evals", response_class=HTMLResponse)
def evals_page(request: Request) -> HTMLResponse:
    return _page(request, "evals.html", "Evals")


@router.get("/dashboard/evals/{eval_id}", response_class=HTMLResponse)
def eval_page(request: Request, eval_id: str) -> HTMLResponse:
    return _page(request, "eval.html", eval_id, eval_id=eval_id)


@router.get("/dashboard/evals/{eval_id}/runs/{run_id}", response_class=HTMLResponse)
def eval_run_page(request: Request, eval_id: str, run_id: str) -> HTMLResponse:
    return _page(request, "eval_run.html", run_id, eval_id=eval_id, run_id=run_id)


@router.get("/playground", response_class=HTMLResponse)
def playground_page(request: Request) -> HTMLResponse:
    return _page(request, "playground.html", "Grader playground")


@router.get("/files", response_class=HTMLResponse)
def files_page(request: Request) -> HTMLResponse:
    return _page(request, "files.html", "Files")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", "Log in")
