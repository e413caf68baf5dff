"""The trainer commands (fit | validate | test | predict): lit_ft's LightningCLI subclass.

Kept apart from `lit_ft.commands.cli` (the `lit_ft` entry point) so that `lit_ft --help`, `lit_ft tasks` and
`lit_ft export --help` start without importing Lightning.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_ft.adapters.lightning import cli_subcommand_parsers
from lit_ft.backbone import locate_backbone
from lit_ft.commands.config_merge import MergingConfigFile
from lit_ft.commands.preflight import check_task_and_data, check_writable, condense_parse_error, join_negative_values
from lit_ft.commands.rules.catalogue import enforce, fit_warnings
from lit_ft.commands.rules.machine import refuse_unusable_attention
from lit_ft.commands.run_plan import RunPlan
from lit_ft.datamodule import TaskDataModule
from lit_ft.ddp_options import apply_ddp_kwargs
from lit_ft.errors import UserError, one_line
from lit_ft.hub import require_hub_data
from lit_ft.module import FineTuner
from lit_ft.owned_dir import check_apart, claim, remove_owned
from lit_ft.quantization import check_quantization
from lit_ft.registry import get_task
from lit_ft.run_lock import holding, is_launching_process
from lit_ft.task import restored_options
from lit_ft.task_defaults import set_task_defaults
from lit_ft.training.checkpoint import TaskCheckpoint, find_checkpoint, read_pointer, run_id_of
from lit_ft.training.consolidate import metadata_file
from lit_ft.training.export import ExportBest
from lit_ft.training.interrupt import StopOnSignal
from lit_ft.training.metrics_files import MetricsFiles
from lit_ft.training.model_summary import ModelLine
from lit_ft.training.nan_guard import NanGuard
from lit_ft.training.predictions import PredictionWriter
from lit_ft.training.progress import LitFtProgressBar
from lit_ft.training.resume import resume_logger_runs
from lit_ft.training.safe_load import load_checkpoint_file
from lit_ft.training.summary import RunSummary
from lit_ft.training.train_rates import TrainRates
from lit_ft.training.wandb_setup import (
    SaveConfigToLoggers,
    drop_unset_anonymous,
    ensure_wandb_mode,
    finish_wandb_run,
    group_wandb_runs,
)

CHECKPOINT_ALIASES = ("best", "last")
DEFAULT_GRADIENT_CLIP = 1.0
MAX_SEED = 2**32 - 1  # numpy's seeds are uint32


class LitFtParser(LightningArgumentParser):
    """jsonargparse parser that raises its errors (nested parsers report into their parent's message);
    `run_trainer` turns the top-level one into a one-line `UserError` with `condense_parse_error`."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        raise argparse.ArgumentError(None, message) from ex

    def parse_args(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        """Negative values in both spellings, `--key -1e-3` and `--key=-1e-3` (`join_negative_values`)."""
        if args is None or isinstance(args, (list, tuple)):
            args = join_negative_values(list(sys.argv[1:] if args is None else args))
        return super().parse_args(args, *rest, **kwargs)


class LitFtCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        argv = kwargs.get("args")
        verb = argv[0] if isinstance(argv, list) and argv else None
        self._verb = verb if verb in LightningCLI.subcommands() else None
        self._command = "lit_ft " + " ".join(str(a) for a in argv or [])
        self._locks = contextlib.ExitStack()  # the run directory's lock, held while the verb runs (in __init__)
        try:
            super().__init__(*args, **kwargs)
        finally:
            self._locks.close()

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Lightning's parser, whose `--config` pieces merge dict options key by key
        (`lit_ft.commands.config_merge`)."""
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={lightning.pytorch.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=MergingConfigFile,
                            help="Path to a configuration file in json or yaml format; repeat to apply pieces in "
                                 "order (dict options such as model.task_options merge key by key)")
        return parser

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Build the parser of the verb being run only: each verb's parser costs about a second to build."""
        if self._verb is None:
            super()._add_subcommands(parser, **kwargs)
            return
        verb = self._verb
        self.subcommands = lambda: {verb: LightningCLI.subcommands()[verb]}  # type: ignore[method-assign]
        try:
            super()._add_subcommands(parser, **kwargs)
        finally:
            del self.subcommands

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--plugins", type=list[str] | str | None, default=None,  # str: `a.py,b.py`, see config_args.plugin_specs
            help="Local task-plugin modules (.py files or module names) to load before parsing",
        )
        parser.add_argument(
            "--overwrite", type=bool, default=False,
            help="fit: replace the run in trainer.default_root_dir (the files lit_ft wrote in its checkpoints/, "
                 "export/ and samples/; other files are kept)",
        )
        parser.add_lightning_class_args(TaskCheckpoint, "checkpoint")
        parser.add_lightning_class_args(NanGuard, "nan_guard")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ExportBest, "export")
        parser.add_lightning_class_args(RunSummary, "summary")
        parser.link_arguments("model.backbone", "data.init_args.tokenizer")
        # lit_ft's batch samplers shard across processes themselves (see lit_ft/sampler.py)
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        # the HF Trainer's max_grad_norm: without it, fine-tuning from a fresh head is seed-fragile (docs/training.md)
        parser.set_defaults({"trainer.gradient_clip_val": DEFAULT_GRADIENT_CLIP})

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in ("validate", "test"):
            parser.set_defaults({"verbose": False})  # lit_ft's progress bar prints a short metrics table instead
        return parser

    def _parse_ckpt_path(self) -> None:
        """`--ckpt_path best|last` in a new process (`fit --ckpt_path last` resumes): read `checkpoints/best.json`.

        Lightning then rebuilds the model from the checkpoint's hyperparameters, replacing the config's; the task
        options given now (recipe and command line) are put back over the saved ones, key by key, so decoding and
        scoring settings apply (`restored_options`: an option that shapes the model must not change). A file that
        is not a checkpoint, or one of another task, fails here with one line: it is first loaded safely
        (weights_only=True, `lit_ft.training.safe_load`), so no code in a foreign file runs; Lightning then loads it
        with weights_only=True too."""
        sub = self.config.get("subcommand")
        if not sub or not self.config[sub].get("ckpt_path"):
            return super()._parse_ckpt_path()
        cfg = self.config[sub]
        if sub == "fit" and cfg.ckpt_path == "best" and cfg.checkpoint.get("save_weights_only_best", True):
            raise UserError("`fit --ckpt_path best`: the best checkpoint holds the weights only (no optimizer state); "
                            "resume with `--ckpt_path last`")
        if cfg.ckpt_path in CHECKPOINT_ALIASES:
            try:
                cfg.ckpt_path = find_checkpoint(_checkpoint_dir(cfg), cfg.ckpt_path)
            except FileNotFoundError as err:
                raise UserError(str(err)) from err
        given_path = str(cfg.ckpt_path)
        saved = metadata_file(Path(given_path))  # the checkpoint file, or the one in a sharded checkpoint directory
        if "://" not in given_path and not saved.is_file():
            raise UserError(f"--ckpt_path '{cfg.ckpt_path}' does not exist; give a .ckpt file, `best` or `last`")
        load_checkpoint_file(saved, mmap=True, label="--ckpt_path", require_weights=saved == Path(given_path))
        if "weights_only" in cfg:
            cfg.weights_only = True
        task, given = cfg.model.task, cfg.model.get("task_options")
        cfg.model.task_options = None  # so what Lightning parses from the checkpoint is the saved options alone
        cfg.ckpt_path = str(saved) if "://" not in given_path else given_path
        self._parse_saved_settings(given_path, sub)
        self.config[sub].ckpt_path = given_path  # Lightning's strategy reads a sharded directory itself
        model = self.config[sub].model
        if model.task != task:
            raise UserError(f"--ckpt_path '{cfg.ckpt_path}' holds a '{model.task}' model, but model.task is '{task}'; "
                            f"give a checkpoint trained for '{task}', or the config of the run that wrote it")
        if given:
            model.task_options = restored_options(get_task(model.task), model.get("task_options"), given)

    def _parse_saved_settings(self, ckpt_path: str, sub: str) -> None:
        """Lightning's reading of the checkpoint's hyperparameters, with one-line errors."""
        try:
            super()._parse_ckpt_path()
        except UserError as err:
            raise UserError(f"--ckpt_path '{ckpt_path}': its saved settings do not parse: {err}") from err
        except argparse.ArgumentError as err:
            raise UserError(f"--ckpt_path '{ckpt_path}': its saved settings do not parse: "
                            f"{condense_parse_error(err.message, sub)}") from err
        except Exception as err:
            reason = one_line(str(err)).split(". ")[0][:200]
            raise UserError(f"--ckpt_path '{ckpt_path}' is not a readable lit_ft checkpoint "
                            f"({type(err).__name__}: {reason}); give a .ckpt written by `lit_ft fit`") from err

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """The fit's task's own trainer defaults first become the parser's (`lit_ft.task_defaults`); then a seed
        numpy cannot take is a one-line error (seeding, next, would raise a bare ValueError)."""
        subcommands = cli_subcommand_parsers(self)  # None: built with run=False, no verbs
        self.task_defaults = (set_task_defaults(parser, parser, args, verb=None) if subcommands is None
                              else set_task_defaults(parser, subcommands.get("fit"), args))
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        seed = (self.config[sub] if sub else self.config).get("seed_everything")
        if not isinstance(seed, bool) and isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
            raise UserError(f"seed_everything must be an integer from 0 to {MAX_SEED} (got {seed}); set "
                            "seed_everything in that range, or true for a random seed")

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        finally:
            finish_wandb_run(self.trainer)

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        check_task_and_data(cfg)
        # what the run needs from the hub, before Transformers and datasets retry for minutes and fail in a traceback
        locate_backbone(str(cfg.model.backbone))
        require_hub_data(cfg)
        check_quantization(cfg.model.get("quantization"), cfg.model.get("lora"))
        if sub == "fit":
            enforce(RunPlan(cfg), needs_data=False)  # the pre-flight rules that need no data, before the trainer
        elif sub:
            refuse_unusable_attention(RunPlan(cfg))
        check_writable(cfg.trainer.default_root_dir or ".", "trainer.default_root_dir")
        if sub == "fit" and cfg.checkpoint.dirpath:
            check_writable(cfg.checkpoint.dirpath, "checkpoint.dirpath")
        loggers = cfg.trainer.logger
        wandb_loggers = [lg for lg in (loggers if isinstance(loggers, list) else [loggers])
                         if "Wandb" in str(getattr(lg, "class_path", ""))]
        message = ensure_wandb_mode(bool(wandb_loggers))
        if message:
            print(message, file=sys.stderr)
        follow_root_dir(loggers, cfg.trainer.default_root_dir or ".")
        if sub == "fit" and is_launching_process():  # DDP's other ranks run under rank 0's lock and checks
            self._locks.enter_context(holding(cfg.trainer.default_root_dir or ".", self._command))
            _check_export_dir(cfg)
        if sub == "fit" and cfg.get("ckpt_path"):
            resume_logger_runs([c for c in _as_list(loggers) if getattr(c, "class_path", None)],
                               read_pointer(_checkpoint_dir(cfg)))
        elif sub == "fit" and is_launching_process():
            _claim_run_dir(cfg)
        if sub:
            group_wandb_runs(wandb_loggers, sub, run_id_of(_checkpoint_dir(cfg)) if sub != "fit" else None)

    def after_instantiate_classes(self) -> None:
        """fit: the fatal pre-flight rules that read the data, before any weights load (the model builds at setup),
        and the warnings `fit` prints (train rows in validation/test)."""
        if self.config.get("subcommand") == "fit" and isinstance(self.datamodule, TaskDataModule):
            plan = RunPlan(self.config["fit"], self.datamodule)
            enforce(plan, needs_data=True)
            if is_launching_process():  # once per run, not once per DDP rank
                for line in fit_warnings(plan, needs_data=True):
                    print(line, file=sys.stderr, flush=True)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        """lit_ft's progress bar and one-line model summary, unless turned off or the config brings its own, the
        logged learning rate and throughput (`TrainRates`), and every metric in `metrics/*.json` (`MetricsFiles`)."""
        given = [*callbacks, *_as_list(config.get("callbacks"))]
        if not any(isinstance(c, TrainRates) for c in given):
            callbacks = [*callbacks, TrainRates()]
        if not any(isinstance(c, MetricsFiles) for c in given):
            callbacks = [*callbacks, MetricsFiles()]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in given):
            callbacks = [*callbacks, LitFtProgressBar()]
        if config.get("enable_model_summary") is not False and not any(isinstance(c, ModelSummary) for c in given):
            callbacks = [*callbacks, ModelLine()]
        trainer = super()._instantiate_trainer(config, callbacks)
        drop_unset_anonymous(trainer.loggers)
        if isinstance(self.model, FineTuner):
            apply_ddp_kwargs(trainer.strategy, self.model.hparams["task"])  # the task's `ddp_kwargs`
        return trainer


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def follow_root_dir(loggers: Any, root: str) -> None:
    """Loggers without their own `save_dir` write under `trainer.default_root_dir`, so one option moves a run."""
    for logger in _as_list(loggers):
        init_args = getattr(logger, "init_args", None)
        if init_args is None or "save_dir" not in init_args or init_args.get("dir"):
            continue
        if init_args.get("save_dir") in (None, "."):
            init_args["save_dir"] = root


