"""`model.attn_implementation`: which attention kernels the backbone loads with (Transformers' `attn_implementation`).

`sdpa` (PyTorch's fused attention, Transformers' default where an architecture supports it), `eager` (the
reference matrix products, every architecture has it) or `flash_attention_2` (the `flash-attn` package's CUDA
kernels). Unset, the backbone loads with Transformers' default. It reaches the task's `from_pretrained` as
`LoadOptions.attn_implementation` (`lit_ft.loading`). The choice also picks how packed SFT batches reach the model
(`lit_ft.packing.bins.packed_inputs`): flash-attention's varlen kernels take the packed examples in one row, the layout
that attends each example on its own on a GPU.

flash-attention needs a CUDA GPU, the `flash_attn` package and half-precision compute (its kernels take only fp16
and bf16 tensors); `attention_problem` says what is missing, for the `attention_on_machine` pre-flight rule.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

Attention = Literal["sdpa", "eager", "flash_attention_2"]
FLASH = "flash_attention_2"
# precisions whose forward computes in fp16 or bf16 (autocast for the mixed ones)
HALF_COMPUTE = ("16-mixed", "bf16-mixed", "16-true", "bf16-true")


def attention_problem(implementation: str | None, accelerator: str, precision: str) -> tuple[str, str] | None:
    """(problem, fix) when `implementation` cannot run on this machine at this precision; None when it can."""
    if implementation != FLASH:
        return None
    fix = "or set model.attn_implementation sdpa"
    if accelerator != "cuda":
        return (f"model.attn_implementation {FLASH} needs a CUDA GPU (flash-attn's kernels run only on CUDA) "
                f"and trainer.accelerator resolves to '{accelerator}'", f"run on a GPU, {fix}")
    if importlib.util.find_spec("flash_attn") is None:
        return (f"model.attn_implementation {FLASH} needs the flash_attn package, which is not installed",
                f"pip install flash-attn --no-build-isolation, {fix}")
    if precision not in HALF_COMPUTE:
        return (f"model.attn_implementation {FLASH} computes in fp16 or bf16 only, and trainer.precision is "
                f"{precision}", f"set trainer.precision bf16-mixed (or 16-mixed on GPUs without bf16), {fix}")
    return None


def flash_usable() -> bool:
    """Whether flash-attention kernels can load here (a CUDA device and the package)."""
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
