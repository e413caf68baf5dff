"""Pre-flight rules that read the data (labels, and the schedule the number of training rows makes).

Labels come from the data module's `label_counts` (the task's own reading of its rows), so plugins are checked
too; tasks without labels (QA, generation) have none and these rules stay silent. See `lit_ft.commands.rules.machine`.
"""

from __future__ import annotations

from lit_ft.commands.rules.rule import EVAL_SPLITS, rule
from lit_ft.commands.run_plan import RunPlan
from lit_ft.errors import UserError, one_line
from lit_ft.overlap import rows_in_train
from lit_ft.source import SPLITS

MAX_NAMES = 8


def _names(values: list[str]) -> str:
    shown = ", ".join(values[:MAX_NAMES])
    return shown + (f" and {len(values) - MAX_NAMES} more" if len(values) > MAX_NAMES else "")


@rule("fatal", needs_data=True)
def data_files_readable(plan: RunPlan) -> tuple[str, str] | None:
    """Every configured split can be read (its file exists and parses, a held-out split has rows): one finding for
    a missing file, which every rule that reads the data would otherwise report again (`run_rules` skips those)."""
    for split in SPLITS:
        try:
            plan.data.raw(split)
        except UserError as err:
            problem, _, fix = one_line(str(err)).rpartition("; ")
            return (problem, fix) if problem else (fix, "fix that first")
    return None


@rule("fatal", needs_data=True)
def eval_labels_unknown_to_model(plan: RunPlan) -> tuple[str, str] | None:
    """Validation/test labels the model has no output for (label names come from train or data.label_names)."""
    known = set(plan.data.info.get("label_names") or [])
    if not known:
        return None
    for split in EVAL_SPLITS:
        unknown = sorted(set(plan.data.label_counts(split)) - known)
        if unknown:
            given = "data.label_names" if plan.data.hparams.get("label_names") else "the training split"
            return (f"labels {_names(unknown)} of the {split} split are not among the model's labels (from {given})"
                    f"{_first_bad_row(plan, split)}",
                    "add them to data.label_names (they will still have no training rows) or fix those rows")
    return None


def _first_bad_row(plan: RunPlan, split: str) -> str:
    """The task's own encoding error for the split, which names the first offending row and its file, if any."""
    try:
        plan.data.features(split)
    except UserError as err:
        return f" (first: {one_line(str(err))})"
    return ""


@rule("fatal", needs_data=True)
def train_split_has_one_class(plan: RunPlan) -> tuple[str, str] | None:
    """Every training label of one class: the model learns to answer that class whatever the input."""
    if plan.data.features("train") is None:  # encoded first, so a row the task cannot read is named instead
        return None
    counts = plan.data.label_counts("train")
    if len(counts) != 1:
        return None
    (name, rows), = counts.items()
    return (f"every label of the training split is '{name}' ({rows:,} in all): the model would learn to answer "
            f"'{name}' whatever the input", "add training rows of the other labels, or fix the label column")


@rule("warning", needs_data=True)
def labels_never_in_train(plan: RunPlan) -> tuple[str, str] | None:
    """More label names than the training data has examples of: the model cannot learn the others."""
    given = plan.data.hparams.get("label_names")
    counts = plan.data.label_counts("train") if given else {}
    if not counts:
        return None
    absent = [n for n in given if not counts.get(n)]
    if not absent:
        return None
    return (f"data.label_names has {len(given)} labels but the training split has no rows of {_names(absent)}",
            "add training rows for them or drop them from data.label_names")


