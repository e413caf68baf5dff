"""What a run prints while it runs: one line per finished stage (with samples/s or tokens/s and the loss), and
the evaluation metrics as a short table (the full set, per class too, is in `<run>/metrics/`:
lit_ft.training.metrics_files).

On a terminal each stage also shows a live tqdm bar that disappears when the stage ends, leaving its one-line
result; piped into a file or a CI log (not a terminal) there are no bars at all, only the same lines, so a log
holds no carriage-return redraws.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

from lit_ft.data_summary import data_summary
from lit_ft.domains import NonNegativeInt
from lit_ft.training.metrics_files import scalar_metrics

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
UNMEASURED = "-"  # a metric with no value this epoch (say, generation metrics when no row was generated for)
TABLE_COLUMNS = 8  # metrics per table row; more wrap onto another header + values pair
STAGE_NAMES = {"validate": "Validation", "test": "Test", "predict": "Predict"}


class _Meter:
    """Counts one stage's batches and samples (or tokens) and the time since it started."""

    def __init__(self, unit: str, first_batch: int = 0) -> None:
        self.unit = unit
        self.start = time.monotonic()
        self.batches = first_batch  # a run resumed mid-epoch starts counting where the epoch stopped
        self.count = 0

    def add(self, batch: Any, world_size: int) -> None:
        self.batches += 1
        self.count += world_size * batch_count(batch, self.unit)

    def line(self, label: str, total: int | float | None) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        of = f"/{int(total)}" if total is not None and total != float("inf") else ""
        return f"{label}  {self.batches}{of} batches  {elapsed:.1f}s  {self.count / elapsed:,.0f} {self.unit}/s"

    def rate(self) -> str:
        return f"{self.count / max(time.monotonic() - self.start, 1e-6):,.0f}"


def batch_count(batch: Any, unit: str) -> int:
    if not isinstance(batch, dict):
        return 0
    if unit == "tokens":
        if "row_tokens" in batch:  # packed rows: no mask, padding only at the end of the shorter rows
            return int(sum(batch["row_tokens"]))
        inputs = batch.get("inputs", {})
        mask = inputs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            return int(mask.sum())
    return len(batch.get("id", ()))


def task_unit(pl_module: LightningModule) -> str:
    return str(getattr(getattr(pl_module, "plugin", None), "throughput_unit", "samples"))


def epoch_label(trainer: Trainer) -> str:
    """`Epoch 3/3` (1-based, out of max_epochs), or `Epoch 3` when a step limit ends the run."""
    epoch, last = trainer.current_epoch + 1, trainer.max_epochs
    if last is not None and last > 0 and trainer.max_steps in (-1, None):
        return f"Epoch {epoch}/{last}"
    return f"Epoch {epoch}"


def epoch_batches(trainer: Trainer, first_batch: int) -> int | float:
    """Batches the epoch opening at `first_batch` will train: all of its loader's, or fewer when `max_steps` ends
    the run first. Counted when the epoch opens: Lightning's own total shrinks with each step under `max_epochs
    -1`, down to 0 by the time the epoch's line is printed."""
    batches = trainer.num_training_batches
    if trainer.max_steps is None or trainer.max_steps < 0:
        return batches
    left = (trainer.max_steps - trainer.global_step) * trainer.accumulate_grad_batches
    return min(batches, first_batch + left)


def format_value(value: float) -> str:
    return f"{value:.4g}" if value != 0 and not 1e-3 <= abs(value) < 1e4 else f"{value:.4f}"


def metric_table(stage: str, values: dict[str, float]) -> list[str]:
    """`stage/name` scalars (not per-class `stage/name/key`) as aligned header + value lines, loss first; a metric
    that was not measured (NaN: no row updated it) shows `-`."""
    flat = {k.split("/", 1)[1]: UNMEASURED if math.isnan(v) else format_value(v) for k, v in values.items()
            if k.startswith(f"{stage}/") and k.count("/") == 1}
    names = sorted(flat, key=lambda n: (n != "loss", n))
    lines = []
    for at in range(0, len(names), TABLE_COLUMNS):
        cells = [(n, flat[n]) for n in names[at : at + TABLE_COLUMNS]]
        widths = [max(len(n), len(v)) for n, v in cells]
        head = stage if at == 0 else ""
        lines.append(f"  {head:<5} " + "  ".join(n.rjust(w) for (n, _), w in zip(cells, widths, strict=True)))
        lines.append(f"  {'':<5} " + "  ".join(v.rjust(w) for (_, v), w in zip(cells, widths, strict=True)))
    return lines


