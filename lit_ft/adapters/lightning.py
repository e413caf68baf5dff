"""Lightning's private names that lit_ft uses: one function per access, each with the public API it waits for.

`ACCESSES` lists them (and the private methods lit_ft's subclasses override) for
`tests/test_library_internals.py`, which checks them against the installed Lightning (`lit_ft.adapters.library_access`).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from lit_ft.adapters.library_access import Access

_CLI = "lightning.pytorch.cli.LightningCLI"
_CKPT = "lightning.pytorch.callbacks.ModelCheckpoint"
_FIT_LOOP = "lightning.pytorch.loops.fit_loop._FitLoop"
_TRAINER, _MC = ("self", "trainer"), ("self", "trainer", "monitor_candidates")

ACCESSES = [
    # LightningCLI's private steps that LitFtCLI overrides (lit_ft/commands/trainer_cli.py, lit_ft/commands/recipe.py)
    Access(_CLI, "_add_subcommands", "override", "none yet: a hook choosing which subcommand parsers to build",
           "trainer_cli", ("self", "parser", "kwargs")),
    Access(_CLI, "_prepare_subcommand_parser", "override", "none yet: per-subcommand parser defaults",
           "trainer_cli", ("self", "klass", "subcommand", "kwargs")),
    Access(_CLI, "_parse_ckpt_path", "override", "none yet: a hook for reading a checkpoint's hyperparameters",
           "trainer_cli", ("self",)),
    Access(_CLI, "_run_subcommand", "override", "none yet: an after-subcommand hook (Lightning has before/after_"
           "<subcommand> hooks, which an exception skips)", "trainer_cli", ("self", "subcommand")),
    Access(_CLI, "_instantiate_trainer", "override", "LightningCLI.instantiate_trainer (public, but it is not the "
           "one LightningCLI calls with the parsed callbacks)", "trainer_cli", ("self", "config", "callbacks")),
    Access(_CLI, "_set_seed", "override", "none yet: `seed_everything_default` cannot turn seeding off for a "
           "parse-only CLI", "recipe", ("self",)),
    Access(_CLI, "_subcommand_parsers", "instance attribute", "none yet: the subcommand parsers by name",
           "trainer_cli"),
    # ModelCheckpoint's private steps that RankedCheckpoint / TaskCheckpoint override or call
    Access(_CKPT, "_save_checkpoint", "override", "none yet: a checkpoint-writing hook (atomic saves, weights-only "
           "best checkpoints)", "best_rank, checkpoint", ("self", "trainer", "filepath")),
    Access(_CKPT, "_save_last_checkpoint", "override", "none yet: `last` saves after every validation and epoch",
           "checkpoint", _MC),
    Access(_CKPT, "_update_best_and_save", "override", "none yet: a ranking hook for the top-k checkpoints",
           "best_rank, checkpoint", ("self", "current", "trainer", "monitor_candidates")),
    Access(_CKPT, "_save_monitor_checkpoint", "override", "none yet: a ranking hook for the top-k checkpoints",
           "best_rank", _MC),
    Access(_CKPT, "_monitor_candidates", "method", "none yet: `trainer.callback_metrics` plus epoch and step",
           "checkpoint", _TRAINER),
    Access(_CKPT, "_should_skip_saving_checkpoint", "method", "none yet", "checkpoint", _TRAINER),
    Access(_CKPT, "_should_save_on_train_epoch_end", "method", "none yet", "checkpoint", _TRAINER),
    Access(_CKPT, "_get_metric_interpolated_filepath_name", "method", "ModelCheckpoint.format_checkpoint_name "
           "(without the `-v1` de-duplication)", "best_rank", ("self", "monitor_candidates", "trainer",
                                                               "del_filepath")),
    Access(_CKPT, "_should_remove_checkpoint", "method", "none yet", "best_rank", ("self", "trainer", "previous",
                                                                                   "current")),
    Access(_CKPT, "_remove_checkpoint", "method", "none yet", "best_rank", ("self", "trainer", "filepath")),
    Access(_CKPT, "_last_global_step_saved", "instance attribute", "none yet: telling the callback a checkpoint "
           "was written elsewhere", "checkpoint"),
    Access(_CKPT, "_last_checkpoint_saved", "instance attribute", "none yet", "checkpoint"),
    # the fit loop and trainer
    Access(_FIT_LOOP, "_can_stop_early", "class attribute", "none yet: whether a requested stop is honoured now",
           "checkpoint"),
    Access(_FIT_LOOP, "_combined_loader_states_to_load", "instance attribute", "none yet: restoring a stateful "
           "loader that was built before the loop state loaded", "resume"),
    Access(_FIT_LOOP, "_combined_loader", "instance attribute", "trainer.train_dataloader (the loaders, not the "
           "combined loader's state)", "resume"),
    Access(_FIT_LOOP, "_data_fetcher", "instance attribute", "none yet", "resume"),
    Access("lightning.pytorch.utilities.combined_loader.CombinedLoader", "_load_state_dicts", "method", "none yet",
           "resume", ("self", "states")),
    Access("lightning.pytorch.Trainer", "_signal_connector", "instance attribute", "none yet: "
           "`trainer.received_sigterm` is read-only", "interrupt"),
    Access("lightning.pytorch.trainer.connectors.signal_connector._SignalConnector", "received_sigterm",
           "instance attribute", "none yet (a public attribute of a private class)", "interrupt"),
    Access("lightning.pytorch.LightningModule", "_trainer", "instance attribute", "LightningModule.trainer, "
           "which raises instead of returning None when no trainer is attached", "module"),
    Access("lightning.pytorch.strategies.DDPStrategy", "_ddp_kwargs", "instance attribute", "none yet: a setter for "
           "DistributedDataParallel's arguments after the strategy is built", "ddp_options"),
    Access("lightning.pytorch.loggers.WandbLogger", "_wandb_init", "instance attribute", "none yet: the arguments "
           "passed to wandb.init", "wandb_setup"),
    # copied as lit_ft.training.consolidate.FSDP_METADATA (the test compares the values)
    Access("lightning.fabric.strategies.fsdp", "_METADATA_FILENAME", "module attribute", "none yet: the metadata "
           "file of a sharded checkpoint directory", "consolidate"),
]


def cli_subcommand_parsers(cli: Any) -> dict[str, Any] | None:
    """LightningCLI's parsers by subcommand (None: built with `run=False`, no subcommands)."""
    return getattr(cli, "_subcommand_parsers", None)


