"""How close a metric computed on 2 DDP processes must be to the same metric computed on 1: a relative and an
absolute tolerance per kind of metric, read from the task's metric objects, which a plugin can override.

The two fits see the same global batches, but the 2-process weights come from all-reduced gradients and every
float sum is added in another order, so values agree only to float32 rounding, amplified by the metric's formula:

- counted: a metric whose states are all whole numbers (accuracy, F1, precision, recall: true/false positive
  counts) is the same ratio of the same counts: equal but for the last bits.
- summed: a metric whose states are float sums (the mean loss, MSE, MAE, text metrics' totals): rounding of the
  order of 1e-6 relative, so 1e-4 holds with room.
- normalised: a correlation or explained-variance score (Pearson's r, concordance, R^2, Spearman's rho) divides a
  co-moment by spreads that a few-step model makes small (its outputs barely vary), and torchmetrics merges the
  processes' float32 moments: digits cancel, so r = 0.08996 on 1 process is 0.08985 on 2 (1e-3 relative).
  A real DDP fault (a padding row counted, a rank's rows missing) moves such a score by far more than 1e-2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torchmetrics import Metric, MetricCollection


@dataclass(frozen=True)
class Tolerance:
    """`actual` is close to `expected` when |actual - expected| <= max(rel * max(|actual|, |expected|), abs)
    (`math.isclose`)."""

    rel: float
    abs: float
    kind: str = "given"

    def allows(self, actual: float, expected: float) -> bool:
        if math.isnan(actual) or math.isnan(expected):
            return math.isnan(actual) and math.isnan(expected)
        return math.isclose(actual, expected, rel_tol=self.rel, abs_tol=self.abs)

    def __str__(self) -> str:
        return f"rel {self.rel:g}, abs {self.abs:g} ({self.kind})"


COUNTED = Tolerance(rel=1e-5, abs=1e-6, kind="counted")
SUMMED = Tolerance(rel=1e-4, abs=1e-6, kind="summed")
NORMALISED = Tolerance(rel=1e-2, abs=1e-3, kind="normalised")
# torchmetrics classes that divide by the spread of their inputs (subclasses included, such as lit_ft's Pearson)
NORMALISED_METRICS = ("PearsonCorrCoef", "ConcordanceCorrCoef", "SpearmanCorrCoef", "KendallRankCorrCoef",
                      "R2Score", "ExplainedVariance")


def metric_kind(metric: Metric) -> Tolerance:
    """The tolerance of one metric object, by its class and the dtypes of its states."""
    if any(cls.__name__ in NORMALISED_METRICS for cls in type(metric).__mro__):
        return NORMALISED
    states = list(metric.metric_state.values())  # the states registered with `add_state`
    tensors = [t for s in states for t in (s if isinstance(s, list) else [s]) if isinstance(t, torch.Tensor)]
    if tensors and all(not (t.is_floating_point() or t.is_complex()) for t in tensors):
        return COUNTED
    return SUMMED


def tolerances(metrics: MetricCollection, stage: str,
               overrides: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Tolerance]:
    """The tolerance of each logged name's prefix (`val/loss`, `val/pearson`; a dict-valued metric's keys,
    `val/f1/PER`, take their metric's). `overrides` (metric name -> (rel, abs)) replace the kind's."""
    found = {f"{stage}/loss": SUMMED}
    for name, metric in metrics.items(keep_base=False, copy_state=False):
        found[f"{stage}/{name}"] = metric_kind(metric)
    for name, (rel, abs_) in (overrides or {}).items():
        found[f"{stage}/{name.removeprefix(f'{stage}/')}"] = Tolerance(rel=rel, abs=abs_, kind="Conformance")
    return found


def tolerance_of(key: str, known: Mapping[str, Tolerance]) -> Tolerance:
    """The tolerance of a logged key: its own, else its longest known prefix's (`val/f1/PER` -> `val/f1`), else
    the summed kind's (a float from an unknown source)."""
    parts = key.split("/")
    for end in range(len(parts), 0, -1):
        prefix = "/".join(parts[:end])
        if prefix in known:
            return known[prefix]
    return SUMMED


def metric_differences(single: Mapping[str, float], double: Mapping[str, float],
                       known: Mapping[str, Tolerance]) -> list[str]:
    """One line per metric of one validation whose 2-process value is not within its tolerance of the
    1-process value (both values and the tolerance in it), or which one of the runs lacks."""
    lines = [f"{key}: logged by only the {'1' if key in single else '2'}-process run"
             for key in sorted(set(single) ^ set(double))]
    for key in sorted(set(single) & set(double)):
        tolerance = tolerance_of(key, known)
        one, two = single[key], double[key]
        if not tolerance.allows(two, one):
            lines.append(f"{key}: 1 process {one!r}, 2 processes {two!r} (difference {abs(two - one):.3g}; "
                         f"tolerance {tolerance})")
    return lines
