"""Pre-flight rules: problems of a fit config found before any compute, each with its fix.

A rule is one small function of a `RunPlan` returning `(problem, fix)` or None, declared with a severity:
`fatal` (the run would fail, or silently do something else than asked) or `warning` (it runs, but wastes compute
or misleads). `lit_ft check` prints every finding; `lit_ft fit` runs the fatal ones before any weights load
(`enforce`): rules without data before the trainer is built, rules with data once the data module exists; and it
prints the findings of the warnings registered `at_fit` (those a user would not think to check for) as one
`lit_ft: warning:` line each (`fit_warnings`).
The rules `check` and `fit` run are the explicit list of `lit_ft.commands.rules.catalogue`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from lit_ft.commands.run_plan import RunPlan
from lit_ft.errors import UserError, one_line

Severity = Literal["fatal", "warning"]
EVAL_SPLITS = ("validation", "test")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    problem: str
    fix: str


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    needs_data: bool
    check: Callable[[RunPlan], tuple[str, str] | None]
    prerequisite: bool = False  # what other rules need (the backbone, the data) is missing when this one fires
    at_fit: bool = False  # a warning that `fit` prints too (fatal rules always stop `fit`)


# every function declared a rule -> its Rule; the catalogue lists which run (and checks it lists them all)
DECLARED: dict[Callable[..., object], Rule] = {}


def rule(severity: Severity, needs_data: bool = False, prerequisite: bool = False, at_fit: bool = False
         ) -> Callable[[Callable[[RunPlan], tuple[str, str] | None]], Callable[[RunPlan], tuple[str, str] | None]]:
    """Declare a rule; `prerequisite`: what other rules need is missing when it fires; `at_fit`: a warning that
    `fit` prints too (fatal rules always stop `fit`)."""

    def register(check: Callable[[RunPlan], tuple[str, str] | None]) -> Callable[[RunPlan], tuple[str, str] | None]:
        DECLARED[check] = Rule(check.__name__, severity, needs_data, check, prerequisite, at_fit)
        return check

    return register


def run_rules(plan: RunPlan, rules: list[Rule]) -> list[Finding]:
    """Every rule's finding; a rule that cannot run because of the config or data is itself a fatal finding.

    Prerequisite rules (the backbone, the hub data are here) run first; once one fires, the rules that read the
    data are skipped (loading what is missing would retry the hub for minutes) and a rule that cannot run is not
    listed (what is missing is why). The same failure met by several rules (a missing data file) is listed once."""
    found: list[Finding] = []
    missing = False
    for r in sorted(rules, key=lambda r: not r.prerequisite):
        if missing and r.needs_data:
            continue
        try:
            result = r.check(plan)
        except UserError as err:
            message = one_line(str(err))
            if not missing and not any(message in (f.problem, f"{f.problem}; {f.fix}") for f in found):
                found.append(Finding(r.name, "fatal", message, "fix that first"))
            continue
        missing = missing or (r.prerequisite and result is not None)
        if result is not None:
            found.append(Finding(r.name, r.severity, *result))
    return found


def config_finding(err: UserError) -> Finding:
    """`lit_ft check`: a recipe that does not parse (a value outside its option's domain) as its one finding."""
    return error_finding("config", err)


def error_finding(name: str, err: UserError) -> Finding:
    """A one-line error `problem; fix` as a fatal finding."""
    problem, _, fix = one_line(str(err)).rpartition("; ")
    return Finding(name, "fatal", problem or fix, fix if problem else "fix that first")
