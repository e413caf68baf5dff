"""FSDP's unit of sharding (and of activation checkpointing) for any Hugging Face model: its transformer layers.

FSDP gathers one wrapped module's parameters at a time, so a decoder LLM wants one unit per decoder layer. Which
class that is differs per architecture (`LlamaDecoderLayer`, `Qwen2DecoderLayer`, `GPT2Block`, `BertLayer`), and
a set of classes cannot be written generically in a YAML recipe. Every Transformers model names those classes
itself in `_no_split_modules` (the blocks that must stay whole on one device, which `device_map` also uses), so
`TransformerLayers` wraps every module whose class name is listed there by a model it passed on the way down:

    strategy:
      class_path: lightning.pytorch.strategies.FSDPStrategy
      init_args:
        auto_wrap_policy: {class_path: lit_ft.sharding.TransformerLayers}
        activation_checkpointing_policy: {class_path: lit_ft.sharding.TransformerLayers}

FSDP (and `apply_activation_checkpointing`) call an auto-wrap policy top-down, `recurse=True` for each module
before its children, so the model holding `_no_split_modules` is always seen before its layers.
"""

from __future__ import annotations

from torch import nn

from lit_ft.adapters.transformers import no_split_modules


class TransformerLayers:
    """An FSDP auto-wrap policy: wrap the modules whose class the model names in `_no_split_modules`.

    Args:
        extra: More class names to wrap (for a model whose `_no_split_modules` is empty or incomplete).
    """

    def __init__(self, extra: list[str] | None = None) -> None:
        self.names: set[str] = set(extra or [])

    def __call__(self, module: nn.Module, recurse: bool, nonwrapped_numel: int = 0) -> bool:
        if recurse:  # asked whether to look inside `module`: always, after noting what it declares
            self.names.update(declared_layers(module))
            return True
        return type(module).__name__ in self.names

    def __repr__(self) -> str:
        return f"TransformerLayers({sorted(self.names)})"


def declared_layers(module: nn.Module) -> list[str]:
    """The class names a Transformers model declares in `_no_split_modules` (none for other modules)."""
    return no_split_modules(module)

