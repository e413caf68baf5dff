"""Weights & Biases: offline on its own when there are no credentials, and the full config in the run."""

from __future__ import annotations

import netrc
import os
import sys
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def ensure_wandb_mode(uses_wandb: bool) -> str | None:
    """Switch W&B to offline mode when it would otherwise ask for a login; returns a message for the user."""
    if not uses_wandb or os.environ.get("WANDB_MODE") or has_wandb_credentials():
        return None
    os.environ["WANDB_MODE"] = "offline"
    return ("lit_ft: no W&B credentials (WANDB_API_KEY or `wandb login`): logging offline. "
            "Upload later with `wandb sync <run dir>` (printed at the end of training).")


def finish_wandb_run(trainer: Trainer) -> None:
    """End the W&B run once the command is done, so a later command in the same process starts its own run."""
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        if wandb.run is not None:
            wandb.run.finish()


def resume_wandb_run(logger_configs: list[Any], run_id: str | None) -> None:
    """Continue the W&B run recorded with the checkpoint being resumed, unless the config names a run id."""
    for cfg in logger_configs:
        init_args = cfg.init_args
        if run_id and not init_args.get("id"):
            init_args["id"] = run_id
            init_args["resume"] = "allow"
            print(f"lit_ft: resuming W&B run {run_id} with the checkpoint", file=sys.stderr)


class SaveConfigToLoggers(SaveConfigCallback):
    """Saves config.yaml in the log directory and logs the full parsed config to every logger (W&B: run config)."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config: dict[str, Any] = self.config.as_dict()
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update({"lit_ft_config": config}, allow_val_change=True)
            else:
                logger.log_hyperparams({"lit_ft_config": config})
