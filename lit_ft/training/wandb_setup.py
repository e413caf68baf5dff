"""Weights & Biases: offline on its own when there are no credentials, and the full config in the run."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from lit_ft.adapters.lightning import wandb_init_args


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
    return "lit_ft: W&B logs offline (no WANDB_API_KEY or `wandb login`); the run's end says how to upload it"


def drop_unset_anonymous(loggers: list[Any]) -> None:
    """Lightning hands W&B `anonymous=None`, which W&B answers with a deprecation warning: leave it out."""
    for logger in loggers:
        init = wandb_init_args(logger) if isinstance(logger, WandbLogger) else None
        if init is not None and init.get("anonymous") is None:
            init.pop("anonymous", None)


def finish_wandb_run(trainer: Trainer) -> None:
    """End the W&B run once the command is done, so a later command in the same process starts its own run."""
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        if wandb.run is not None:
            wandb.run.finish()


def group_wandb_runs(logger_configs: list[Any], subcommand: str, fit_run_id: str | None) -> None:
    """One W&B group per training run: `fit` is its own group (job `fit`); `validate`/`test`/`predict` with that
    run's checkpoints join the fit's group as a job of their name (`<name>-test`), instead of a stray run."""
    for cfg in logger_configs:
        init_args = cfg.init_args
        if subcommand == "fit":
            if not init_args.get("id") and not init_args.get("version"):
                from wandb.sdk.lib.runid import generate_id

                init_args["id"] = generate_id()
            init_args["group"] = init_args.get("group") or init_args.get("id") or init_args.get("version")
        elif fit_run_id and not init_args.get("group"):
            init_args["group"] = fit_run_id
            if init_args.get("name"):
                init_args["name"] = f"{init_args['name']}-{subcommand}"
        init_args["job_type"] = init_args.get("job_type") or subcommand


class SaveConfigToLoggers(SaveConfigCallback):
    """Saves the config at the run root (`<default_root_dir>/config.yaml` for fit, `config_<command>.yaml` for
    the others, so a later test does not replace the training config) and logs the full parsed config to every
    logger (W&B: run config)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir and trainer.is_global_zero:
            command = str(getattr(stage, "value", stage))  # a TrainerFn, whose str() is `TrainerFn.TESTING`
            name = self.config_filename if command == "fit" else f"{Path(self.config_filename).stem}_{command}.yaml"
            path = Path(trainer.default_root_dir) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_unset=False, overwrite=self.overwrite,
                             multifile=self.multifile)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config: dict[str, Any] = self.config.as_dict()
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update({"lit_ft_config": config}, allow_val_change=True)
            else:
                logger.log_hyperparams({"lit_ft_config": config})