def _claim_run_dir(cfg: Any) -> None:
    """One run directory, one run: a new fit refuses a directory holding a run, unless `--overwrite`, which
    removes what lit_ft wrote in its checkpoints/, export/ and samples/ (`lit_ft.owned_dir`), nothing else."""
    root = Path(cfg.trainer.default_root_dir or ".")
    checkpoints = Path(_checkpoint_dir(cfg))
    export = Path(cfg.export.dir or root / "export")
    held = [p for p in (checkpoints / "best.json", *sorted(checkpoints.glob("*.ckpt"))[:1], export) if p.exists()]
    if not held:
        return
    if not cfg.get("overwrite"):
        raise UserError(
            f"{root} already holds a run ({', '.join(str(p) for p in held)}): resume it with --ckpt_path last, "
            "write to a new --trainer.default_root_dir, or replace it with --overwrite true"
        )
    for path, kind in ((checkpoints, "checkpoints"), (export, "export"), (root / "samples", "samples")):
        remove_owned(path, kind)
    print(f"lit_ft: --overwrite: removed the previous run's checkpoints and export in {root} (files lit_ft did not "
          "write are kept)", file=sys.stderr)


def _check_export_dir(cfg: Any) -> None:
    """The fit-time export's directory, checked before training: apart from the checkpoints, and lit_ft's to
    write (`--overwrite` lets it write beside other files, which are kept)."""
    if not cfg.export.get("enabled", True):
        return
    root = cfg.trainer.default_root_dir or "."
    export = cfg.export.dir or os.path.join(root, "export")
    check_apart(export, "export.dir", root, _checkpoint_dir(cfg))
    if cfg.get("overwrite"):
        cfg.export.overwrite = True
    claim(export, "export", cfg.export.get("overwrite", False), "export.dir",
          fix="give another export.dir or an empty one, or add --overwrite true to write beside them (lit_ft "
              "never removes files it did not write)")


