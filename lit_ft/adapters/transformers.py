"""Transformers' private names that lit_ft uses: one function per access, each with the public API it waits for.

Transformers is not imported here until a function needs it: the modules using these load without it.
`ACCESSES` is checked against the installed Transformers by `tests/test_library_internals.py`.
"""

from __future__ import annotations

from typing import Any

from lit_ft.adapters.library_access import Access

ACCESSES = [
    Access("transformers.PretrainedConfig", "_attn_implementation", "class attribute", "none yet: the config's "
           "attention implementation is read through this property (`set_attn_implementation` is the public "
           "setter, on the model)", "estimate, packing, packed_attention"),
    Access("transformers.PreTrainedModel", "_supports_attention_backend", "class attribute", "none yet: whether a "
           "model calls attention through `AttentionInterface`", "packed_attention"),
    Access("transformers.PreTrainedModel", "_no_split_modules", "class attribute", "none yet: the layer classes "
           "that must stay whole on one device", "sharding"),
]


def attn_implementation(model_or_config: Any) -> str | None:
    """The attention implementation a model (or its config) uses, e.g. `sdpa` (None: not a Transformers config)."""
    config = getattr(model_or_config, "config", model_or_config)
    value = getattr(config, "_attn_implementation", None)
    return None if value is None else str(value)


def supports_attention_backend(model: Any) -> bool:
    """Whether the model's class calls attention through Transformers' `AttentionInterface`."""
    return bool(getattr(type(model), "_supports_attention_backend", False))


def no_split_modules(model: Any) -> list[str]:
    """The layer class names a Transformers model class declares whole-on-one-device (none for other modules).
    The class attribute: peft's wrappers forward instance lookups to the model they wrap."""
    return [str(name) for name in getattr(type(model), "_no_split_modules", None) or []]
