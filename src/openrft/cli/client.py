"""`Client`: the `openrft jobs` commands' JSON client of the fine-tuning API, and `ApiCallError`,
what it raises when a call fails.

A refusal carries what the server's OpenAI envelope said (status, message, type, param, code); a
server that does not answer carries status `None`. It does not retry: a command that fails says
so and exits (`exits.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

err = Console(stderr=True)


class ApiCallError(Exception):
    """A call to the fine-tuning API failed: refused (with the server's envelope) or unanswered."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """The HTTP status of the refusal; `None` when the server could not be reached."""
        self.type = type
        self.param = param
        self.code = code

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiCallError:
        """The refusal in `response`; its raw text when the body is not OpenAI's envelope."""
        try:
            error = response.json()["error"]
            message = str(error["message"])
        except (ValueError, KeyError, TypeError):
            return cls(response.text, status=response.status_code)
        fields = {key: error.get(key) for key in ("type", "param", "code")}
        return cls(message, status=response.status_code, **fields)


class Client:
    """A thin JSON client; raises `ApiCallError` when a call fails."""

    def __init__(self, base_url: str, api_key: str) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=60)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiCallError(f"cannot reach {self.http.base_url}: {exc}") from None
        if response.is_error:
            raise ApiCallError.from_response(response)
        return response.json()

    def upload(self, path: Path, purpose: str) -> str:
        with path.open("rb") as handle:
            files = {"file": (path.name, handle, "application/jsonl")}
            body = self.call("POST", "/files", files=files, data={"purpose": purpose})
        err.print(f"uploaded {path} as {body['id']}", markup=False)
        return str(body["id"])
