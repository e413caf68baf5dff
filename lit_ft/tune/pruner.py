"""Which trials `lit_ft tune` stops early: an Optuna pruner named in the search space's `pruner` entry.

    pruner: {type: median, n_startup_trials: 2, n_warmup_steps: 0}    # the default: median with Optuna's settings
    pruner: {type: threshold, lower: 0.6}                              # stop any trial whose value falls below 0.6
    pruner: {type: none}                                               # never prune

The trial's monitored metric is reported at each validation (step = the optimizer step), so `n_warmup_steps`
counts optimizer steps. Settings are the pruner class's own keyword arguments, checked by name.
"""

from __future__ import annotations

import inspect
from typing import Any

from lit_ft.errors import UserError

PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "threshold": "ThresholdPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "none": "NopPruner",
}


def make_pruner(spec: dict[str, Any], where: str) -> Any:
    """The Optuna pruner a search space's `pruner` entry describes."""
    import optuna

    settings = dict(spec)
    kind = settings.pop("type", "median")
    if kind not in PRUNERS:
        raise UserError(f"{where}: pruner type {kind!r} is not one of {list(PRUNERS)}")
    cls = getattr(optuna.pruners, PRUNERS[kind])
    known = [n for n in inspect.signature(cls).parameters if n != "self"]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise UserError(f"{where}: pruner '{kind}' has no setting(s) {unknown}; its settings are {known}")
    try:
        return cls(**settings)
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: pruner '{kind}' rejects its settings {settings}: {err}") from None
