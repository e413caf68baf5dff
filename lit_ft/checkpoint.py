"""Checkpointing and early stopping on the task's primary metric, and finding a run's best checkpoint later."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from lit_ft.errors import UserError
from lit_ft.io import write_text

POINTER = "best.json"


def _task_monitor(pl_module: LightningModule) -> tuple[str, str]:
    monitor = getattr(pl_module, "monitor", None)
    if not callable(monitor):
        raise UserError("set `monitor` explicitly: the model does not name a primary metric")
    name, mode = monitor()
    return str(name), str(mode)


class TaskCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that watches the task's primary metric unless `monitor` is given.

    Checkpoints go to `<trainer.default_root_dir>/checkpoints` unless `dirpath` is set. After every save it
    writes `best.json` there (best and last paths, score, metric), which `--ckpt_path best` and
    `lit_ft export RUN_DIR` read in later processes.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        monitor: str | None = None,
        mode: str = "min",
        save_last: bool | None = True,
        save_top_k: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(dirpath=dirpath, monitor=monitor, mode=mode, save_last=save_last, save_top_k=save_top_k,
                         **kwargs)
        self._auto_monitor = monitor is None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        if self._auto_monitor:
            self.monitor, mode = _task_monitor(pl_module)
            inf = torch.tensor(torch.inf)
            self.kth_value, self.mode = (inf, "min") if mode == "min" else (-inf, "max")
        super().setup(trainer, pl_module, stage)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
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


class TaskEarlyStopping(EarlyStopping):
    """EarlyStopping on the task's primary metric unless `monitor` is given."""

    def __init__(self, monitor: str | None = None, patience: int = 3, mode: str = "max", **kwargs: Any) -> None:
        super().__init__(monitor=monitor or "", patience=patience, mode=mode, **kwargs)
        self._auto_monitor = monitor is None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._auto_monitor:
            self.monitor, self.mode = _task_monitor(pl_module)
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
