"""A request refused with a 4xx and one line saying what is wrong, without failing the batch it arrived in.

LitServe decodes, runs and encodes a batch of requests together, so an exception raised for one request answers
every request of the batch with it. A bad request is therefore carried through the batch as a `Refusal` and
answered on its own by `as_response`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from lit_ft.errors import one_line


@dataclass(frozen=True)
class Refusal:
    """Why one request is not answered, and its HTTP status."""

    message: str
    status: int = 400


def refusal(message: str, status: int = 400) -> Refusal:
    return Refusal(one_line(message), status)


def error_body(message: str, status: int) -> dict[str, Any]:
    """The JSON of every error lit_ft's server answers: OpenAI's shape, which its clients read, with the line."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": one_line(message), "type": kind, "code": status}}


def as_response(found: Refusal) -> JSONResponse:
    return JSONResponse(status_code=found.status, content=error_body(found.message, found.status))