class LitFtProgressBar(TQDMProgressBar):
    """lit_ft's progress display: `Epoch 3/3` labels, samples/s (tokens/s for generation tasks) and the loss,
    and a metrics table after each validation and test (`lit_ft.training.metrics_files` writes every metric to
    `<default_root_dir>/metrics/*.json`, with or without this bar).

    Args:
        refresh_rate: Batches between bar updates on a terminal.
        live: Show live bars (default: only when standard output is a terminal).
    """

    def __init__(self, refresh_rate: NonNegativeInt = 1, live: bool | None = None) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=True)  # leave: a new train bar each epoch
        self.live = sys.stdout.isatty() if live is None else live
        self._meters: dict[str, _Meter] = {}
        self._train_open = False
        self._epoch_batches: int | float = 0  # the open epoch's batches, counted when it opens

    # ---- bars: transient on a terminal, absent otherwise --------------------------------------------
    def _bar(self, desc: str, position: int = 0) -> Tqdm:
        return Tqdm(desc=desc, position=2 * self.process_position + position, disable=self.is_disabled or not self.live,
                    leave=False, dynamic_ncols=True, file=sys.stdout, smoothing=0, bar_format=BAR_FORMAT)

    def init_sanity_tqdm(self) -> Tqdm:
        return self._bar("Sanity check")

    def init_train_tqdm(self) -> Tqdm:
        return self._bar("Epoch")

    def init_validation_tqdm(self) -> Tqdm:
        return self._bar("Validation", position=int(self._train_open))  # below a still-running epoch bar

    def init_test_tqdm(self) -> Tqdm:
        return self._bar("Test")

    def init_predict_tqdm(self) -> Tqdm:
        return self._bar("Predict")

    @staticmethod
    def _restart(bar: Tqdm, total: int | float, desc: str) -> None:
        """A new eval dataloader: reset the bar, labelled by the stage alone (Lightning adds `DataLoader 0`)."""
        bar.reset(total=convert_inf(total))
        bar.set_description(desc)

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            desc = "Sanity check" if trainer.sanity_checking else "Validation"
            self._restart(self.val_progress_bar, self.total_val_batches_current_dataloader, desc)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            self._restart(self.test_progress_bar, self.total_test_batches_current_dataloader, "Test")

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        if self.has_dataloader_changed(dataloader_idx):
            self._restart(self.predict_progress_bar, self.total_predict_batches_current_dataloader, "Predict")

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        shown = {k.rsplit("/", 1)[-1]: f"{float(v):.4f}" for k, v in trainer.progress_bar_metrics.items()}
        meter = self._meters.get("train")
        return {f"{meter.unit}/s": meter.rate(), **shown} if meter else shown

    def say(self, *lines: str) -> None:
        if self.trainer.is_global_zero and lines:
            Tqdm.write("\n".join(lines), file=sys.stdout)
            sys.stdout.flush()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        datamodule = getattr(trainer, "datamodule", None)
        if trainer.is_global_zero and datamodule is not None:
            self.say(*data_summary(datamodule))

    # ---- training -------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        self._open_train(trainer, first_batch=0)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if not self._train_open:
            # resumed mid-epoch: Lightning calls no `on_train_epoch_start` for an epoch that had started before
            self._open_train(trainer, first_batch=batch_idx)

    def _open_train(self, trainer: Trainer, first_batch: int) -> None:
        """A new epoch bar and meter, counting from `first_batch` (0, or where a resumed epoch continues)."""
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.initial = bar.n = first_batch
        bar.set_description(epoch_label(trainer))
        self._meters["train"] = _Meter(task_unit(trainer.lightning_module), first_batch)
        self._epoch_batches = epoch_batches(trainer, first_batch)
        self._train_open = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._meter("train", pl_module).add(batch, trainer.world_size)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _finish_train(self, trainer: Trainer) -> None:
        """The epoch's one line: label, batches, time, throughput, last training loss."""
        if not self._train_open:
            return
        self._train_open = False
        self.train_progress_bar.close()
        line = self._meter("train", trainer.lightning_module).line(epoch_label(trainer), self._epoch_batches)
        loss = trainer.progress_bar_metrics.get("train/loss")
        self.say(line + ("" if loss is None else f"  loss {float(loss):.4f}"))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish_train(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    # ---- evaluation -----------------------------------------------------------------------------
    def _start(self, stage: str, pl_module: LightningModule) -> None:
        self._meters[stage] = _Meter(task_unit(pl_module))

    def _meter(self, stage: str, pl_module: LightningModule) -> _Meter:
        """The stage's meter, started on first use when its start hook did not run (a resumed run skips some)."""
        if stage not in self._meters:
            self._start(stage, pl_module)
        return self._meters[stage]

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        meter = self._meters.get("train")
        if trainer.state.fn == "fit" and not trainer.sanity_checking and meter is not None:
            if meter.batches >= self._epoch_batches:  # validation at the end of the epoch (or of the run)
                self._finish_train(trainer)
        super().on_validation_start(trainer, pl_module)
        self._start("val", pl_module)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._meter("val", pl_module).add(batch, trainer.world_size)
        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.sanity_checking:
            return
        self._report(trainer, "val")

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_start(trainer, pl_module)
        self._start("test", pl_module)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._meter("test", pl_module).add(batch, trainer.world_size)
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_end(trainer, pl_module)
        self._report(trainer, "test")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self._start("predict", pl_module)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._meter("predict", pl_module).add(batch, trainer.world_size)
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_end(trainer, pl_module)  # resets the current dataloader index: count from the trainer
        self.say(self._meter("predict", pl_module).line("Predict", sum(trainer.num_predict_batches)))

    def _report(self, trainer: Trainer, stage: str) -> None:
        """Stage line (outside fit) and the metrics table."""
        values = scalar_metrics(trainer, stage)
        fn = str(getattr(trainer.state.fn, "value", ""))
        meter = self._meter(stage, trainer.lightning_module)
        lines = [] if fn == "fit" else [meter.line(STAGE_NAMES.get(fn, fn), self._stage_total(stage))]
        self.say(*lines, *metric_table(stage, values))

    def _stage_total(self, stage: str) -> int | float | None:
        totals = self.trainer.num_val_batches if stage == "val" else self.trainer.num_test_batches
        return sum(totals) if totals else None
