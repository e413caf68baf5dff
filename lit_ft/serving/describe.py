"""`GET /info`: what is served (task, backbone, labels, lit_ft version, the run it came from), read from the
export's manifest or the checkpoint's hyperparameters in the HTTP server's process, which loads no model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lit_ft.errors import UserError
from lit_ft.owned_dir import MANIFEST


def describe(path: str, which: str = "best") -> dict[str, Any]:
    """The `/info` record of what `lit_ft serve PATH` loads (a UserError for a path that holds no model)."""
    where = Path(path)
    what = "give a run directory (its best checkpoint), a .ckpt file or an export directory (`lit_ft export`)"
    if not where.exists():
        raise UserError(f"'{path}' does not exist (absolute: {where.absolute()}); {what}")
    if where.is_file() and where.suffix not in (".ckpt", ".consolidated"):
        raise UserError(f"'{path}' is a file but not a checkpoint; {what}")
    manifest = where / MANIFEST
    if where.is_dir() and manifest.is_file():
        found = json.loads(manifest.read_text())
        if found.get("kind") == "export":
            parent = where.absolute().parent
            run = str(parent) if (parent / "checkpoints").is_dir() else None
            return _record(found, {"kind": "export", "path": str(where.absolute()), "run_dir": run})
    from lit_ft.training.checkpoint import find_checkpoint
    from lit_ft.training.safe_load import load_checkpoint_file

    checkpoint_path = Path(find_checkpoint(path, which)).absolute()
    hparams: dict[str, Any] = {}
    step = None
    if checkpoint_path.is_file():  # a sharded checkpoint directory is described by its path alone
        checkpoint = load_checkpoint_file(checkpoint_path, mmap=True)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        step = checkpoint.get("global_step")
    elif not checkpoint_path.is_dir():
        raise UserError(f"'{path}' holds no model to serve")
    folder = checkpoint_path.parent
    run_dir = folder.parent if folder.name == "checkpoints" else folder
    return _record(hparams, {"kind": "checkpoint", "path": str(checkpoint_path), "run_dir": str(run_dir),
                             "step": step})


def _record(settings: dict[str, Any], origin: dict[str, Any]) -> dict[str, Any]:
    from lit_ft import __version__

    info = settings.get("info") or {}
    return {
        "task": settings.get("task"),
        "backbone": settings.get("backbone"),
        "labels": info.get("label_names"),
        "task_options": settings.get("task_options") or {},
        "lit_ft_version": __version__,
        "source": origin,
    }
