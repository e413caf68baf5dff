"""Metrics of preference pairs, shared by the preference tasks: each is updated with the chosen and the rejected
scores of a batch's pairs (a reward model's rewards, DPO's implicit rewards) and is a mean over every pair of the
split, synced across processes as torchmetrics syncs its states.

`pair_metrics()` is the collection: `accuracy` (the share of pairs whose chosen score is strictly above the rejected
one, as TRL counts it: a tie is wrong), `chosen` and `rejected` (mean scores) and `margin` (mean chosen - rejected).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection

PairStatistic = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PairMean(Metric):
    """The mean of a per-pair statistic of (chosen, rejected) scores over the pairs seen.

    Args:
        statistic: Per-pair values from the chosen and rejected scores, both of shape (pairs,).
        **kwargs: torchmetrics' `Metric` settings.
    """

    full_state_update = False
    higher_is_better: bool | None = None
    statistic: PairStatistic
    total: torch.Tensor
    pairs: torch.Tensor

    def __init__(self, statistic: PairStatistic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.statistic = statistic
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
        values = self.statistic(chosen.detach().float(), rejected.detach().float())
        self.total += values.sum().to(torch.float64)
        self.pairs += values.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.pairs.clamp(min=1)).float()


class PairwiseAccuracy(PairMean):
    """The share of pairs whose chosen score is strictly above the rejected one (the preference the model gets
    right); the primary metric of the preference tasks."""

    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_correct, **kwargs)


def pair_metrics() -> MetricCollection:
    """`accuracy`, mean `chosen` and `rejected` scores and their mean `margin`, one collection (a fresh one per
    stage). Compute groups are off: two metrics whose first states happen to be equal must not be merged."""
    return MetricCollection({
        "accuracy": PairwiseAccuracy(),
        "chosen": PairMean(_chosen),
        "rejected": PairMean(_rejected),
        "margin": PairMean(_margin),
    }, compute_groups=False)


# module-level functions, not lambdas: a metric collection is pickled with the module (spawned processes)
def _correct(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return (chosen > rejected).float()


def _chosen(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return chosen


def _rejected(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return rejected


def _margin(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return chosen - rejected


def split_pairs(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence scores of a pair batch, shape (2 * pairs,), -> (chosen, rejected), each (pairs,): the batch
    holds the chosen sequences first, then the rejected ones of the same pairs (`PreferenceData`'s contract)."""
    pairs = scores.shape[0] // 2
    return scores[:pairs], scores[pairs:]
