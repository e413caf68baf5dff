"""Checkpointing and early stopping on the task's primary metric, and finding a run's best checkpoint later."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from lit_ft.errors import UserError
from lit_ft.io import write_text

POINTER = "best.json"


def _task_monitor(pl_module: LightningModule, monitor: str | None) -> tuple[str, str]:
    """The task's primary metric and its direction, or the direction of an explicitly given `monitor`."""
    if monitor is None:
        primary = getattr(pl_module, "monitor", None)
        if not callable(primary):
            raise UserError("set `monitor` explicitly: the model does not name a primary metric")
        name, mode = primary()
        return str(name), str(mode)
    mode_of = getattr(pl_module, "monitor_mode", None)
    if not callable(mode_of):
        raise UserError(f"set `mode` (min or max) for monitor '{monitor}': the model does not know its direction")
    return monitor, str(mode_of(monitor))


class TaskCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that watches the task's primary metric unless `monitor` is given.

    The direction (`mode`) is the metric's own (`higher_is_better`) unless given. Checkpoints go to
    `<trainer.default_root_dir>/checkpoints` unless `dirpath` is set. After every save it writes `best.json` there
    (best and last paths, score, metric), which `--ckpt_path best` and `lit_ft export RUN_DIR` read in later
    processes.

    A fit always ends validated: when no validation ran after the last optimizer step (a `max_steps` fit shorter
    than an epoch, `check_val_every_n_epoch` skipping the last epoch, ...), the final model is validated before
    the last checkpoint is written, so the best checkpoint is scored and includes the final weights.

    The best checkpoints hold the weights only (`save_weights_only_best`; about a third of a full one with
    AdamW's two moments), enough for validate / test / predict / export; `last` keeps the optimizer,
    scheduler and loop state that `fit --ckpt_path last` resumes from.

    Args:
        dirpath: Checkpoint directory; default `<trainer.default_root_dir>/checkpoints`.
        monitor: Logged key to watch (`val/<metric>`); default the task's primary metric.
        mode: `min` or `max`; default the monitored metric's own direction.
        save_last: Also keep `last.ckpt` (for resuming).
        save_top_k: Best checkpoints kept.
        validate_at_end: Validate the final model when no validation ran after the last optimizer step.
        save_weights_only_best: Save the monitored (best) checkpoints without optimizer state.
        **kwargs: Further `ModelCheckpoint` arguments.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] | None = None,
        save_last: bool | None = True,
        save_top_k: int = 1,
        validate_at_end: bool = True,
        save_weights_only_best: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(dirpath=dirpath, monitor=monitor, mode=mode or "min", save_last=save_last,
                         save_top_k=save_top_k, **kwargs)
        self._given_monitor = monitor
        self._auto_mode = mode is None
        self.validate_at_end = validate_at_end
        self.last_validated_step = -1
        self.save_weights_only_best = save_weights_only_best

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        if self._given_monitor is None or self._auto_mode:
            self.monitor, mode = _task_monitor(pl_module, self._given_monitor)
            if self._auto_mode:
                inf = torch.tensor(torch.inf)
                self.kth_value, self.mode = (inf, "min") if mode == "min" else (-inf, "max")
        super().setup(trainer, pl_module, stage)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.last_validated_step = trainer.global_step
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        unvalidated = self.last_validated_step != trainer.global_step
        if self.validate_at_end and unvalidated and _fit_ends_after_this_epoch(trainer):
            _validate_now(trainer, self.last_validated_step)
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def _keep_last_current(self, trainer: Trainer) -> None:
        """Lightning writes `last` only when a best checkpoint is written at the same step; resuming from `last`
        must continue from the latest state, so write it whenever the step has not been saved."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        full = self.save_weights_only
        # Lightning sets last_model_path before saving `last`; every other file here is a best (top-k) one
        self.save_weights_only = full or (self.save_weights_only_best and filepath != self.last_model_path)
        try:
            super()._save_checkpoint(trainer, filepath)
        finally:
            self.save_weights_only = full
        if trainer.is_global_zero and self.dirpath is not None:
            score = self.best_model_score
            wandb_ids = [lg.version for lg in trainer.loggers if isinstance(lg, WandbLogger)]
            pointer = {
                "wandb_run_id": wandb_ids[0] if wandb_ids else None,  # resumed with the checkpoint
                "best": self.best_model_path or None,
                "last": self.last_model_path or filepath,
                "monitor": self.monitor,
                "mode": self.mode,
                "score": None if score is None else float(score),
            }
            write_text(json.dumps(pointer, indent=2), Path(self.dirpath) / POINTER)


def _fit_ends_after_this_epoch(trainer: Trainer) -> bool:
    """Whether the fit loop stops after the epoch now ending (max_steps, max_epochs or a requested stop)."""
    loop = trainer.fit_loop
    if loop.max_steps != -1 and trainer.global_step >= loop.max_steps:
        return True
    max_epochs = loop.max_epochs
    if max_epochs is not None and max_epochs != -1 and trainer.current_epoch + 1 >= max_epochs:
        return True
    return trainer.should_stop and loop._can_stop_early


def _validate_now(trainer: Trainer, last_validated: int) -> None:
    """Run the fit's validation loop on the current weights, as Lightning does within an epoch."""
    if not trainer.enable_validation or trainer.global_step == 0:
        return
    since = "no validation ran yet" if last_validated < 0 else f"the last one was at step {last_validated}"
    if trainer.is_global_zero:
        print(f"lit_ft: validating the final model at step {trainer.global_step} ({since}), so the best "
              "checkpoint is scored", flush=True)
    trainer.validating = True
    trainer.fit_loop.epoch_loop.val_loop.run()
    trainer.training = True


