"""`TrialReporter`: the callback that ties one trial's `fit` to its Optuna trial.

At fit start it learns what the run monitors (the checkpoint's metric: the task's primary validation metric unless
`checkpoint.monitor` says otherwise) and its direction (the metric's own, see `lit_ft.monitor`), and hands them to
the search, which returns the Optuna trial (the study is created then, with that direction, if it is new). After
every validation it reports the monitored value at the current optimizer step and raises `optuna.TrialPruned` when
the pruner says so; Lightning stops the fit there (no export, no further steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_ft.monitor import Mode

Attach = Callable[[str, Mode], Any]  # (monitor, mode) -> optuna.Trial


class TrialReporter(Callback):
    def __init__(self, attach: Attach) -> None:
        self.attach = attach
        self.trial: Any = None
        self.monitor = ""
        self.mode: Mode = "max"
        self.values: dict[int, float] = {}

    @property
    def started(self) -> bool:
        """Whether the fit got as far as training (before that, a failure is the config's, not the values')."""
        return self.trial is not None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.monitor, self.mode = watched(trainer, pl_module)
        self.trial = self.attach(self.monitor, self.mode)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.trial is None:
            return
        logged = trainer.callback_metrics.get(self.monitor)
        if logged is None:
            return
        value, step = float(logged), trainer.global_step
        self.values[step] = value
        self.trial.report(value, step)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"{self.monitor} {value:.4f} at step {step}")

    def best(self) -> float | None:
        """The best finite value reported (the score of the trial's best checkpoint), or None."""
        finite = [v for v in self.values.values() if math.isfinite(v)]
        if not finite:
            return None
        return max(finite) if self.mode == "max" else min(finite)


def watched(trainer: Trainer, pl_module: LightningModule) -> tuple[str, Mode]:
    """The key the run's checkpoint watches and its direction, else the model's primary metric."""
    checkpoint = trainer.checkpoint_callback
    monitor = getattr(checkpoint, "monitor", None)
    if monitor:
        return str(monitor), "max" if getattr(checkpoint, "mode", "min") == "max" else "min"
    primary = getattr(pl_module, "monitor", None)
    if not callable(primary):
        raise RuntimeError("lit_ft tune needs a model that names its primary metric (lit_ft.FineTuner)")
    name, mode = primary()
    return str(name), "max" if mode == "max" else "min"
