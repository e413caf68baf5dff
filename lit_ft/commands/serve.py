"""`lit_ft serve RUN_DIR|EXPORT_DIR|CKPT`: answer requests over HTTP with a trained model (LitServe).

`POST /predict` for every task (the records `lit_ft predict` writes), OpenAI-compatible `/v1/chat/completions`,
`/v1/completions` and `/v1/models` for generation tasks, `GET /health` and `GET /info`. docs/serve.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os

from lit_ft.commands.config_args import PLUGINS_ENV
from lit_ft.errors import UserError

HELP = ("serve a run's best checkpoint or an export over HTTP: /predict for every task, OpenAI-compatible /v1 "
        "routes for generation, dynamic batching")
API_KEY_ENV = "LIT_FT_API_KEY"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lit_ft serve", description=HELP)
    p.add_argument("path", metavar="RUN_DIR|EXPORT_DIR|CKPT",
                   help="a run directory (its best checkpoint), a .ckpt file, or an export directory")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (1024-65535)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind: 127.0.0.1 (this machine only, the default), an interface's address, or "
                        "0.0.0.0 / :: (every interface: set --api_key)")
    p.add_argument("--max_batch_size", type=int, default=8,
                   help="requests answered together in one forward pass (dynamic batching)")
    p.add_argument("--batch_timeout", type=float, default=0.01, help="seconds a batch waits to fill")
    p.add_argument("--max_queue", type=int, default=256,
                   help="requests in flight (queued or running) beyond which new ones get 503")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may wait for its answer (504)")
    p.add_argument("--too_long", choices=("truncate", "refuse"), default="truncate",
                   help="an input longer than the model takes: truncate it (its record says truncated: true) or "
                        "refuse the request (400)")
    p.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of a run directory")
    p.add_argument("--api_key", default=None,
                   help=f"require this key on every route but /health ('Authorization: Bearer KEY' or 'X-API-Key: "
                        f"KEY'); default ${API_KEY_ENV}")
    p.add_argument("--plugins", default="", help=f"comma-separated local plugin modules (also ${PLUGINS_ENV})")
    return p


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    check_args(args)
    from lit_ft.commands.config_args import plugin_specs
    from lit_ft.registry import get_task, load_plugin_module
    from lit_ft.serving.describe import describe
    from lit_ft.serving.predict_api import Settings
    from lit_ft.serving.server import Serving, serve

    specs = tuple(plugin_specs(["--plugins", args.plugins] if args.plugins else []))
    for spec in specs:
        load_plugin_module(spec)
    info = describe(args.path, args.which)
    task = get_task(str(info["task"])) if info.get("task") else None
    settings = Settings(path=os.path.abspath(args.path), which=args.which, too_long=args.too_long, plugins=specs)
    serving = Serving(settings=settings, info=info, max_batch_size=args.max_batch_size,
                      batch_timeout=args.batch_timeout, max_queue=args.max_queue,
                      api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                      generates=callable(getattr(task, "generate", None)), timeout=args.timeout)
    print(f"lit_ft: serving {info['task']} model from {info['source']['path']} at http://{args.host}:{args.port} "
          "(POST /predict, GET /health, GET /info; Ctrl-C or SIGTERM stops)", flush=True)
    serve(serving, args.host, args.port)
    print("lit_ft: server stopped", flush=True)


def check_args(args: argparse.Namespace) -> None:
    """Every option within its domain, as one line naming the fix."""
    if not 1024 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is out of range; give a port from 1024 to 65535")
    if args.host != "localhost":
        try:
            ipaddress.ip_address(args.host)
        except ValueError:
            raise UserError(f"--host {args.host!r} is not an IP address: give 127.0.0.1 (this machine), an "
                            "interface's address, or 0.0.0.0 / :: (every interface)") from None
    if importlib.util.find_spec("litserve") is None:
        raise UserError("lit_ft serve needs LitServe, which is not installed: pip install 'lit_ft[serve]' (or "
                        "pip install litserve)")
    for name in ("max_batch_size", "max_queue"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be 1 or more (got {getattr(args, name)})")
    if args.batch_timeout < 0 or args.timeout <= 0 or args.batch_timeout >= args.timeout:
        raise UserError(f"--batch_timeout ({args.batch_timeout}) must be 0 or more and below --timeout "
                        f"({args.timeout})")
