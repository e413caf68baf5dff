"""How a task's backbone loads: the options the run decides (`LoadOptions`), passed explicitly to the task's
`build_model` and applied by `load_pretrained`.

The run, not the task, decides the dtype the weights load in (`lit_ft.weights_dtype`), 4-bit quantization
(`model.quantization`), the attention kernels (`model.attn_implementation`), a device map, and whether the model is
built on the `meta` device from its config alone (`lit_ft estimate`). The task decides the model class and its
settings (labels, config). `load_pretrained` joins the two in one call, so nothing in lit_ft patches Transformers:
two builds in one process with different options cannot see each other's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LoadOptions:
    """What the run asks of the backbone's loading (Transformers' `from_pretrained` keyword arguments).

    Args:
        dtype: The dtype the weights load in (fp32 unless the precision trains in a half dtype throughout).
        quantization_config: Transformers' quantization config (bitsandbytes 4-bit for QLoRA), or None.
        device_map: Transformers' `device_map` (None: the weights load on the CPU; Lightning moves them).
        attn_implementation: The attention kernels (`sdpa`, `eager`, `flash_attention_2`); None: Transformers'
            default for the architecture.
        meta: Build on the `meta` device from the backbone's config only: shapes and dtypes, no weights read or
            allocated (`lit_ft estimate`). Quantization and the device map do not apply there.
    """

    dtype: torch.dtype = torch.float32
    quantization_config: Any = None
    device_map: str | dict[str, Any] | None = None
    attn_implementation: str | None = None
    meta: bool = False

    def pretrained_kwargs(self) -> dict[str, Any]:
        """The `from_pretrained` keyword arguments these options set (unset ones are left to Transformers)."""
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        for key in ("quantization_config", "device_map", "attn_implementation"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        return kwargs


def load_pretrained(auto_class: Any, backbone: str, load: LoadOptions, **model_kwargs: Any) -> nn.Module:
    """`auto_class.from_pretrained(backbone, **model_kwargs)` with the run's loading options; on `meta`, the same
    model built from the backbone's config (`auto_class.from_config`), no weights read.

    Args:
        auto_class: A Transformers auto class (`AutoModelForSequenceClassification`, ...).
        backbone: The resolved backbone (`Task.build_model`'s argument).
        load: The run's loading options (`Task.build_model`'s argument).
        **model_kwargs: The task's own arguments (`config=...`, `num_labels=...`); a `dtype` (or `torch_dtype`)
            here wins over the run's.
    """
    if load.meta:
        return _meta_model(auto_class, backbone, load, model_kwargs)
    kwargs = {**load.pretrained_kwargs(), **model_kwargs}
    if "torch_dtype" in model_kwargs and "dtype" not in model_kwargs:
        del kwargs["dtype"]  # Transformers prefers `dtype` over its older name: the task's own choice must win
    model: nn.Module = auto_class.from_pretrained(backbone, **kwargs)
    return model


def _meta_model(auto_class: Any, backbone: str, load: LoadOptions, model_kwargs: dict[str, Any]) -> nn.Module:
    """The model `from_pretrained` would build, on `meta`: config overrides in `model_kwargs` apply to the config
    (as `from_pretrained` applies them), the rest go to the model as `from_pretrained` would pass them."""
    from transformers import AutoConfig

    kwargs = dict(model_kwargs)
    remote = bool(kwargs.pop("trust_remote_code", False))
    config = kwargs.pop("config", None)
    if config is None:
        config, kwargs = AutoConfig.from_pretrained(backbone, trust_remote_code=remote, return_unused_kwargs=True,
                                                    **kwargs)
    kwargs.setdefault("dtype", load.dtype)
    # the attention implementation changes what training keeps (eager: the probabilities); flash-attention's
    # kernels keep what sdpa's do, and would need their package and a GPU to be named here
    if load.attn_implementation in ("eager", "sdpa"):
        kwargs.setdefault("attn_implementation", load.attn_implementation)
    with torch.device("meta"):
        model: nn.Module = auto_class.from_config(config, trust_remote_code=remote, **kwargs)
    return model
