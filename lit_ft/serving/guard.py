"""What every request passes before LitServe sees it: the API key, a bounded number of requests in flight (503
past it, so memory stays bounded under overload), draining at shutdown, and a JSON body that parses (400 with
the parser's line otherwise, where LitServe would answer 500).

A plain ASGI middleware: the body is read once, checked, and replayed to the route. The counters are shared
memory (`multiprocessing.Value`), made before LitServe forks its HTTP server, so the command's SIGTERM handler
sees the requests in flight and lets them finish (`lit_ft.serving.server`).
"""

from __future__ import annotations

import hmac
import json
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lit_ft.serving.refusal import error_body

# answered without the API key: a load balancer's probe holds no secret, nor does the playground page (a static
# file: a browser cannot send the key header when it opens it; the page then sends the key on every call)
OPEN_PATHS = ("/health", "/")


@dataclass
class Gate:
    """State shared by the HTTP server process and the command.

    Attributes:
        api_key: The key every route but `OPEN_PATHS` requires (`X-API-Key: KEY` or `Authorization: Bearer KEY`);
            None: no key.
        max_queue: Requests in flight (queued or running) beyond which a new one gets 503.
        check: Checks a route's parsed body: None, or the status and line to refuse it with.
    """

    api_key: str | None
    max_queue: int
    check: Callable[[str, Any], tuple[int, str] | None] | None = None
    in_flight: Any = field(default_factory=lambda: multiprocessing.get_context("fork").Value("i", 0))
    draining: Any = field(default_factory=lambda: multiprocessing.get_context("fork").Event())


class GuardMiddleware:
    """ASGI middleware applying a `Gate` to every HTTP request."""

    def __init__(self, app: Any, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.gate.api_key and path not in OPEN_PATHS and not self._authorized(scope):
            await _answer(send, 401, "missing or wrong API key: send the header 'Authorization: Bearer KEY' (or "
                                     "'X-API-Key: KEY') with the key the server was started with")
            return
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if self.gate.draining.is_set():
            await _answer(send, 503, "the server is shutting down; retry on another instance")
            return
        with self.gate.in_flight.get_lock():
            full = self.gate.in_flight.value >= self.gate.max_queue
            if not full:
                self.gate.in_flight.value += 1
        if full:
            await _answer(send, 503, f"the server is busy ({self.gate.max_queue} requests in flight, --max_queue); "
                                     "retry later")
            return
        try:
            await self._checked(scope, receive, send)
        finally:
            with self.gate.in_flight.get_lock():
                self.gate.in_flight.value -= 1

    def _authorized(self, scope: dict[str, Any]) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(given) and hmac.compare_digest(given.encode(), str(self.gate.api_key).encode())

    async def _checked(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            parsed = json.loads(body or b"null")
        except ValueError as err:
            await _answer(send, 400, f"malformed JSON in the request body: {err}")
            return
        if not body:
            await _answer(send, 400, "the request has no body; send a JSON object")
            return
        problem = self.gate.check(scope.get("path", ""), parsed) if self.gate.check else None
        if problem is not None:
            await _answer(send, *problem)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        # the body is JSON whatever the client called it (curl -d says form data, which LitServe would parse as such)
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
        await self.app({**scope, "headers": [*headers, (b"content-type", b"application/json")]}, replay, send)


async def _answer(send: Any, status: int, message: str) -> None:
    payload = json.dumps(error_body(message, status)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
