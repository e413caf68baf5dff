"""What a search prints at its end: the table of trials, the best trial, and how much each searched key mattered."""

from __future__ import annotations

from typing import Any

from lit_ft.errors import one_line
from lit_ft.tune.study import INTERRUPTED, Search

MIN_FOR_IMPORTANCE = 5  # below that, fANOVA's forest splits a handful of points: numbers, but no information


def trials_table(search: Search) -> list[str]:
    """One row per trial: number, state, value of the monitored metric, the values tried, and a note."""
    keys = list(search.space.params)
    header = ["trial", "state", search.monitor(), *keys, "note"]
    rows = [[str(t.number), t.state.name.lower(), _value(t.value), *[_value(t.params.get(k)) for k in keys],
             _note(t)] for t in search.trials()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.rjust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
            for row in [header, *rows]]


def importance_lines(study: Any, seed: int) -> list[str]:
    """fANOVA importance of each searched key over the completed trials (Optuna's default evaluator, seeded)."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_FOR_IMPORTANCE:
        return [f"importance: needs at least {MIN_FOR_IMPORTANCE} completed trials, this search has "
                f"{len(complete)}"]
    if len({t.value for t in complete}) < 2:
        return [f"importance: every completed trial scored {complete[0].value:.4f}, so no key made a difference"]
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        found: dict[str, float] = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except ImportError as err:
        return [f"importance: not computed, it needs scikit-learn ({err}): pip install 'lit_ft[tune]'"]
    except (ValueError, RuntimeError) as err:
        return [f"importance: not computed ({one_line(str(err))})"]
    return [f"importance of each key (fANOVA over {len(complete)} completed trials, sums to 1):",
            *(f"  {key:<{max(map(len, found))}}  {value:.3f}" for key, value in found.items())]


def best_trial(search: Search) -> Any:
    """The best completed trial, or None."""
    complete = [t for t in search.trials() if t.state == search.optuna.trial.TrialState.COMPLETE]
    return search.study.best_trial if complete else None


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _note(trial: Any) -> str:
    attrs = trial.user_attrs
    if attrs.get(INTERRUPTED):
        return "interrupted (its values run again)"
    note = attrs.get("error") or attrs.get("note") or ""
    if "retry_of" in attrs:
        note = f"rerun of trial {attrs['retry_of']}{'; ' + note if note else ''}"
    return str(note)[:120]
