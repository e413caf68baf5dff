"""PyTorch's private names that lit_ft uses: one function per access, each with the public API it waits for.

`ACCESSES` is checked against the installed torch by `tests/test_library_internals.py`.
"""

from __future__ import annotations

from typing import Any

import torch

from lit_ft.adapters.library_access import Access

ACCESSES = [
    Access("torch", "_foreach_norm", "method", "torch.linalg.vector_norm per tensor (one kernel launch each); a "
           "builtin, so only its presence is checked", "nan_guard"),
    Access("torch.optim.AdamW", "_step_supports_amp_scaling", "instance attribute", "none yet: a fused optimizer "
           "that leaves unscaling to the GradScaler", "optim"),
    Access("torch._dynamo.eval_frame.OptimizedModule", "_orig_mod", "instance attribute", "none yet: telling a "
           "`torch.compile` wrapper from the module it wraps", "packed_attention"),
    Access("torch._inductor.cpp_builder", "get_cpp_compiler", "method", "none yet: a public check that Inductor "
           "can build CPU kernels", "compile", ()),
]


def max_abs_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """max |x| of each tensor, in one fused launch per device and dtype (inf for inf, NaN for NaN)."""
    return list(torch._foreach_norm(tensors, float("inf")))


def unscale_before_step(optimizer: Any) -> None:
    """Make a fused optimizer leave unscaling to the GradScaler (before the step, so gradients can be clipped)."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer._step_supports_amp_scaling = False


def is_compiled_module(module: Any) -> bool:
    """Whether `module` is `torch.compile`'s wrapper of a module."""
    return hasattr(module, "_orig_mod")


def cpu_compiler() -> str:
    """The C++ compiler Inductor builds CPU kernels with; raises when there is none."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    return str(get_cpp_compiler())
