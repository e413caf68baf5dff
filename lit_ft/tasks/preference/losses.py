"""The DPO family's objectives on the log-probabilities of a pair's completions, named as TRL 1.16 names them.

Reference-based (`DPOTrainer`'s `loss_type`): `sigmoid` (DPO), `ipo`, `hinge`, `robust` (label smoothing).
Reference-free: `simpo` (`CPOTrainer`'s `loss_type="simpo"` with `cpo_alpha=0`: length-normalised log-probs and a
target margin) and `orpo` (`ORPOTrainer`: length-normalised odds ratio plus the chosen sequence's NLL).
Every function takes and returns per-pair tensors of shape (B,); the task takes their mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LossType = Literal["sigmoid", "ipo", "hinge", "robust", "simpo", "orpo"]
REFERENCE_FREE: frozenset[str] = frozenset({"simpo", "orpo"})
LENGTH_NORMALISED: frozenset[str] = frozenset({"simpo", "orpo"})


@dataclass(frozen=True)
class PairLogps:
    """Summed completion log-probabilities of a batch of pairs and their completion lengths, each (B,)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    def averaged(self) -> PairLogps:
        """The per-token means (SimPO's and ORPO's length normalisation)."""
        chosen = self.chosen / self.chosen_tokens.clamp(min=1)
        return PairLogps(chosen, self.rejected / self.rejected_tokens.clamp(min=1), self.chosen_tokens,
                         self.rejected_tokens)


@dataclass(frozen=True)
class Settings:
    """The coefficients of the objectives (see `DPOTask` for their meaning)."""

    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5


@dataclass(frozen=True)
class PairLosses:
    """Per-pair losses and the implicit rewards TRL logs for them, each (B,)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def pair_losses(kind: LossType, policy: PairLogps, reference: PairLogps | None, settings: Settings) -> PairLosses:
    """The objective `kind` per pair; `policy` holds summed log-probs (averaged here where `kind` wants that)."""
    if kind == "simpo":
        return _simpo(policy.averaged(), settings)
    if kind == "orpo":
        return _orpo(policy.averaged(), settings)
    assert reference is not None, f"loss_type {kind} needs the reference model's log-probabilities"
    chosen_ratio = policy.chosen - reference.chosen
    rejected_ratio = policy.rejected - reference.rejected
    delta = chosen_ratio - rejected_ratio
    beta, smoothing = settings.beta, settings.label_smoothing
    if kind == "sigmoid":
        losses = -F.logsigmoid(beta * delta)
    elif kind == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif kind == "ipo":
        # TRL divides the sequence log-ratios by the completion lengths (as the IPO authors' results do)
        per_token = (chosen_ratio / policy.chosen_tokens.clamp(min=1)
                     - rejected_ratio / policy.rejected_tokens.clamp(min=1))
        losses = (per_token - 1 / (2 * beta)) ** 2
    else:  # robust: unbiased under a `label_smoothing` rate of flipped labels
        clean = -(1 - smoothing) * F.logsigmoid(beta * delta)
        flipped = -smoothing * F.logsigmoid(-beta * delta)
        losses = (clean - flipped) / (1 - 2 * smoothing)
    return PairLosses(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def _simpo(average: PairLogps, settings: Settings) -> PairLosses:
    beta, smoothing = settings.beta, settings.label_smoothing
    logits = average.chosen - average.rejected - settings.simpo_gamma / beta
    losses = -F.logsigmoid(beta * logits) * (1 - smoothing) - F.logsigmoid(-beta * logits) * smoothing
    return PairLosses(losses, beta * average.chosen.detach(), beta * average.rejected.detach())


def _orpo(average: PairLogps, settings: Settings) -> PairLosses:
    """ORPO's odds-ratio term (Hong et al. 2024, Eqs. 4 and 7), negated: the task adds the chosen NLL."""
    chosen, rejected = average.chosen.float(), average.rejected.float()
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    losses = -settings.beta * F.logsigmoid(log_odds)
    return PairLosses(losses, settings.beta * chosen.detach(), settings.beta * rejected.detach())


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation on either side of -ln 2."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))
