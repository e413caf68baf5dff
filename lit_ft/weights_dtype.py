"""The dtype the backbone's weights load in: the run's precision decides it, never the checkpoint's storage dtype.

Transformers 5 loads a checkpoint in the dtype it was saved in (`dtype="auto"`), and most LLMs on the hub are saved
in bf16. Left alone, a `bf16-mixed` or `32-true` run on such a backbone would keep bf16 parameters, and AdamW
updates smaller than bf16's resolution (about 0.4% of a weight) would vanish; a checkpoint loaded back for
`test`/`predict` would be rounded to bf16 as well. So weights load in fp32 (the master copy mixed precision
expects) unless the precision trains in a half dtype throughout (`bf16-true`, `16-true`), where loading directly
in that dtype saves the fp32 copy. The dtype reaches the task as `LoadOptions.dtype` (`lit_ft.loading`); a task that
passes its own `dtype` to `load_pretrained` keeps it, and QLoRA's 4-bit loading takes its compute dtype.
"""

from __future__ import annotations

import torch

HALF_TRUE = {"bf16-true": torch.bfloat16, "16-true": torch.float16}


def weights_dtype(precision: str | None) -> torch.dtype:
    """fp32 for full and mixed precision (and when no trainer is attached yet), the half dtype for `*-true`."""
    return HALF_TRUE.get(str(precision), torch.float32)
