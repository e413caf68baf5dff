"""`lit_ft check`: the pre-flight rules of a recipe, each finding printed with its fix, before any compute.

The recipe is read as `lit_ft fit` reads it (`lit_ft.commands.recipe`); the rules are the
list of `lit_ft.commands.rules.catalogue`. Exit status 1 when a finding is fatal (`fit` would refuse it), 0 otherwise.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from lit_ft.commands.preflight import recipe_argv, recipe_parser
from lit_ft.errors import UserError

if TYPE_CHECKING:
    from lit_ft.commands.rules.rule import Finding

EXIT_FATAL = 1


def main(argv: list[str]) -> None:
    parser = recipe_parser(
        "lit_ft check",
        "Pre-flight checks of a recipe before any compute: precision on this machine, lengths against "
        "the backbone, labels, validation and logging intervals, batch size, LoRA targets, "
        "remote code. Exit status 1 when a finding is fatal.",
        "--trainer.precision bf16-mixed",
    )
    args, rest = parser.parse_known_args(argv)
    from lit_ft.commands.recipe import ConfigError, read_config
    from lit_ft.commands.rules.catalogue import all_rules
    from lit_ft.commands.rules.rule import config_finding, error_finding, run_rules
    from lit_ft.commands.run_plan import RunPlan
    from lit_ft.task_options import TaskOptionsError

    try:
        cfg = read_config(recipe_argv(args.config, rest), "check")
    except ConfigError as err:  # `data.batch_size 0`: a finding with its fix, though no rule can run
        print_findings([config_finding(err)], 0)
        return
    except TaskOptionsError as err:  # an unknown or mistyped model.task_options key: likewise
        print_findings([error_finding("task_options", err)], 0)
        return
    data, broken = data_settings(cfg)
    rules = [r for r in all_rules() if data is not None or not r.needs_data]  # no data module: no data rules
    print_findings([*broken, *run_rules(RunPlan(cfg, data), rules)], len(rules))


def data_settings(cfg: Any) -> tuple[Any, list[Finding]]:
    """`lit_ft check`: the config's data module, or none and the fatal finding of the setting that stops it being
    built (`data.batch_size 0`), with its fix; the rules that read data are then skipped."""
    from lit_ft.commands.recipe import build_data

    try:
        return build_data(cfg), []
    except UserError as err:
        from lit_ft.commands.rules.rule import error_finding

        return None, [error_finding("data_settings", err)]


def print_findings(findings: list[Finding], checked: int) -> None:
    """Every finding with its fix; exit status 1 when one is fatal."""
    if not findings:
        print(f"check: no problems ({checked} rules checked)")
        return
    fatal = sum(f.severity == "fatal" for f in findings)
    ran = f"{checked} rules checked" if checked else "the recipe does not parse, so no rule ran"
    print(f"check: {len(findings)} problem(s), {fatal} fatal ({ran})")
    for f in findings:
        print(f"  {f.severity:<7}  {f.rule}: {f.problem}\n           fix: {f.fix}")
    if fatal:
        sys.stdout.flush()
        raise SystemExit(EXIT_FATAL)


