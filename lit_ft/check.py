"""`lit_ft check`: the pre-flight rules of a recipe, each finding printed with its fix, before any compute.

The recipe is read as `lit_ft fit` reads it (`lit_ft.recipe`); the rules are in `lit_ft.check_rules` and
`lit_ft.check_data_rules`. Exit status 1 when a finding is fatal (`fit` would refuse it), 0 otherwise.
"""

from __future__ import annotations

import sys

from lit_ft.preflight import recipe_argv, recipe_parser

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
    from lit_ft.check_rules import all_rules, run_rules
    from lit_ft.recipe import read_recipe
    from lit_ft.run_plan import RunPlan

    recipe = read_recipe(recipe_argv(args.config, rest), "check")
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


