"""`model.compile`: `torch.compile` of the model's forward pass, with the parameters' names unchanged.

`torch.compile(module)` returns a wrapper whose `state_dict` keys gain an `_orig_mod.` prefix; registered as a
submodule of the FineTuner it would put that prefix into every checkpoint, and an export would no longer load.
So the compiled wrapper is held outside the module tree (`CompiledForward`): the FineTuner's training and
evaluation forward passes go through it, while checkpoints, exports and generation (`model.generate`, whose
growing key-value cache would recompile at every new length) use the plain model, whose weights it shares.
The wrapper is built at the first forward pass, after the strategy has wrapped the model (DDP, FSDP).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from torch import nn

from lit_ft.adapters.torch import cpu_compiler
from lit_ft.errors import UserError


def compiler_problem(cuda: bool) -> str | None:
    """Why `torch.compile` (its default Inductor backend) cannot build kernels on this machine, or None.

    Inductor writes Triton kernels for CUDA and C++ (built by the system's C++ compiler) for the CPU.
    """
    if cuda:
        if importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs the triton package (it comes with pip's CUDA builds of torch)"
        return None
    try:
        cpu_compiler()
    except Exception as err:  # Inductor's own error type for a missing compiler changes between releases
        return (f"torch.compile on the CPU needs a C++ compiler (g++ or clang++ on PATH, or named by $CXX); "
                f"none works here ({type(err).__name__})")
    return None


def check_compile(enabled: bool, cuda: bool) -> None:
    """Stop before anything loads when `model.compile` is on and this machine cannot compile."""
    problem = compiler_problem(cuda) if enabled else None
    if problem:
        raise UserError(f"model.compile: {problem}; install one, or set model.compile false")


class CompiledForward:
    """The compiled forward of one model, kept out of the module tree (so out of `state_dict`)."""

    def __init__(self) -> None:
        self.source: nn.Module | None = None
        self.compiled: nn.Module | None = None

    def __call__(self, model: nn.Module) -> nn.Module:
        """The compiled wrapper of `model`, built at the first call and again if the model was rebuilt."""
        if self.source is not model or self.compiled is None:
            import torch

            check_compile(True, next(model.parameters()).is_cuda)
            compiled: Any = torch.compile(model)
            self.source, self.compiled = model, compiled
        return self.compiled

    def __getstate__(self) -> dict[str, Any]:
        return {"source": None, "compiled": None}  # a copied module compiles again on first use
