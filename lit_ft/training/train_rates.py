"""Learning rate and training throughput as logged metrics, so every logger (CSV, TensorBoard, W&B) holds them
next to `train/loss` and `lit_ft report` can draw them.

Logged at each training step (the loggers keep every `trainer.log_every_n_steps`-th value):
- `train/lr`: the learning rate of the step (first parameter group; lit_ft sets the same rate on every group),
  read before the step as Lightning's `LearningRateMonitor` does;
- `train/samples_per_sec` (or `train/tokens_per_sec` for tasks whose `Task.throughput_unit` is tokens): examples
  (or non-padding input tokens) per second since the epoch started, over all processes, validation time left out
  (a mid-epoch validation does not dent the curve).

Each epoch logs at least once: a `log_every_n_steps` above an epoch's optimizer steps (or above `max_steps`) is
lowered to them for the fit, since Lightning logs a step only when its number is a multiple of the interval and
a short fit (an SFT run of a few steps per epoch) would otherwise log no training curve at all.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_ft.training.progress import batch_count, task_unit


class TrainRates(Callback):
    """Logs `train/lr` and `train/<unit>_per_sec` at every training step (added by the lit_ft CLI)."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._count = 0
        self._lr: float | None = None
        self._paused: float | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        cast(Any, trainer).log_every_n_steps = log_interval(trainer)  # set at Trainer init, not declared on it

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.monotonic()
        self._count = 0

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._paused = time.monotonic()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._paused is not None:
            self._start += time.monotonic() - self._paused  # the clock of the training epoch skips validation
            self._paused = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        groups = trainer.optimizers[0].param_groups if trainer.optimizers else []
        self._lr = float(groups[0]["lr"]) if groups else None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        unit = task_unit(pl_module)
        self._count += trainer.world_size * batch_count(batch, unit)
        values = {f"train/{unit}_per_sec": self._count / max(time.monotonic() - self._start, 1e-6)}
        if self._lr is not None:
            values["train/lr"] = self._lr
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1, sync_dist=False)


def log_interval(trainer: Trainer) -> int:
    """`trainer.log_every_n_steps`, at most the optimizer steps of an epoch and `max_steps` (0 stays 0: no logs)."""
    every = int(cast(Any, trainer).log_every_n_steps)
    batches = trainer.num_training_batches
    if every <= 1 or not math.isfinite(batches) or batches < 1:
        return every
    # Lightning steps the optimizer on an epoch's last batch even when it ends an accumulation early
    limits = [every, math.ceil(int(batches) / trainer.accumulate_grad_batches)]
    if trainer.max_steps > 0:
        limits.append(trainer.max_steps)
    return max(1, min(limits))
