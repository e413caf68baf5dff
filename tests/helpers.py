"""Helpers for driving the CLI in tests on tiny stand-ins."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_ft.commands.cli import LitFtCLI, run

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def tiny_args(root: Path, backbone: Path, files: dict[str, str], logger: str = "false") -> list[str]:
    """Overrides that point a classification recipe at a tiny model, local files and a temporary run dir."""
    args = ["--model.backbone", str(backbone), "--data.init_args.source.hub", "null",
            "--trainer.default_root_dir", str(root), "--trainer.logger", logger, "--trainer.accelerator", "cpu",
            "--data.init_args.text_column", "text", "--data.init_args.label_column", "label",
            "--data.init_args.id_column", "id", *QUIET]
    for split in ("train", "validation", "test", "predict"):
        args += [f"--data.init_args.source.{split}", files.get(split, "null")]
    return args


def cli(*args: Any) -> LitFtCLI:
    result = run([str(a) for a in args])
    assert result is not None
    return result


class InterruptAt(Callback):
    """Ctrl-C at the start of the batch after optimizer step `step` (what Python raises on SIGINT)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


class SigtermAt(Callback):
    """SIGTERM to this process at the first validation batch after optimizer step `step` (mid-validation)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if trainer.global_step == self.step and batch_idx == 0 and not trainer.sanity_checking:
            signal.raise_signal(signal.SIGTERM)


def token_cross_entropy(result: LitFtCLI) -> float:
    """The mean cross-entropy over every labelled token of the run's validation split, from the model's logits
    (labels aligned with the logits, as token classification and encoder-decoder models give them)."""
    import torch

    model, total, count = result.model.model.eval(), 0.0, 0
    with torch.no_grad():
        for batch in result.datamodule.val_dataloader():
            labels = batch["inputs"]["labels"]
            logits = model(**batch["inputs"]).logits
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum").item()
            count += int((labels != -100).sum())
    return total / count
