"""The end-of-fit report: where the checkpoint, metrics, export and logs are, and what to run next."""

from __future__ import annotations

import math
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lit_ft.training.export import ExportBest


class RunSummary(Callback):
    """Prints a short summary after fit (rank 0).

    Args:
        enabled: Print the summary.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled:
            return
        lines = ["", "lit_ft: training finished"]
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "best_model_path", None):
            score = ckpt.best_model_score  # type: ignore[attr-defined]
            lines.append(f"  best checkpoint : {ckpt.best_model_path}")  # type: ignore[attr-defined]
            if score is not None:
                # Lightning ranks a NaN (a metric that was never measured) as the worst value, +-inf
                shown = f"{float(score):.4f}" if math.isfinite(float(score)) else "- (not measured)"
                lines.append(f"  best {ckpt.monitor}: {shown}")  # type: ignore[attr-defined]
        metrics_dir = Path(trainer.default_root_dir) / "metrics"
        if metrics_dir.is_dir():  # the tables printed each epoch, with every metric (per class too)
            lines.append(f"  metrics         : {metrics_dir}")
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, ExportBest) and cb.exported is not None:
                lines.append(f"  exported model  : {cb.exported}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run_dir = Path(logger.experiment.dir).parent  # .../wandb/<run>/files -> the run folder
                lines.append(f"  W&B run         : {run_dir}")
                if logger.experiment.settings.mode == "offline":
                    lines.append(f"                    offline; upload later with: wandb sync {run_dir}")
            elif logger.log_dir:
                lines.append(f"  logs            : {logger.log_dir}")
        print("\n".join(lines), flush=True)
