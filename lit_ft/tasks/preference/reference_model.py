"""The reference model of the DPO objectives: where `log pi_ref(completion | prompt)` comes from.

In order of preference, per batch:
1. precomputed: the batch carries `ref_chosen_logps` / `ref_rejected_logps` (`precompute_ref_log_probs`: computed
   once before training and kept with the tokenized features);
2. the policy itself with its LoRA adapters disabled (peft's `disable_adapter()`): the base weights are the
   reference, so no second copy exists;
3. a frozen copy: the backbone loaded a second time with the run's loading options (dtype, attention kernels).

The copy is held here, outside the FineTuner's module tree, so it is never trained (no optimizer sees it), never
saved (checkpoints and exports hold the FineTuner's modules only) and never wrapped by a strategy; it is loaded at
its first use (predict and export never load it) and follows the policy's device. Reference forward passes run in
eval mode (no dropout) without gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from lit_ft.lora import is_adapter_model
from lit_ft.task import Batch
from lit_ft.tasks.preference.logps import pair_forward
from lit_ft.tasks.preference.losses import PairLogps
from lit_ft.tasks.preference.reference import REFERENCE_COLUMNS


class Reference:
    """Reference log-probabilities for pair batches.

    Args:
        load_copy: Loads the frozen copy (the backbone as the policy was loaded) when one is needed.
    """

    def __init__(self, load_copy: Callable[[], nn.Module]) -> None:
        self._load_copy = load_copy
        self._copy: nn.Module | None = None

    def logps(self, policy: nn.Module, batch: Batch) -> PairLogps:
        """The reference's summed completion log-probs of `batch`'s pairs (B each)."""
        if REFERENCE_COLUMNS[0] in batch:
            counts = batch["completion_mask"][:, 1:].sum(-1)
            pairs = counts.size(0) // 2
            chosen, rejected = (batch[key].to(counts.device) for key in REFERENCE_COLUMNS)
            return PairLogps(chosen, rejected, counts[:pairs], counts[pairs:])
        with torch.no_grad():
            if is_adapter_model(policy):
                with evaluating(policy), policy.disable_adapter():  # type: ignore[operator]
                    return pair_forward(policy, batch).logps
            return pair_forward(self.copy(device_of(policy)), batch).logps

    def copy(self, device: torch.device) -> nn.Module:
        """The frozen copy on `device` (loaded at the first call)."""
        if self._copy is None:
            model = self._load_copy()
            model.requires_grad_(False)
            self._copy = model.eval()
        if device_of(self._copy) != device:
            self._copy.to(device)
        return self._copy

    def release(self) -> None:
        """Drop the frozen copy (once the log-probs are precomputed it is not needed)."""
        self._copy = None


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """`model` in eval mode for the block, every submodule's own mode restored after it."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
