"""NEFTune (`model.neftune_noise_alpha`): uniform noise on the input embeddings while training (Jain et al., 2023,
"NEFTune: Noisy Embeddings Improve Instruction Finetuning"), the option TRL's SFTTrainer and Axolotl offer.

The definition is Transformers' own (`transformers/integrations/neftune.py`, `neftune_post_forward_hook`, which
`Trainer` and TRL's `SFTTrainer` install for `neftune_noise_alpha`): a forward hook on the input embedding module
adds noise drawn uniformly from [-m, m], m = alpha / sqrt(L * d), where L is the batch's sequence length (padding
included, as there) and d the embedding width, only while the module is in training mode. Evaluation, prediction
and generation run in eval mode and see the embeddings unchanged; exports hold no hook.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from lit_ft.errors import UserError


def noise_bound(alpha: float, embeddings: torch.Tensor) -> float:
    """The largest noise of one value: alpha / sqrt(L * d) for embeddings of shape (batch, L, d)."""
    return alpha / math.sqrt(embeddings.size(1) * embeddings.size(2))


def add_embedding_noise(model: nn.Module, alpha: float) -> RemovableHandle:
    """Hook NEFTune's noise onto the model's input embeddings (`get_input_embeddings`)."""
    find: Any = getattr(model, "get_input_embeddings", None)
    embeddings = find() if find is not None else None
    if not isinstance(embeddings, nn.Module):
        raise UserError(f"model.neftune_noise_alpha: {type(model).__name__} has no input embeddings to add noise "
                        "to; remove model.neftune_noise_alpha")

    def noisy(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        bound = noise_bound(alpha, output)  # output: (batch, seq, hidden)
        return output + torch.zeros_like(output).uniform_(-bound, bound)

    handle: RemovableHandle = embeddings.register_forward_hook(noisy)
    return handle