@rule("warning", needs_data=True)
def validation_after_run_end(plan: RunPlan) -> tuple[str, str] | None:
    """Validation first due after the run has ended: nothing chooses a best checkpoint during training."""
    first, total = plan.first_validation, plan.total_batches
    if first is None or total is None or first <= total:
        return None
    at_end = plan.cfg.get("checkpoint") is None or plan.cfg.checkpoint.get("validate_at_end", True)
    outcome = ("only the final model is validated (checkpoint.validate_at_end), so 'best' is simply the last"
               if at_end else "and checkpoint.validate_at_end is false: no best checkpoint at all")
    interval, every = plan.trainer.val_check_interval or 1.0, plan.trainer.check_val_every_n_epoch
    return (f"validation first runs after training batch {first:,} (trainer.val_check_interval {interval}, "
            f"check_val_every_n_epoch {every}) but the run stops after {total:,} batches; {outcome}",
            "lower trainer.val_check_interval (an int counts batches) or trainer.check_val_every_n_epoch")


@rule("warning", needs_data=True)
def log_interval_beyond_epoch(plan: RunPlan) -> tuple[str, str] | None:
    """`log_every_n_steps` longer than an epoch: the training curves get fewer points than epochs."""
    every, steps = plan.trainer.log_every_n_steps, plan.steps_per_epoch
    if every is None or steps is None or every <= steps:
        return None
    return (f"trainer.log_every_n_steps is {every} but an epoch has {steps} optimizer steps "
            f"({plan.batches_per_epoch:,} batches of data.batch_size {plan.data.batch_size} on each of "
            f"{plan.devices} device(s) from {plan.train_rows:,} training rows, accumulating {plan.accumulate}): "
            "no training loss is logged", f"set trainer.log_every_n_steps to {max(1, steps // 5)} or less")


@rule("warning", needs_data=True)
def batch_larger_than_train(plan: RunPlan) -> tuple[str, str] | None:
    """`data.batch_size` is per device: one optimizer step takes batch x devices x accumulation rows."""
    rows, per_step = plan.train_rows, plan.data.batch_size * plan.devices * plan.accumulate
    if not rows or per_step <= rows:
        return None
    return (f"one optimizer step takes {per_step:,} rows (data.batch_size {plan.data.batch_size} per device x "
            f"{plan.devices} device(s) x accumulate_grad_batches {plan.accumulate}) but the training split has "
            f"{rows:,}: every epoch is a single, partial step",
            "lower data.batch_size or trainer.accumulate_grad_batches (the batch size is per device)")


@rule("warning", needs_data=True)
def memory_per_device(plan: RunPlan) -> tuple[str, str] | None:
    """The estimated peak memory of one device (`lit_ft estimate`) above what the device holds."""
    from lit_ft.commands.model_memory import recipe_estimate

    holds = plan.device_memory
    if not holds:
        return None
    try:
        need = recipe_estimate(plan.cfg, plan.data, plan.devices, plan.accelerator).total
    except (OSError, ValueError, KeyError):
        return None  # the backbone cannot be built from its config here; loading it will say why
    if need <= holds:
        return None
    gib = 2**30
    return (f"the estimated peak memory per device is {need / gib:.1f} GiB (`lit_ft estimate` breaks it down) but "
            f"a device here holds {holds / gib:.1f} GiB",
            "lower data.batch_size (raise trainer.accumulate_grad_batches to keep the step) or max_length, or set "
            "model.gradient_checkpointing true, LoRA, a bf16 precision, or shard with FSDP")


@rule("warning", needs_data=True, at_fit=True)
def eval_rows_in_train(plan: RunPlan) -> tuple[str, str] | None:
    """Validation/test rows whose input is also a training input (`lit_ft.overlap`): their scores, and the best
    checkpoint chosen on them, reward memorising."""
    shared = {split: (len(rows), total) for split, (rows, total) in rows_in_train(plan.data).items() if rows}
    if not shared:
        return None
    counts = " and ".join(f"{n:,} of {total:,} {split} rows" for split, (n, total) in shared.items())
    return (f"{counts} have an input that is also in the training split (case and spacing ignored): scores on them "
            "reward memorising, not generalising",
            "remove those rows from validation/test or from train (`lit_ft inspect-data` lists their ids)")