class TaskEarlyStopping(EarlyStopping):
    """EarlyStopping on the task's primary metric unless `monitor` is given.

    Args:
        monitor: Logged key to watch (`val/<metric>`); default the task's primary metric.
        patience: Validations without improvement before stopping.
        mode: `min` or `max`; default the monitored metric's own direction.
        **kwargs: Further `EarlyStopping` arguments.
    """

    def __init__(self, monitor: str | None = None, patience: int = 3, mode: Literal["min", "max"] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(monitor=monitor or "", patience=patience, mode=mode or "min", **kwargs)
        self._given_monitor = monitor
        self._auto_mode = mode is None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._given_monitor is None or self._auto_mode:
            self.monitor, mode = _task_monitor(pl_module, self._given_monitor)
            if self._auto_mode:
                self.mode = mode
                # EarlyStopping signs min_delta and starts best_score by the mode given to __init__
                self.min_delta = abs(self.min_delta) * (1 if self.monitor_op == torch.gt else -1)
                self.best_score = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        super().setup(trainer, pl_module, stage)


def run_id_of(checkpoint_dir: str) -> str | None:
    """The W&B run id recorded with a run's checkpoints, if any."""
    pointer = Path(checkpoint_dir) / POINTER
    return json.loads(pointer.read_text()).get("wandb_run_id") if pointer.is_file() else None


def find_checkpoint(where: str, which: str = "best") -> str:
    """Resolve a run directory, a checkpoint directory or `best.json` to the best (or last) checkpoint file."""
    path = Path(where)
    if path.is_file() and path.suffix == ".ckpt":
        return str(path)
    candidates = [path / POINTER, path / "checkpoints" / POINTER] if path.is_dir() else [path]
    for pointer in candidates:
        if pointer.is_file():
            found = json.loads(pointer.read_text()).get(which)
            if found and Path(found).is_file():
                return str(found)
            raise FileNotFoundError(f"{pointer} names no existing {which} checkpoint ({found!r}); train first")
    raise FileNotFoundError(
        f"no checkpoint found at '{where}': give a .ckpt file, or a run directory holding checkpoints/{POINTER} "
        "(written by `lit_ft fit`)"
    )
