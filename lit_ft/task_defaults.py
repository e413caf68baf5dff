"""Trainer settings a task declares for itself (`Task.trainer_defaults`), applied where the run leaves them unset.

lit_ft's trainer defaults (the CLI's, `lit_ft.commands.trainer_cli`) suit most tasks; a task whose own benchmarks
show that another value trains better declares it on its plugin class. `fit` then uses the task's value for every
option that no recipe file, `LIT_FT_OVERLAY` piece or command-line flag sets: an option set anywhere, even to the CLI's
default, is the user's and is kept. The task's values become the `fit` parser's defaults before the arguments
are parsed, so every way of setting an option wins over them, and `--print_config` shows what will run.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

from jsonargparse import ArgumentParser
from lightning.pytorch import Trainer

from lit_ft.errors import UserError
from lit_ft.registry import get_task


def task_trainer_defaults(task: str) -> dict[str, Any]:
    """The trainer options task `task` declares, checked against the Trainer's signature."""
    declared = dict(get_task(task).trainer_defaults)
    unknown = sorted(set(declared) - set(inspect.signature(Trainer.__init__).parameters) - {"self"})
    if unknown:
        raise UserError(f"task '{task}' declares trainer_defaults for {', '.join(unknown)}, which "
                        "lightning.pytorch.Trainer does not take; fix the plugin's trainer_defaults (keys are "
                        "Trainer argument names, such as gradient_clip_val)")
    return declared


def set_task_defaults(parser: ArgumentParser, fit_parser: ArgumentParser | None, args: Any,
                      verb: str | None = "fit") -> dict[str, Any]:
    """Make the fit's task's trainer defaults the `fit` parser's defaults, before the arguments are parsed.

    The task is read by a first parse of the same arguments without defaults (a few milliseconds; `--print_config`
    and `--help` left out, they would print and exit): its `model.task`, or the FineTuner's default task. As parser
    defaults, they lose to every value a recipe, an overlay or a flag gives, and `--print_config` shows them.
    `verb` None: a CLI built without subcommands (`run=False`), where `parser` is the fit's parser.
    Returns the defaults set (name: value).
    """
    argv = [str(a) for a in (sys.argv[1:] if args is None else args)] if not isinstance(args, dict) else []
    if fit_parser is None or (verb is not None and (not argv or argv[0] != verb)):
        return {}  # only training reads these; validate/test/predict keep the fit's saved settings
    quiet = [a for a in argv if not a.startswith("--print_config") and a not in ("-h", "--help")]
    try:
        given = parser.parse_args(quiet, defaults=False)
        given = given[verb] if verb is not None else given
        task = str(given.get("model.task") or fit_parser.get_default("model.task"))
        get_task(task)
    except (UserError, argparse.ArgumentError, KeyError, TypeError):
        return {}  # the real parse and the pre-flight checks report what is wrong, in their own words
    declared = task_trainer_defaults(task)
    if declared:
        fit_parser.set_defaults({f"trainer.{name}": value for name, value in declared.items()})
    return declared
