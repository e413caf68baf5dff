"""The LitServe server of `lit_ft serve`: the task's LitAPIs, lit_ft's own `/info`, `/v1/models` and page at `/`,
the request guard, and a SIGTERM that lets the requests in flight finish before the server stops."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi.responses import HTMLResponse, JSONResponse

from lit_ft.serving.guard import Gate, GuardMiddleware
from lit_ft.serving.openai_checks import OpenAIChecks
from lit_ft.serving.predict_api import PredictAPI, Settings

PLAYGROUND = Path(__file__).resolve().parent.parent / "resources" / "playground.html"
DRAIN_SECONDS = 120.0  # the longest a SIGTERM waits for requests in flight


@dataclass(frozen=True)
class Serving:
    """How the server runs.

    Attributes:
        settings: What the workers load.
        info: The `/info` record (`lit_ft.serving.describe`).
        max_batch_size: Requests (each one or more inputs) batched into one forward pass.
        batch_timeout: Seconds a batch waits to fill.
        max_queue: Requests in flight beyond which new ones get 503.
        api_key: Required on every route but /health when set.
        generates: Add the OpenAI-compatible routes (generation tasks).
        timeout: Seconds a request may wait for its answer (504 after).
    """

    settings: Settings
    info: dict[str, Any]
    max_batch_size: int = 8
    batch_timeout: float = 0.01
    max_queue: int = 256
    api_key: str | None = None
    generates: bool = False
    timeout: float = 120.0


def build_server(serving: Serving, gate: Gate) -> ls.LitServer:
    apis: list[ls.LitAPI] = [PredictAPI(serving.settings, serving.max_batch_size, serving.batch_timeout)]
    if serving.generates:
        from lit_ft.serving.openai_api import ChatAPI, CompletionsAPI

        apis += [ChatAPI(serving.settings), CompletionsAPI(serving.settings)]  # one answer at a time, streamed
    server = ls.LitServer(apis, accelerator="cpu" if not _cuda() else "auto", timeout=serving.timeout,
                          info_path="/litserve/info", middlewares=[(GuardMiddleware, {"gate": gate})])
    _add_routes(server, serving)
    return server


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _add_routes(server: ls.LitServer, serving: Serving) -> None:
    app = server.app
    # LitServe's own index answers "litserve running" at `/`: the playground page replaces it where it exists
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/"]

    @app.get("/info")
    async def info() -> JSONResponse:
        return JSONResponse(serving.info)

    @app.get("/")
    async def index() -> Any:
        if PLAYGROUND.is_file():
            return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))
        return JSONResponse({"served": serving.info, "routes": _routes(serving.generates)})

    if serving.generates:
        @app.get("/v1/models")
        async def models() -> JSONResponse:
            return JSONResponse({"object": "list", "data": [model_card(serving.info)]})


def model_card(info: dict[str, Any]) -> dict[str, Any]:
    return {"id": model_id(info), "object": "model", "created": 0, "owned_by": "lit_ft"}


def model_id(info: dict[str, Any]) -> str:
    """The name the OpenAI routes know the model by: the run directory's (or the export's) folder name."""
    source = info.get("source") or {}
    where = source.get("run_dir") or source.get("path") or "lit_ft"
    return Path(where).name


def _routes(generates: bool) -> list[str]:
    routes = ["POST /predict", "GET /health", "GET /info"]
    return routes + ["POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models"] if generates else routes


def serve(serving: Serving, host: str, port: int) -> None:
    """Run the server until SIGTERM or Ctrl-C; a SIGTERM refuses new requests (503), lets those in flight finish
    (up to `DRAIN_SECONDS`), then stops the workers; the process then exits 0."""
    gate = Gate(serving.api_key, serving.max_queue, OpenAIChecks(model_id(serving.info)) if serving.generates else None)
    server = build_server(serving, gate)

    def drain(signum: int, frame: Any) -> None:
        gate.draining.set()
        deadline = time.monotonic() + DRAIN_SECONDS
        while gate.in_flight.value > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt  # LitServe's own graceful stop: HTTP servers first, then the workers

    previous = signal.signal(signal.SIGTERM, drain)
    try:
        server.run(host=host, port=port, generate_client_file=False, log_level="warning")
    finally:
        signal.signal(signal.SIGTERM, previous)
