"""Every metric of each validation and test written to `<default_root_dir>/metrics/*.json`, whatever the display.

`val_epoch_N.json` after the validation that ends epoch N (1-based), `val_step_S.json` for one run mid-epoch
(`val_check_interval`), `validate.json` for `lit_ft validate`, `test.json` for `lit_ft test`. Each holds the epoch,
the global step and the stage's scalar metrics (per class too), the values the progress table shows. The files do
not depend on the progress bar: a run with `--trainer.enable_progress_bar false` (a script, a scheduler's log)
writes them the same, so `lit_ft report` and the end-of-fit summary find them. Rank 0 writes, atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lit_ft.io import write_text


def scalar_metrics(trainer: Trainer, stage: str) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(trainer.callback_metrics.items())
            if k.startswith(f"{stage}/") and isinstance(v, torch.Tensor) and v.numel() == 1}


class MetricsFiles(Callback):
    """Writes `metrics/*.json` after each validation (sanity check excepted) and test."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.write(trainer, "val", self.validation_name(trainer))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write(trainer, "test", "test.json")

    def validation_name(self, trainer: Trainer) -> str:
        if trainer.state.fn != "fit":
            return "validate.json"
        mid_epoch = not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch  # a resumed epoch too
        return f"val_step_{trainer.global_step}.json" if mid_epoch else f"val_epoch_{trainer.current_epoch + 1}.json"

    @staticmethod
    def write(trainer: Trainer, stage: str, filename: str) -> None:
        values = {k: v for k, v in scalar_metrics(trainer, stage).items() if not math.isnan(v)}  # NaN: not measured
        if trainer.is_global_zero and values:
            record = {"epoch": trainer.current_epoch + int(stage == "val"), "step": trainer.global_step,
                      "metrics": values}
            write_text(json.dumps(record, indent=2), Path(trainer.default_root_dir) / "metrics" / filename)
