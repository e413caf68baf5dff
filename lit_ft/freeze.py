"""Freezing the backbone, or its embeddings and lowest layers, whatever the architecture."""

from __future__ import annotations

from torch import nn

from lit_ft.errors import UserError


def transformer_layers(model: nn.Module) -> nn.ModuleList | None:
    """The backbone's stack of transformer layers: the longest ModuleList inside it."""
    base = getattr(model, "base_model", model)
    stacks = [m for m in base.modules() if isinstance(m, nn.ModuleList)]
    return max(stacks, key=len, default=None)


def freeze(model: nn.Module, backbone: bool, layers: int) -> None:
    """Freeze the whole backbone (`backbone`), or its input embeddings and `layers` lowest layers."""
    base = getattr(model, "base_model", model)
    if backbone:
        if base is model:
            raise UserError("freeze_backbone: this model has no separate task head to train")
        base.requires_grad_(False)
        return
    if layers <= 0:
        return
    stack = transformer_layers(model)
    if stack is None or layers > len(stack):
        found = 0 if stack is None else len(stack)
        raise UserError(f"freeze_layers={layers} but the backbone has {found} transformer layers")
    embeddings = getattr(base, "embeddings", None)  # BERT-style: word, position and type embeddings together
    if embeddings is None and hasattr(model, "get_input_embeddings"):
        embeddings = model.get_input_embeddings()  # type: ignore[operator]
    if isinstance(embeddings, nn.Module):
        embeddings.requires_grad_(False)
    for layer in stack[:layers]:
        layer.requires_grad_(False)
