"""What checkpointing and early stopping can watch, and in which direction: read from the metrics themselves.

Every torchmetrics metric says whether a higher value is better (`Metric.higher_is_better`); that is the only
source of a monitor's direction, for every task (a correlation is maximised, an error minimised, whatever the
task or problem type). The stage loss is always available and lower is better.

A metric whose `compute` returns a dict (several values, such as SQuAD's exact match and F1) is logged as one
value per key; it names the keys it always returns in `output_keys` so they can be monitored before any value
exists. torchmetrics' `ClasswiseWrapper` is understood as is (`<prefix><label><postfix>` per label).
"""

from __future__ import annotations

from typing import Literal

from torchmetrics import Metric, MetricCollection
from torchmetrics.wrappers import ClasswiseWrapper

from lit_ft.adapters.torchmetrics import classwise_affixes
from lit_ft.errors import UserError

LOSS = "loss"
Mode = Literal["min", "max"]


def _keys(name: str, metric: Metric) -> list[str]:
    if isinstance(metric, ClasswiseWrapper):
        prefix, postfix = classwise_affixes(metric)
        return [f"{prefix}{label}{postfix}" for label in metric.labels or []]
    keys = getattr(metric, "output_keys", None)
    return [name] if keys is None else list(keys)


def monitorable(metrics: MetricCollection) -> dict[str, Mode]:
    """Every logged name (within a stage) that can be monitored, with its direction; `loss` included."""
    found: dict[str, Mode] = {LOSS: "min"}
    for name, metric in metrics.items(keep_base=False, copy_state=False):
        higher = getattr(metric, "higher_is_better", None)
        if higher is None:  # a metric that does not say cannot be watched
            continue
        for key in _keys(name, metric):
            found[key] = "max" if higher else "min"
    return found


def monitor_mode(name: str, metrics: MetricCollection, task: str) -> Mode:
    """The direction of monitoring `name`; a UserError naming the valid choices if the task logs no such metric."""
    found = monitorable(metrics)
    if name not in found:
        raise UserError(
            f"monitor '{name}' is not a metric of task '{task}'; choose from {sorted(found)} "
            "(set model.task_options.monitor, or checkpoint.monitor as val/<name>)"
        )
    return found[name]
