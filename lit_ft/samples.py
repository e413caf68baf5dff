"""Sample tables (for example generated text after validation): to W&B as a table, and to a local JSONL file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

from lit_ft.io import write_jsonl


def log_samples(trainer: Trainer, key: str, rows: list[dict[str, Any]]) -> Path | None:
    """Log `rows` (dicts with the same keys) under `key`; rank 0 only. Returns the local file written."""
    if not trainer.is_global_zero or trainer.sanity_checking:
        return None
    columns = list(rows[0])
    data = [[str(row.get(c, "")) for c in columns] for row in rows]
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=data, step=trainer.global_step)
    path = Path(trainer.default_root_dir) / "samples" / f"{key.replace('/', '_')}_step{trainer.global_step}.jsonl"
    write_jsonl(rows, path)
    return path
