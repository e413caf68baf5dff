"""LoRA adapters through `peft` (optional dependency: `pip install lit_ft[lora]`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from lit_ft.domains import PositiveInt, Probability


@dataclass
class LoraSettings:
    """LoRA settings (`model.lora`); only the adapter weights train.

    Args:
        r: Rank of the update matrices.
        alpha: Scaling numerator (the update is scaled by alpha / r).
        dropout: Dropout on the adapter input.
        target_modules: Module names to adapt (or `all-linear`); default: peft's per-architecture choice
            (attention projections), or every linear layer but the output head for architectures peft does not
            know.
        modules_to_save: Extra modules trained in full and saved with the adapter (default: the task head).
    """

    r: PositiveInt = 8
    alpha: PositiveInt = 16
    dropout: Probability = 0.05
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None


def _peft() -> Any:
    try:
        import peft
    except ImportError as err:
        raise ImportError("model.lora needs the `peft` package: pip install 'lit_ft[lora]'") from err
    return peft


def apply_lora(model: nn.Module, settings: LoraSettings, task_type: str | None) -> nn.Module:
    """Wrap `model` with LoRA adapters; everything but the adapters (and `modules_to_save`) is frozen."""
    peft = _peft()
    config = peft.LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=settings.target_modules or default_targets(model),
        modules_to_save=settings.modules_to_save,
        task_type=getattr(peft.TaskType, task_type) if task_type else None,
    )
    return peft.get_peft_model(model, config)


def default_targets(model: nn.Module) -> list[str] | str:
    """peft's per-architecture defaults (attention projections) where it has them, else every linear layer but
    the output head (`all-linear`)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return list(known[model_type]) if model_type in known else "all-linear"


def is_adapter_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def exportable(model: nn.Module, merge: bool) -> nn.Module:
    """A merged plain model (a copy; the live model keeps its adapters) or the adapter model itself."""
    if not is_adapter_model(model) or not merge:
        return model
    import copy

    return copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]