def monitor_candidates(callback: ModelCheckpoint, trainer: Trainer) -> dict[str, torch.Tensor]:
    """The logged values a checkpoint callback ranks and names files by (with `epoch` and `step`)."""
    return callback._monitor_candidates(trainer)


def skips_saving(callback: ModelCheckpoint, trainer: Trainer) -> bool:
    """Whether Lightning's checkpoint callback would not save now (sanity check, fast_dev_run, already saved)."""
    return callback._should_skip_saving_checkpoint(trainer)


def saves_on_train_epoch_end(callback: ModelCheckpoint, trainer: Trainer) -> bool:
    """Whether the checkpoint callback saves at the training epoch's end (else at the validation's end)."""
    return callback._should_save_on_train_epoch_end(trainer)


def record_saved(callback: ModelCheckpoint, step: int, filepath: str | None = None) -> None:
    """Tell the checkpoint callback that `step` is on disk (in `filepath`), as its own save would."""
    callback._last_global_step_saved = step
    if filepath is not None:
        callback._last_checkpoint_saved = filepath


def last_checkpoint_saved(callback: ModelCheckpoint) -> str:
    """The file the checkpoint callback wrote last ("" before any)."""
    return callback._last_checkpoint_saved


def checkpoint_filepath(callback: ModelCheckpoint, trainer: Trainer, monitor_candidates: dict[str, torch.Tensor],
                        replacing: str | None) -> str:
    """The top-k checkpoint file name for these values (`replacing`: the file it takes the place of)."""
    return callback._get_metric_interpolated_filepath_name(monitor_candidates, trainer, replacing)


def save_checkpoint(callback: ModelCheckpoint, trainer: Trainer, filepath: str) -> None:
    """Write a checkpoint file the way the callback (or its subclass) writes it."""
    callback._save_checkpoint(trainer, filepath)


def remove_replaced(callback: ModelCheckpoint, trainer: Trainer, previous: str, current: str) -> None:
    """Delete a checkpoint that dropped out of the top k, unless Lightning's rules keep it."""
    if callback._should_remove_checkpoint(trainer, previous, current):
        callback._remove_checkpoint(trainer, previous)


def can_stop_early(trainer: Trainer) -> bool:
    """Whether the fit loop honours a requested stop now (`min_steps` / `min_epochs` reached)."""
    return bool(trainer.fit_loop._can_stop_early)


def restore_pending_loader_state(trainer: Trainer) -> None:
    """Load the fit loop's pending stateful-loader states into the training loader and restart its iterator."""
    fit_loop = trainer.fit_loop
    states = fit_loop._combined_loader_states_to_load
    if not states or fit_loop._combined_loader is None or fit_loop._data_fetcher is None:
        return
    fit_loop._combined_loader._load_state_dicts(states)
    fit_loop._combined_loader_states_to_load = []
    iter(fit_loop._data_fetcher)  # a new iterator from the restored position (as `setup_data` would have)


def set_received_sigterm(trainer: Trainer, value: bool) -> None:
    """Lightning keeps the SIGTERM flag on its signal connector; `trainer.received_sigterm` only reads it."""
    trainer._signal_connector.received_sigterm = value


def attached_trainer(module: LightningModule) -> Trainer | None:
    """The trainer a LightningModule is attached to, or None (`module.trainer` raises then)."""
    return module._trainer


def ddp_kwargs(strategy: DDPStrategy) -> dict[str, Any]:
    """The (mutable) arguments DDPStrategy passes to DistributedDataParallel when fit starts."""
    return strategy._ddp_kwargs


def wandb_init_args(logger: Any) -> dict[str, Any] | None:
    """The arguments a WandbLogger passes to `wandb.init` (None for another logger)."""
    init = getattr(logger, "_wandb_init", None)
    return init if isinstance(init, dict) else None
