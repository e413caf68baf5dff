"""Trainer settings a task declares for itself (`Task.trainer_defaults`), applied where the run leaves them unset.

lit_ft's trainer defaults (the CLI's, `lit_ft.trainer_cli`) suit most tasks; a task whose own benchmarks show that
another value trains better declares it on its plugin class. `fit` then uses the task's value for every option that
no recipe file, `LIT_FT_OVERLAY` piece or command-line flag sets: an option set anywhere, even to the CLI's
default value, is the user's and is kept. Which options were set is read by parsing the same arguments again
without defaults (a few milliseconds), so every way of setting an option counts.
"""

from __future__ import annotations

import inspect
from typing import Any

from jsonargparse import ArgumentParser, Namespace
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


def apply_task_defaults(parser: ArgumentParser, args: Any, config: Namespace) -> dict[str, Any]:
    """Put the fit's task's trainer defaults into `config` where the arguments leave the option unset.

    Returns the options it set (name: value), for the run's log line.
    """
    sub = config.get("subcommand")
    if sub != "fit":  # only training reads these; validate/test/predict keep the fit's saved settings
        return {}
    cfg = config[sub]
    try:
        get_task(str(cfg.model.task))
    except UserError:
        return {}  # an unknown task: the pre-flight checks name it in their own words
    declared = task_trainer_defaults(str(cfg.model.task))
    if not declared:
        return {}
    given = parser.parse_args(args, defaults=False)[sub]
    applied = {}
    for name, value in declared.items():
        if f"trainer.{name}" not in given:
            cfg[f"trainer.{name}"] = value
            applied[name] = value
    return applied
