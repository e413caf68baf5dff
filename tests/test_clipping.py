"""Gradient clipping with the default fused AdamW under every precision, accumulation included.

`configs/precision/16-mixed.yaml` falls back to bf16 on a CPU in Lightning, so the fp16 GradScaler path is driven
here through the same `MixedPrecision` plugin with `device: cpu`: the path a CUDA run takes, scaler included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import cli, tiny_args
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.precision import MixedPrecision

CLIP = 1e-5  # far below a fresh model's gradient norm, so every step is clipped
FP16_SCALER = ["--trainer.precision", "null", "--trainer.plugins", "lightning.pytorch.plugins.precision.MixedPrecision",
               "--trainer.plugins.init_args.precision", "16-mixed", "--trainer.plugins.init_args.device", "cpu"]
PRECISIONS = {"32-true": ["--trainer.precision", "32-true"], "bf16-mixed": ["--trainer.precision", "bf16-mixed"],
              "bf16-true": ["--trainer.precision", "bf16-true"], "16-mixed+GradScaler": FP16_SCALER}


class StepNorms(Callback):
    """Gradient norms before clipping, and as the optimizer stepped with them (read after the step)."""

    def __init__(self) -> None:
        self.before_clip: list[float] = []
        self.stepped: list[float] = []
        self._steps = 0

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: object) -> None:
        self.before_clip.append(_grad_norm(pl_module))  # fp16: unscaled already, as clipping needs

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: object) -> None:
        if trainer.global_step > self._steps:  # an optimizer step happened; zero_grad comes with the next batch
            self._steps = trainer.global_step
            self.stepped.append(_grad_norm(pl_module))


def _scale(trainer: Trainer) -> float:
    plugin = trainer.precision_plugin
    scaler = plugin.scaler if isinstance(plugin, MixedPrecision) else None
    return 1.0 if scaler is None else float(scaler.get_scale())


def _grad_norm(module: LightningModule) -> float:
    grads = [p.grad.float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(grads)))


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_clipping_works_with_fused_adamw(
    precision: str, tmp_path: Path, tiny_bert: Path, sentiment_files: dict
) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    result = cli("fit", "--config", "configs/quickstart.yaml", *args, *PRECISIONS[precision],
                 "--trainer.gradient_clip_val", CLIP, "--trainer.accumulate_grad_batches", 2,
                 "--trainer.max_steps", 3, "--trainer.limit_val_batches", 1, "--data.init_args.batch_size", 4,
                 "--export.enabled", "false", "--trainer.callbacks+=test_clipping.StepNorms")
    norms = next(cb for cb in result.trainer.callbacks if isinstance(cb, StepNorms))
    assert result.trainer.optimizers[0].defaults["fused"] is True
    assert result.trainer.global_step == 3 and len(norms.stepped) == 3
    if precision.startswith("16-mixed"):  # the scaler was in play
        assert _scale(result.trainer) > 1.0
    assert min(norms.before_clip) > 10 * CLIP, "the test needs gradients that clipping changes"
    assert norms.stepped == pytest.approx([CLIP] * 3, rel=2e-2)
