"""The dtype the backbone's weights load in: the run's precision decides it, never the checkpoint's storage dtype.

Transformers 5 loads a checkpoint in the dtype it was saved in (`dtype="auto"`), and most LLMs on the hub are saved
in bf16. Left alone, a `bf16-mixed` or `32-true` run on such a backbone would keep bf16 parameters, and AdamW
updates smaller than bf16's resolution (about 0.4% of a weight) would vanish; a checkpoint loaded back for
`test`/`predict` would be rounded to bf16 as well. So weights load in fp32 (the master copy mixed precision
expects) unless the precision trains in a half dtype throughout (`bf16-true`, `16-true`), where loading directly
in that dtype saves the fp32 copy. A task that passes its own `dtype` keeps it; QLoRA's 4-bit loading sets its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from lit_ft.meta_model import patched_from_pretrained

HALF_TRUE = {"bf16-true": torch.bfloat16, "16-true": torch.float16}


def weights_dtype(precision: str | None) -> torch.dtype:
    """fp32 for full and mixed precision (and when no trainer is attached yet), the half dtype for `*-true`."""
    return HALF_TRUE.get(str(precision), torch.float32)


@contextlib.contextmanager
def loading_in(dtype: torch.dtype) -> Iterator[None]:
    """Within the block, `AutoModelFor*.from_pretrained` loads in `dtype` unless the call names a dtype."""

    def with_dtype(original: object, cls: type, *args: object, **kwargs: object) -> object:
        if "dtype" not in kwargs and "torch_dtype" not in kwargs:
            kwargs["dtype"] = dtype
        return original.__func__(cls, *args, **kwargs)  # type: ignore[attr-defined]

    with patched_from_pretrained(with_dtype):
        yield
