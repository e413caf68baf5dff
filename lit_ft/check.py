"""`lit_ft check`: the pre-flight rules of a recipe, each finding printed with its fix, before any compute.

The recipe is read as `lit_ft fit` reads it (`lit_ft.recipe`); the rules are in `lit_ft.check_rules` and
`lit_ft.check_data_rules`. Exit status 1 when a finding is fatal (`fit` would refuse it), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys

EXIT_FATAL = 1


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="lit_ft check", allow_abbrev=False,
        description="Pre-flight checks of a recipe before any compute: precision on this machine, lengths against "
                    "the backbone, labels, validation and logging intervals, batch size, LoRA targets, "
                    "remote code. Exit status 1 when a finding is fatal.",
        epilog="Any `lit_ft fit` option may follow the configs (for example --trainer.precision bf16-mixed).",
    )
    parser.add_argument("--config", "-c", action="append", default=[], metavar="FILE",
                        help="the recipe, as given to `lit_ft fit` (repeat to merge pieces)")
    args, rest = parser.parse_known_args(argv)
    from lit_ft.check_rules import all_rules, run_rules
    from lit_ft.recipe import read_recipe
    from lit_ft.run_plan import RunPlan

    recipe = read_recipe([*(a for c in args.config for a in ("--config", c)), *rest], "check")
    rules = all_rules()
    findings = run_rules(RunPlan(recipe.cfg, recipe.data), rules)
    if not findings:
        print(f"check: no problems ({len(rules)} rules checked)")
        return
    fatal = sum(f.severity == "fatal" for f in findings)
    print(f"check: {len(findings)} problem(s), {fatal} fatal ({len(rules)} rules checked)")
    for f in findings:
        print(f"  {f.severity:<7}  {f.rule}: {f.problem}\n           fix: {f.fix}")
    if fatal:
        sys.stdout.flush()
        raise SystemExit(EXIT_FATAL)


