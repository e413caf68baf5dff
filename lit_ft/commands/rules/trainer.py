"""Pre-flight rules on the trainer options Lightning owns (their types are Lightning's, so jsonargparse checks no
domain): a run that would train nothing, or fail later with a traceback, is refused before anything loads.

`lit_ft fit` enforces them as one line (`lit_ft.commands.rules.catalogue.enforce`); `lit_ft check` lists them with
the others.
"""

from __future__ import annotations

from typing import Any

from lit_ft.commands.rules.rule import rule
from lit_ft.commands.run_plan import RunPlan

LIMIT_BATCHES = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")
AT_LEAST_ONE = ("accumulate_grad_batches", "check_val_every_n_epoch", "log_every_n_steps", "num_nodes")


@rule("fatal")
def run_length_trains_nothing(plan: RunPlan) -> tuple[str, str] | None:
    """`max_epochs 0` or `max_steps 0` finishes at once and would export an untrained head; below -1 is no length."""
    for key in ("max_epochs", "max_steps"):
        value = plan.trainer.get(key)
        if value == 0:
            return (f"trainer.{key} is 0: fit would stop before the first step and export an untrained model",
                    f"set trainer.{key} to 1 or more (-1: no limit), or run `lit_ft validate` to only evaluate")
        if value is not None and value < -1:
            return f"trainer.{key} is {value}", f"set trainer.{key} to 1 or more, or -1 for no limit"
    return None


@rule("fatal")
def trainer_options_out_of_domain(plan: RunPlan) -> tuple[str, str] | None:
    """Counts below 1, a negative clipping norm, a validation interval of 0 or less, negative batch limits."""
    trainer = plan.trainer
    for key in AT_LEAST_ONE:
        if _below(trainer.get(key), 1):
            return f"trainer.{key} is {trainer.get(key)}", f"set trainer.{key} to 1 or more"
    if _below(trainer.get("gradient_clip_val"), 0):
        return (f"trainer.gradient_clip_val is {trainer.gradient_clip_val}",
                "set trainer.gradient_clip_val to 0 or more (null or 0: no clipping)")
    interval = trainer.get("val_check_interval")
    if interval is not None and (interval <= 0 or (isinstance(interval, float) and interval > 1)):
        return (f"trainer.val_check_interval is {interval}",
                "set it above 0: a number of batches (an int) or a share of the epoch up to 1.0 (a float)")
    for key in LIMIT_BATCHES:
        limit = trainer.get(key)
        if _below(limit, 0) or (isinstance(limit, float) and limit > 1):
            return (f"trainer.{key} is {limit}",
                    f"set trainer.{key} to a number of batches (an int, 0 or more) or a share from 0.0 to 1.0")
    if trainer.get("limit_train_batches") == 0:
        return ("trainer.limit_train_batches is 0: fit would run no training batch and export an untrained model",
                "set trainer.limit_train_batches above 0, or run `lit_ft validate` to only evaluate")
    return None


def _below(value: Any, floor: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value < floor
