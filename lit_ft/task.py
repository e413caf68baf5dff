"""The task-plugin contract: everything that differs between tasks, behind one small class.

A task plugin is a subclass of `Task` registered under a name (see `lit_ft.registry`). The shared
`FineTuner` builds one instance per run with the data's `info` (label names and the like, saved in the
checkpoint) and the recipe's `task_options`, and calls only the methods below. It never looks at the
task's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn
from torchmetrics import MetricCollection

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule

Batch = dict[str, Any]
"""A batch: `inputs` (the model's keyword arguments, tensors) plus task keys such as `id`."""


class Task:
    """Base class of task plugins.

    Args:
        info: What the data tells the model (for example `label_names`); JSON-serialisable, saved with
            the checkpoint so the model can be rebuilt without the data.
        **options: Task settings from the recipe's `model.task_options`; subclasses take them as typed
            keyword arguments, so an unknown option fails with the list of known ones.
    """

    name: ClassVar[str] = ""
    datamodule: ClassVar[type[TaskDataModule]]
    pipeline_tag: ClassVar[str | None] = None
    """The `transformers.pipeline` task name an export loads in, if any."""
    peft_task_type: ClassVar[str | None] = None
    """The `peft.TaskType` name used when LoRA wraps this task's model."""

    def __init__(self, info: dict[str, Any], **options: Any) -> None:
        if options:
            raise TypeError(f"task '{self.name}' takes no task_options; got {sorted(options)}")
        self.info = info

    def build_model(self, backbone: str) -> nn.Module:
        """Build the pretrained backbone with this task's head; `backbone` is already resolved to a path or id."""
        raise NotImplementedError

    def bind_data(self, datamodule: TaskDataModule) -> None:
        """Called with the run's data module before any batch (fit, validate, test, predict); nothing by default.

        For tasks whose metrics or predictions need the raw rows (say the contexts that answer spans are cut
        from): every process holds the whole split there, so they stay out of batches and metric states."""

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        return model(**batch["inputs"])

    def loss(self, outputs: Any, batch: Batch) -> torch.Tensor:
        return outputs.loss

    def metrics(self) -> MetricCollection:
        """A fresh metric collection; the FineTuner makes one per stage."""
        raise NotImplementedError

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        raise NotImplementedError

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        """One JSON-ready record per input of the batch, each carrying the input's `id`."""
        raise NotImplementedError

    def monitor(self) -> tuple[str, Literal["min", "max"]]:
        """The primary metric (name within the stage's collection) and whether higher is better."""
        raise NotImplementedError

    def samples(self, metrics: MetricCollection) -> list[dict[str, Any]]:
        """Examples to show after an eval epoch (say prompt / reference / prediction), read before the metrics
        reset; logged as a table to W&B and written to `<default_root_dir>/samples/`. None by default."""
        return []

    def write_predictions(self, records: list[dict[str, Any]], path: Path) -> list[Path]:
        """Write gathered prediction records; the default writes JSONL. Returns the files written."""
        from lit_ft.io import write_jsonl

        write_jsonl(records, path)
        return [path]

    def export_extras(self, out_dir: Path) -> None:
        """Write task files an export needs besides the model and tokenizer (none by default)."""
