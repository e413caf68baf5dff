"""The log-probabilities of a pair batch's completions: chosen and rejected through ONE forward pass.

A pair batch (`lit_ft.tasks.preference.data`) holds the B chosen sequences and then the B rejected ones, right padded,
with `completion_mask` on the tokens whose log-probabilities count. The language-model head runs only from the
earliest completion token on where the model takes `logits_to_keep` (Transformers' causal LMs do): the prompt's
logits would be computed and thrown away, and with (2B, L, vocab) they are most of a step's memory.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lit_ft.task import Batch
from lit_ft.tasks.preference.losses import PairLogps


@dataclass(frozen=True)
class PairForward:
    """What the losses need of one forward pass: the pairs' log-probs and, when asked, the chosen NLL."""

    logps: PairLogps
    chosen_nll: torch.Tensor | None = None


def pair_forward(model: nn.Module, batch: Batch, *, chosen_nll: bool = False) -> PairForward:
    """Run `model` once over the concatenated pairs of `batch`.

    Args:
        model: A causal LM (or a peft model around one).
        batch: A pair batch.
        chosen_nll: Also return the mean token NLL of the chosen sequences over the prompt and the completion, as
            TRL's `ORPOTrainer` adds it; this needs the logits of every position.
    """
    inputs = batch["inputs"]
    mask = batch["completion_mask"].bool()
    length = mask.size(1)
    start = 0 if chosen_nll else _first_completion(mask)
    kwargs: dict[str, Any] = {**inputs, "use_cache": False}
    if start > 1 and takes_logits_to_keep(model):
        kwargs["logits_to_keep"] = length - start + 1  # positions start-1 .. L-1 predict tokens start .. L
    logits = model(**kwargs).logits  # (2B, kept positions, vocab)
    offset = length - logits.size(1)
    targets = inputs["input_ids"][:, offset + 1:]
    per_token = token_logps(logits[:, :-1], targets)  # (2B, kept - 1)
    counted = mask[:, offset + 1:]
    sums = (per_token * counted).sum(-1)
    counts = counted.sum(-1)
    pairs = sums.size(0) // 2
    logps = PairLogps(sums[:pairs], sums[pairs:], counts[:pairs], counts[pairs:])
    if not chosen_nll:
        return PairForward(logps)
    attended = inputs["attention_mask"][:pairs, 1:].bool()
    nll = -(per_token[:pairs] * attended).sum() / attended.sum().clamp(min=1)
    return PairForward(logps, nll)


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position, in fp32 at least, one sequence at a time so that no second
    (batch, seq, vocab) tensor is made."""
    rows = []
    for row_logits, row_targets in zip(logits, targets, strict=True):
        row_logits = row_logits.float() if row_logits.dtype in (torch.float16, torch.bfloat16) else row_logits
        picked = row_logits.gather(-1, row_targets.unsqueeze(-1)).squeeze(-1)
        rows.append(picked - torch.logsumexp(row_logits, dim=-1))
    return torch.stack(rows)


def _first_completion(mask: torch.Tensor) -> int:
    """The earliest position of any completion token in the batch (0 when there is none)."""
    any_row = mask.any(dim=0)
    return int(any_row.float().argmax()) if bool(any_row.any()) else 0


def takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether the causal LM under `model` (a peft wrapper's base model, say) declares `logits_to_keep`."""
    unwrap: Any = getattr(model, "get_base_model", None)
    base = unwrap() if callable(unwrap) else model
    return "logits_to_keep" in inspect.signature(type(base).forward).parameters
