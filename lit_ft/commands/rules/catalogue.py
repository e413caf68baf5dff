"""The pre-flight rules `lit_ft check` and `lit_ft fit` run: the explicit list, in the order `check` prints them.

A new rule is a function declared with `@rule` (`rule.py`) in `machine.py` (the machine, the backbone),
`trainer.py` (Lightning's trainer options) or `data.py` (the data and the schedule), and an entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from lit_ft.commands.rules import data, machine, trainer
from lit_ft.commands.rules.rule import DECLARED, Rule, run_rules
from lit_ft.commands.run_plan import RunPlan
from lit_ft.errors import UserError

CHECKS: list[Callable[..., object]] = [
    machine.precision_on_accelerator,
    machine.bf16_on_cpu_without_native_bf16,
    machine.compile_on_machine,
    machine.attention_on_machine,
    machine.backbone_found,
    machine.hub_data_here,
    machine.backbone_needs_remote_code,
    machine.max_length_beyond_positions,
    machine.lora_targets_in_backbone,
    machine.packing_on_backbone,
    data.data_files_readable,
    data.eval_labels_unknown_to_model,
    data.train_split_has_one_class,
    data.labels_never_in_train,
    data.validation_after_run_end,
    data.log_interval_beyond_epoch,
    data.batch_larger_than_train,
    data.memory_per_device,
    data.eval_rows_in_train,
    trainer.run_length_trains_nothing,
    trainer.trainer_options_out_of_domain,
]


def all_rules() -> list[Rule]:
    """Every rule of CHECKS, in order; a function declared a rule but not listed is a programming error."""
    unlisted = sorted(r.name for check, r in DECLARED.items() if check not in CHECKS)
    if unlisted:
        raise RuntimeError(f"rules declared but not in lit_ft.commands.rules.catalogue.CHECKS: {unlisted}")
    return [DECLARED[check] for check in CHECKS]


def enforce(plan: RunPlan, needs_data: bool) -> None:
    """`fit`: the first fatal finding of the rules with (or without) data, as the one-line error."""
    rules = [r for r in all_rules() if r.severity == "fatal" and r.needs_data == needs_data]
    for finding in run_rules(plan, rules):
        raise UserError(f"{finding.problem}; {finding.fix} (`lit_ft check` lists every pre-flight finding)")


def fit_warnings(plan: RunPlan, needs_data: bool) -> list[str]:
    """`fit`: the findings of the `at_fit` warnings with (or without) data, one `lit_ft: warning:` line each."""
    rules = [r for r in all_rules() if r.severity == "warning" and r.at_fit and r.needs_data == needs_data]
    return [f"lit_ft: warning: {f.problem}; {f.fix}" for f in run_rules(plan, rules) if f.severity == "warning"]
