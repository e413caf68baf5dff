"""The trainer commands (fit | validate | test | predict): lit_ft's LightningCLI subclass.

Kept apart from `lit_ft.cli` (the `lit_ft` entry point) so that `lit_ft --help`, `lit_ft tasks` and
`lit_ft export --help` start without importing Lightning.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_ft.checkpoint import TaskCheckpoint, find_checkpoint, run_id_of
from lit_ft.datamodule import TaskDataModule
from lit_ft.export import ExportBest
from lit_ft.module import FineTuner
from lit_ft.predictions import PredictionWriter
from lit_ft.registry import get_task
from lit_ft.summary import RunSummary
from lit_ft.task import restored_options
from lit_ft.wandb_setup import SaveConfigToLoggers, ensure_wandb_mode, finish_wandb_run, resume_wandb_run

CHECKPOINT_ALIASES = ("best", "last")
DEFAULT_GRADIENT_CLIP = 1.0


class LitFtCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--plugins", type=list[str] | str | None, default=None,  # str: `a.py,b.py`, see cli.plugin_specs
            help="Local task-plugin modules (.py files or module names) to load before parsing",
        )
        parser.add_lightning_class_args(TaskCheckpoint, "checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ExportBest, "export")
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.link_arguments("model.backbone", "data.init_args.tokenizer")
        # lit_ft's batch samplers shard across processes themselves (see lit_ft/sampler.py)
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        # the HF Trainer's max_grad_norm: without it, fine-tuning from a fresh head is seed-fragile (docs/training.md)
        parser.set_defaults({"trainer.gradient_clip_val": DEFAULT_GRADIENT_CLIP})

    def _parse_ckpt_path(self) -> None:
        """`--ckpt_path best|last` in a new process (`fit --ckpt_path last` resumes): read `checkpoints/best.json`.

        Lightning then rebuilds the model from the checkpoint's hyperparameters, replacing the config's; the task
        options given now (recipe and command line) are put back over the saved ones, key by key, so decoding and
        scoring settings apply (`restored_options`: an option that shapes the model must not change)."""
        sub = self.config.get("subcommand")
        if not sub:
            return super()._parse_ckpt_path()
        cfg = self.config[sub]
        if cfg.get("ckpt_path") in CHECKPOINT_ALIASES:
            cfg.ckpt_path = find_checkpoint(_checkpoint_dir(cfg), cfg.ckpt_path)
        given = cfg.model.get("task_options")
        if not cfg.get("ckpt_path"):
            return super()._parse_ckpt_path()
        cfg.model.task_options = None  # so what Lightning parses from the checkpoint is the saved options alone
        super()._parse_ckpt_path()
        model = self.config[sub].model
        if given:
            model.task_options = restored_options(get_task(model.task), model.get("task_options"), given)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        finally:
            finish_wandb_run(self.trainer)

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        loggers = cfg.trainer.logger
        wandb_loggers = [lg for lg in (loggers if isinstance(loggers, list) else [loggers])
                         if "Wandb" in str(getattr(lg, "class_path", ""))]
        message = ensure_wandb_mode(bool(wandb_loggers))
        if message:
            print(message, file=sys.stderr)
        if sub == "fit" and cfg.get("ckpt_path"):
            resume_wandb_run(wandb_loggers, run_id_of(_checkpoint_dir(cfg)))


def _checkpoint_dir(cfg: Any) -> str:
    return cfg.checkpoint.dirpath or os.path.join(cfg.trainer.default_root_dir or ".", "checkpoints")


def trainer_verbs() -> list[str]:
    """The subcommands LightningCLI itself provides (the check that `lit_ft.cli.COMMANDS` lists them all)."""
    return list(LitFtCLI.subcommands())


def run_trainer(argv: list[str]) -> LitFtCLI:
    """Parse `argv` (a trainer verb first) and run it."""
    return LitFtCLI(
        FineTuner,
        TaskDataModule,
        subclass_mode_data=True,
        save_config_callback=SaveConfigToLoggers,
        save_config_kwargs={"overwrite": True},
        args=argv,
        auto_configure_optimizers=False,
    )
