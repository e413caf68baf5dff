"""A recipe read exactly as `lit_ft fit` reads it, for the commands that look at a run before it starts
(`lit_ft check`, `lit_ft inspect-data`).

The same config files, `LIT_FT_OVERLAY` pieces, command-line overrides and parser (`LitFtCLI` built with
`run=False`, so links such as `model.backbone -> data.init_args.tokenizer` resolve as in fit); then only the data
module is built. No trainer, no model, no weights: building a data module reads nothing yet.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from jsonargparse import Namespace

from lit_ft.commands.config_args import prepare_config_command, with_overlays
from lit_ft.commands.preflight import check_task_and_data, condense_parse_error
from lit_ft.commands.trainer_cli import LitFtCLI, LitFtParser
from lit_ft.datamodule import TaskDataModule
from lit_ft.errors import UserError
from lit_ft.module import FineTuner


class ConfigError(UserError):
    """The recipe does not parse: an unknown key, a wrong type, a value outside its option's domain."""


@dataclass
class Recipe:
    """A parsed recipe: `cfg` is the config `lit_ft fit` would run (the `fit` section of its `config.yaml`)."""

    cfg: Namespace
    data: TaskDataModule


class _ParseOnly(LitFtCLI):
    """LitFtCLI's parser and defaults; builds nothing (no seed, no run directory, no loggers)."""

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass


def read_recipe(argv: list[str], command: str) -> Recipe:
    """`--config FILE [--config PIECE] [--a.b value ...]` as fit reads them (overlays, plugins), data module built."""
    cfg = read_config(argv, command)
    return Recipe(cfg=cfg, data=build_data(cfg))


def read_config(argv: list[str], command: str) -> Namespace:
    """The parsed fit config of a recipe command line (`read_recipe` without building the data module)."""
    if not any(a in ("--config", "-c") or a.startswith("--config=") for a in argv):
        raise UserError(f"`lit_ft {command}` needs the recipe: give --config FILE (the config `lit_ft fit` takes)")
    argv = with_overlays([command, *argv])[1:]
    prepare_config_command(argv)
    try:
        cli = _ParseOnly(FineTuner, TaskDataModule, subclass_mode_data=True, run=False, args=argv,
                         auto_configure_optimizers=False, parser_class=LitFtParser)
    except argparse.ArgumentError as err:
        raise ConfigError(condense_parse_error(err.message, "fit")) from err
    cfg = cli.config
    check_task_and_data(cfg)
    return cfg


def build_data(cfg: Namespace) -> TaskDataModule:
    """Instantiate the config's data module alone (its class_path and init_args, as LightningCLI would)."""
    if cfg.get("data") is None:
        raise UserError("the config has no data module: set data.class_path (see `lit_ft fit --help`)")
    parser = LitFtParser()
    parser.add_subclass_arguments(TaskDataModule, "data", required=True)
    build: Any = getattr(parser, "instantiate", None) or parser.instantiate_classes
    data = build(Namespace(data=cfg.data)).data
    assert isinstance(data, TaskDataModule)
    return data
