"""`lit_ft`: fit | validate | test | predict through LightningCLI, plus `tasks` and `export`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_ft.checkpoint import TaskCheckpoint, find_checkpoint, run_id_of
from lit_ft.datamodule import TaskDataModule
from lit_ft.errors import DEBUG_FLAG, EXIT_USER_ERROR, debug_requested, one_line, user_error_in_chain
from lit_ft.export import ExportBest, export_model, load_checkpoint_module
from lit_ft.module import FineTuner
from lit_ft.predictions import PredictionWriter
from lit_ft.registry import available_tasks, load_plugin_module
from lit_ft.summary import RunSummary
from lit_ft.wandb_setup import SaveConfigToLoggers, ensure_wandb_mode, finish_wandb_run, resume_wandb_run

CHECKPOINT_ALIASES = ("best", "last")


class LitFtCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--plugins", type=list[str] | str | None, default=None,  # str: `a.py,b.py`, see _plugin_specs
            help="Local task-plugin modules (.py files or module names) to load before parsing",
        )
        parser.add_lightning_class_args(TaskCheckpoint, "checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ExportBest, "export")
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.link_arguments("model.backbone", "data.init_args.tokenizer")
        # lit_ft's batch samplers shard across processes themselves (see lit_ft/sampler.py)
        parser.set_defaults({"trainer.use_distributed_sampler": False})

    def _parse_ckpt_path(self) -> None:
        """`--ckpt_path best|last` in a new process (`fit --ckpt_path last` resumes): read `checkpoints/best.json`."""
        sub = self.config.get("subcommand")
        if sub and self.config[sub].get("ckpt_path") in CHECKPOINT_ALIASES:
            cfg = self.config[sub]
            cfg.ckpt_path = find_checkpoint(_checkpoint_dir(cfg), cfg.ckpt_path)
        super()._parse_ckpt_path()

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


def _plugin_specs(argv: list[str]) -> list[str]:
    """Plugin modules named on the command line, in config files, or in LIT_FT_PLUGINS (before parsing)."""
    specs = [s for s in os.environ.get("LIT_FT_PLUGINS", "").split(os.pathsep) if s]
    for i, arg in enumerate(argv):
        key, _, value = arg.partition("=")
        value = value or (argv[i + 1] if i + 1 < len(argv) else "")
        if key == "--plugins":
            specs.extend(yaml.safe_load(value) if value.startswith("[") else value.split(","))
        elif key in ("--config", "-c") and Path(value).is_file():
            loaded = yaml.safe_load(Path(value).read_text()) or {}
            specs.extend(loaded.get("plugins") or [] if isinstance(loaded, dict) else [])
    return specs


def list_tasks() -> None:
    tasks = available_tasks()
    width = max((len(n) for n in tasks), default=4)
    print(f"{'task':<{width}}  {'source':<32}  class / data module")
    for name, entry in sorted(tasks.items()):
        data = getattr(entry.task, "datamodule", None)
        where = f"{entry.task.__module__}.{entry.task.__qualname__}"
        if data is not None:
            where += f" / {data.__module__}.{data.__qualname__}"
        print(f"{name:<{width}}  {entry.source:<32}  {where}")


def export_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="lit_ft export", description="Export a checkpoint as a Hugging Face model directory."
    )
    parser.add_argument("checkpoint", help="a .ckpt file, or a run directory (its best checkpoint is used)")
    parser.add_argument("--output_dir", "-o", required=True, help="directory to write (replaced if it exists)")
    parser.add_argument("--which", choices=CHECKPOINT_ALIASES, default="best", help="checkpoint of a run directory")
    parser.add_argument("--adapter_only", action="store_true", help="LoRA: write the adapter instead of merging it")
    parser.add_argument("--plugins", default="", help="comma-separated local plugin modules")
    args = parser.parse_args(argv)
    for spec in filter(None, args.plugins.split(",")):
        load_plugin_module(spec)
    module = load_checkpoint_module(find_checkpoint(args.checkpoint, args.which))
    out = export_model(module, args.output_dir, merge=not args.adapter_only)
    print(f"lit_ft: exported to {out}")


def main(args: list[str] | None = None) -> None:
    """Console entry point (`lit_ft ...`): user errors print one line and exit 2 (`--debug` for the traceback)."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        run(argv)
    except Exception as err:
        found = user_error_in_chain(err)
        if found is None or debug:
            raise
        print(f"lit_ft: error: {one_line(str(found))}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


def run(args: list[str] | None = None) -> LitFtCLI | None:
    """Run a lit_ft command; returns the LightningCLI object for trainer commands (tests inspect it)."""
    argv = list(sys.argv[1:] if args is None else args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*custom batch sampler.*for prediction.*")
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
    if argv[:1] == ["tasks"]:
        list_tasks()
        return None
    if argv[:1] == ["export"]:
        export_main(argv[1:])
        return None
    for spec in _plugin_specs(argv):
        load_plugin_module(spec)
    return LitFtCLI(
        FineTuner,
        TaskDataModule,
        subclass_mode_data=True,
        save_config_callback=SaveConfigToLoggers,
        save_config_kwargs={"overwrite": True},
        args=None if args is None else argv,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()
