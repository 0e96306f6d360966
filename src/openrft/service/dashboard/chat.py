"""The dashboard's chat panel: `/jobs/{job_id}/chat`, a conversation with a job's models.

The page is a server-rendered shell (`templates/chat.html`); its script (`static/chat.js`) lists
the job's fine-tuned model, each checkpoint model and the base model from the public API and
sends the conversation to `POST /v1/chat/completions` with the user's key, streamed (Server-Sent
Events read with `fetch`) or not. Nothing here talks to a model server or reads the store: the
panel can do only what the key's holder could do with the `openai` SDK. It keeps no history on
the server; a reload starts a new conversation. No system prompt, tools or images yet.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from openrft.service.dashboard.pages import templates

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}/chat", response_class=HTMLResponse)
def chat_page(request: Request, job_id: str) -> HTMLResponse:
    context = {"title": f"Chat · {job_id}", "page": "chat", "job_id": job_id}
    return templates.TemplateResponse(request, "chat.html", context)
