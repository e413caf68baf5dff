"""Stop a diverging run at the first non-finite loss or gradient, before it can reach a checkpoint or an export."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lit_ft.adapters.torch import max_abs_norms
from lit_ft.domains import NonNegativeInt
from lit_ft.errors import UserError


class NonFiniteError(UserError):
    """Training produced NaN or inf (loss, gradients or weights)."""


def _first_non_finite(named: list[tuple[str, torch.Tensor]]) -> str | None:
    if not named:
        return None
    # one reduction per tensor and a single host sync: max |x| is inf for inf and NaN for NaN
    norms = max_abs_norms([t.detach() for _, t in named])
    finite = torch.isfinite(torch.stack([n.float() for n in norms])).cpu()  # stacked on the device, then one copy
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def non_finite_parameters(module: nn.Module | None) -> str | None:
    """The name of the first parameter holding NaN or inf, or None when all are finite."""
    if module is None:
        return None
    return _first_non_finite([(n, p) for n, p in module.named_parameters() if p.numel()])


class NanGuard(Callback):
    """Checks every optimizer step's loss and gradients; NaN or inf stops the run with one line (exit status 2).

    Checkpoints and exports also refuse non-finite weights, so a diverged model is never recorded as best.
    With `16-mixed` precision the gradient scaler already skips steps with inf/NaN gradients, so only the
    loss is checked there.

    Args:
        enabled: Check the loss and gradients of every optimizer step.
        skip_steps: Instead of stopping, drop the update of up to this many bad steps (over the whole run,
            warning each time); the run stops at the next one.
    """

    def __init__(self, enabled: bool = True, skip_steps: NonNegativeInt = 0) -> None:
        if skip_steps < 0:
            raise UserError(f"nan_guard.skip_steps must be >= 0, got {skip_steps}")
        self.enabled = enabled
        self.skip_steps = skip_steps
        self.skipped = 0
        self._bad_loss: float | None = None

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if self.enabled and not bool(torch.isfinite(loss.detach()).all()):
            self._bad_loss = float(loss.detach().float().flatten()[0])

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        bad_loss, self._bad_loss = self._bad_loss, None
        if not self.enabled:
            return
        scaled = getattr(trainer.precision_plugin, "scaler", None) is not None
        bad_grad = None if scaled else _first_non_finite(
            [(n, p.grad) for n, p in pl_module.named_parameters() if p.grad is not None and p.grad.numel()]
        )
        if bad_loss is None and bad_grad is None:
            return
        what = f"loss ({bad_loss})" if bad_loss is not None else f"gradient of '{bad_grad}'"
        batch = trainer.fit_loop.epoch_loop.batch_idx
        where = f"at optimizer step {trainer.global_step + 1} (epoch {trainer.current_epoch}, batch {batch})"
        if self.skipped < self.skip_steps:
            self.skipped += 1
            optimizer.zero_grad(set_to_none=True)  # params without gradients are left as they are
            rank_zero_info(f"lit_ft: non-finite {what} {where}: update skipped ({self.skipped} of at most "
                           f"{self.skip_steps})")
            return
        lr = pl_module.hparams.get("learning_rate")
        raise NonFiniteError(
            f"non-finite {what} {where}: training diverged; lower model.learning_rate (now {lr}) or use "
            f"precision 32-true (now {trainer.precision}), or allow skipping bad steps with "
            f"--nan_guard.skip_steps N (skipped so far: {self.skipped})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
