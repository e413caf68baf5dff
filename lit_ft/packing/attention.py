"""Attention one packed example at a time, for backbones that attend with PyTorch's sdpa on a CPU.

Given packed rows and no attention mask, Transformers keeps examples apart with a block-diagonal mask
(`masking_utils.find_packed_sequence_indices`), and sdpa then attends over each row's whole length: a row of short
examples costs the attention of one `max_length` example, and the mask rules out the causal kernels. Here every
example is attended on its own, causal (`is_causal=True`), so a packed row costs the sum of its examples' attention,
less than the same examples in padded batches.

The implementation is registered with Transformers' `AttentionInterface` as `lit_ft_packed_sdpa`, with sdpa's
mask builder, and `attend_per_example` switches a model to it. It takes the example boundaries only from the
`packed_spans` keyword that lit_ft passes with a packed batch (`lit_ft.packing.bins.packed_inputs`); every other call
(evaluation, generation, a backbone that does not pass keywords through to its attention) goes to sdpa unchanged,
with the mask Transformers built, so a packed row is never attended across examples either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812 - the usual name

from lit_ft.adapters.torch import is_compiled_module
from lit_ft.adapters.transformers import attn_implementation, supports_attention_backend

NAME = "lit_ft_packed_sdpa"
SPANS = "packed_spans"  # the model keyword: per row, (start, end) of each example


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, per_example_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def per_example_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          **kwargs: Any) -> tuple[torch.Tensor, None]:
    """sdpa over each span of `packed_spans` on its own; plain sdpa when the call has no spans or needs more than
    causal attention within an example (a sliding window shorter than an example, soft-capping, sinks)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    spans: list[list[tuple[int, int]]] | None = kwargs.pop(SPANS, None)
    window = kwargs.get("sliding_window")
    length = query.shape[2]
    if (spans is None or key.shape[2] != length or kwargs.get("is_causal") is False
            or not getattr(module, "is_causal", True) or kwargs.get("output_attentions")
            or any(kwargs.get(k) is not None for k in ("softcap", "s_aux", "position_bias"))
            or (window is not None and any(end - start > window for row in spans for start, end in row))):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    batch, heads = query.shape[:2]
    sizes: list[int] = []
    attended: list[bool] = []  # every row cut into its examples and its padding, rows one after another
    for row in spans:
        sizes += [end - start for start, end in row]
        attended += [True] * len(row)
        done = row[-1][1] if row else 0
        if done < length:
            sizes.append(length - done)
            attended.append(False)
    # token-major views ([tokens, heads, dim]) split in one op: its backward is one concatenation
    q_all, k_all, v_all = (t.transpose(1, 2).reshape(batch * length, heads, -1).split(sizes)
                           for t in (query, key, value))
    out: dict[int, torch.Tensor] = {}
    by_size: dict[int, list[int]] = {}
    for i, (size, keep) in enumerate(zip(sizes, attended, strict=True)):
        if keep:
            by_size.setdefault(size, []).append(i)
    for same in by_size.values():  # examples of one length attend in one call
        q, k, v = (torch.stack([t[i] for i in same]).transpose(1, 2) for t in (q_all, k_all, v_all))
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True).transpose(1, 2)
        for j, i in enumerate(same):
            out[i] = attn[j]
    # padding: attended by nothing, it attends to nothing
    pieces = [out[i] if keep else v_all[i].new_zeros(v_all[i].shape) for i, keep in enumerate(attended)]
    return torch.cat(pieces).view(batch, length, heads, -1), None


def attend_per_example(model: Any) -> bool:
    """Switch a backbone that attends with sdpa through Transformers' attention interface to per-example
    attention (idempotent); whether it now attends that way. Only on a CPU, where it was measured to pay
    (bench/README.md): on a GPU, one sdpa call per example length costs kernel launches that the fused masked
    kernels do not, so a GPU backbone keeps Transformers' mask (or flash-attention's varlen kernels, if configured).
    Left as they are too: other attention implementations, and a compiled backbone (`model.compile`), whose graph
    would be recompiled for every new set of example lengths."""
    if is_compiled_module(model):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's backbone
    config = getattr(base, "config", None)
    current = attn_implementation(config)
    if current == NAME:
        return True
    weight = next(iter(base.parameters()), None) if isinstance(base, torch.nn.Module) else None
    if (current != "sdpa" or not supports_attention_backend(base)
            or weight is None or weight.device.type != "cpu"):
        return False
    _register()
    base.set_attn_implementation(NAME)
    return attn_implementation(config) == NAME