def _checkpoint_dir(cfg: Any) -> str:
    return cfg.checkpoint.dirpath or os.path.join(cfg.trainer.default_root_dir or ".", "checkpoints")


def trainer_verbs() -> list[str]:
    """The subcommands LightningCLI itself provides (the check that `lit_ft.commands.cli.COMMANDS` lists them all)."""
    return list(LitFtCLI.subcommands())


def run_trainer(argv: list[str], callbacks: list[Callback] | None = None,
                resume_argv: list[str] | None = None) -> LitFtCLI:
    """Parse `argv` (a trainer verb first) and run it; a parse error is one line (`UserError`). `callbacks` join
    the trainer's own (Lightning's `trainer_defaults`, which stay out of the parsed and saved config). A fit stops
    at a step's end on SIGTERM or Ctrl-C when `resume_argv` is given (`StopOnSignal`, whose resume line repeats it)."""
    if argv and argv[0] == "fit" and resume_argv is not None:
        callbacks = [*(callbacks or []), StopOnSignal(resume_argv)]
    try:
        return LitFtCLI(
            FineTuner,
            TaskDataModule,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            args=argv,
            auto_configure_optimizers=False,
            parser_class=LitFtParser,
            trainer_defaults={"callbacks": callbacks} if callbacks else None,
        )
    except argparse.ArgumentError as err:
        command = argv[0] if argv and argv[0] in LitFtCLI.subcommands() else ""
        raise UserError(condense_parse_error(err.message, command)) from err
