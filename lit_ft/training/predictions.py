"""Writing predictions: gathered from every process, one record per input row, in input order, joined to the row by
its position in the split (ids are data: they may repeat or be missing), with the row's text and gold labels (when
the split has them) next to the prediction, so errors read without a join. A file that would break that invariant
is not written (`lit_ft.rows.check_records`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lit_ft.errors import InternalError
from lit_ft.rows import ROW, check_records, id_notes, in_row_order, without_positions
from lit_ft.task import Task


class PredictionWriter(Callback):
    """Collects `lit_ft predict` records (and `lit_ft test` records of tasks that make them from the evaluation
    forward pass, `Task.predictions_at_test`) and writes them once, on rank 0, in the order of the input file.

    Each record carries the input's `id`, then its input fields from the data module (`prediction_inputs`: the
    text, and the gold labels when the split has them), then the task's prediction fields. Records are ordered,
    merged (`Task.merge_rows`) and joined to their inputs by row position; the log line counts them and names
    repeated or missing ids.

    Args:
        path: Output file (JSONL); default `<trainer.default_root_dir>/predictions.jsonl`. Tasks may write
            extra formats next to it (question answering adds `predictions.json`).
        test_path: Where `lit_ft test` writes the test split's records; default
            `<trainer.default_root_dir>/test_predictions.jsonl`.
        at_test: Write the test records at all (only tasks with `Task.predictions_at_test` make them).
    """

    def __init__(self, path: str | None = None, test_path: str | None = None, at_test: bool = True) -> None:
        self.path = path
        self.test_path = test_path
        self.at_test = at_test
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
        self._write(trainer, pl_module, "predict", self.path, "predictions.jsonl")

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.records = []

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.at_test and isinstance(outputs, list):
            self.records.extend(outputs)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        plugin = getattr(pl_module, "plugin", None)
        if self.at_test and getattr(plugin, "predictions_at_test", False):
            self._write(trainer, pl_module, "test", self.test_path, "test_predictions.jsonl")

    def _write(self, trainer: Trainer, pl_module: LightningModule, split: str, given: str | None,
               default: str) -> None:
        records = gather(self.records, trainer.world_size)
        self.records = []
        if not trainer.is_global_zero:
            return
        plugin: Task = pl_module.plugin  # type: ignore[assignment]
        datamodule = getattr(trainer, "datamodule", None)
        limit = trainer.limit_test_batches if split == "test" else trainer.limit_predict_batches
        complete = isinstance(limit, float) and limit >= 1.0  # an int is a batch count (fast_dev_run too)
        records = row_records(records, plugin, datamodule, split, gathered=trainer.world_size > 1, complete=complete)
        raw = _raw(datamodule, split)
        path = Path(given or os.path.join(trainer.default_root_dir, default))
        self.written = plugin.write_predictions(records, path)
        notes = [n for n in (id_notes(raw["id"]) if raw is not None else "",
                             "" if complete else f"trainer.limit_{split}_batches {limit}") if n]
        count = f"{len(records)}" if complete or raw is None else f"{len(records)} of {len(raw)}"
        noted = f" ({'; '.join(notes)})" if notes else ""
        rank_zero_info(f"lit_ft: wrote {_what(split)} for {count} inputs{noted} to "
                       f"{', '.join(map(str, self.written))}")


def row_records(records: list[dict[str, Any]], plugin: Task, datamodule: Any, split: str, gathered: bool = False,
                complete: bool = True) -> list[dict[str, Any]]:
    """A split's prediction records (each with its `ROW`, in any order) -> the records to write: one per input row,
    in input order (checked), each joined to its row's input fields by position.

    Args:
        records: What `predict_step` / `test_step` returned, from every process.
        plugin: The task: `merge_rows` makes one record of a row's several (QA windows).
        datamodule: The run's data module (`raw`, `prediction_inputs`).
        split: `predict` or `test`.
        gathered: The records come from several processes (a distributed sampler may repeat inputs).
        complete: Every batch of the split ran; False when the trainer limits the batches, so rows may be missing
            (the rest keep their order and their own inputs).
    """
    raw = _raw(datamodule, split)
    records = plugin.merge_rows(in_row_order(records, repeats_allowed=gathered))
    rows = len(raw) if raw is not None else len(records)
    check_records(records, rows, f"{_what(split)} of task '{plugin.name}'", complete)
    fields = getattr(datamodule, "prediction_inputs", None)
    inputs = fields(split) if fields is not None else []
    if inputs and len(inputs) != rows:
        raise InternalError(f"{type(datamodule).__name__}.prediction_inputs gave {len(inputs)} rows for the "
                            f"{rows} of the {split} split: it must give one per row, in order")
    positions = [r[ROW] for r in records]
    return [with_inputs(r, inputs[row] if inputs else {}) for row, r in zip(positions, without_positions(records),
                                                                             strict=True)]


def _raw(datamodule: Any, split: str) -> Any:
    """The split's rows as read (None without a data module that reads rows)."""
    return datamodule.raw(split) if datamodule is not None and hasattr(datamodule, "raw") else None


def _what(split: str) -> str:
    return "predictions" if split == "predict" else f"{split} predictions"


def gather(records: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]]:
    """Every process's records, concatenated (the caller restores the input order by each record's row)."""
    if world_size <= 1 or not dist.is_available() or not dist.is_initialized():
        return list(records)
    gathered: list[list[dict[str, Any]] | None] = [None] * world_size
    dist.all_gather_object(gathered, records)
    return [r for part in gathered for r in (part or [])]


def with_inputs(record: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """`id` first, then the input fields the record does not hold yet, then the task's own fields."""
    if not inputs:
        return record
    head = {"id": record["id"]} if "id" in record else {}
    return {**head, **{k: v for k, v in inputs.items() if k not in record}, **record}
