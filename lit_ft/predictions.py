"""Writing predictions: gathered from every process, in input order, one record per input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lit_ft.task import Task


class PredictionWriter(Callback):
    """Collects `lit_ft predict` records and writes them once, on rank 0, in the order of the input file.

    Args:
        path: Output file (JSONL); default `<trainer.default_root_dir>/predictions.jsonl`. Tasks may write
            extra formats next to it (question answering adds `predictions.json`).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.records = []

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.records.extend(outputs)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        records = self.records
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list[list[dict[str, Any]] | None] = [None] * trainer.world_size
            dist.all_gather_object(gathered, records)
            records = [r for part in gathered for r in (part or [])]
        if not trainer.is_global_zero:
            return
        datamodule = getattr(trainer, "datamodule", None)
        raw = datamodule.raw("predict") if datamodule is not None and hasattr(datamodule, "raw") else None
        if raw is not None:
            position = {row_id: i for i, row_id in enumerate(raw["id"])}
            records.sort(key=lambda r: position.get(r.get("id"), len(position)))
        path = Path(self.path or os.path.join(trainer.default_root_dir, "predictions.jsonl"))
        plugin: Task = pl_module.plugin  # type: ignore[assignment]
        self.written = plugin.write_predictions(records, path)
        inputs = len({r.get("id") for r in records})  # tasks may emit several records per input (QA windows)
        rank_zero_info(f"lit_ft: wrote predictions for {inputs} inputs to {', '.join(map(str, self.written))}")
