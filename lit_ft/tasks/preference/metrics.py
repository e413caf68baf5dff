"""The DPO family's evaluation metrics, with TRL's names and meanings, as sums synced across processes.

`rewards/*` are the implicit rewards of `lit_ft.tasks.preference.losses` (beta times the policy-to-reference
log-ratio; beta times the length-normalised log-prob for the reference-free objectives): `rewards/accuracies` the
share of pairs whose chosen reward is above the rejected one, `rewards/margins` the mean of chosen minus rejected,
`rewards/chosen` and `rewards/rejected` their means. `logps/chosen` and `logps/rejected` are the policy's mean
completion log-probabilities (summed over tokens; per token for `simpo` and `orpo`).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from lit_ft.tasks.preference.losses import PairLogps, PairLosses


class _PairMeans(Metric):
    """Means over every evaluated pair of the epoch (not means of per-batch means)."""

    full_state_update = False
    group = ""
    names: tuple[str, ...] = ()
    pairs: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("pairs", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        for name in self.names:
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def output_keys(self) -> tuple[str, ...]:
        """The logged names, each `<metric>/<name>`, so they can be monitored before any value exists."""
        return tuple(f"{self.group}/{name}" for name in self.names)

    def _add(self, **values: torch.Tensor) -> None:
        for name, value in values.items():
            setattr(self, name, getattr(self, name) + value.detach().double().sum())

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.pairs.clamp(min=1)
        return {f"{self.group}/{name}": (getattr(self, name) / count).float() for name in self.names}


class Rewards(_PairMeans):
    """`rewards/accuracies`, `rewards/margins`, `rewards/chosen`, `rewards/rejected`; higher is better (the
    accuracy is what checkpointing watches by default)."""

    higher_is_better = True
    names = ("accuracies", "margins", "chosen", "rejected")
    group = "rewards"

    def update(self, losses: PairLosses) -> None:
        chosen, rejected = losses.chosen_rewards, losses.rejected_rewards
        self.pairs += chosen.numel()
        self._add(accuracies=(chosen > rejected).double(), margins=chosen - rejected, chosen=chosen,
                  rejected=rejected)


class LogProbs(_PairMeans):
    """`logps/chosen`, `logps/rejected`: the policy's completion log-probabilities."""

    names = ("chosen", "rejected")
    group = "logps"

    def update(self, logps: PairLogps) -> None:
        self.pairs += logps.chosen.numel()
        self._add(chosen=logps.chosen, rejected=logps.rejected)
