"""Batched greedy generation with left padding and the KV cache, decoding only the new tokens."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts padded on the left, so every row's next token comes at the same position.

    Returns:
        `input_ids` and `attention_mask`, both (batch, longest prompt).
    """
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
    return ids, mask


def stop_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    """Every token that ends a response: the generation config's EOS ids plus the tokenizer's."""
    config = getattr(model, "generation_config", None)
    found = getattr(config, "eos_token_id", None)
    ids = [found] if isinstance(found, int) else list(found or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def generate(
    model: nn.Module, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int = 128, **kwargs: Any
) -> list[str]:
    """Continue each prompt (token ids) and return the decoded continuations, stripped.

    Args:
        model: A causal LM (or a peft model around one).
        tokenizer: Its tokenizer (pad and EOS ids, decoding).
        prompts: Token ids of each prompt.
        max_new_tokens: Longest continuation.
        **kwargs: Further `model.generate` arguments (`do_sample`, `temperature`, `num_beams`, ...); greedy
            decoding by default.
    """
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = left_pad(prompts, pad)
    stops = stop_ids(model, tokenizer)
    settings = {"do_sample": False, **kwargs}
    out = model.generate(  # type: ignore[operator]
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new_tokens,
        use_cache=True,
        pad_token_id=pad,
        eos_token_id=stops,
        **settings,
    )
    texts = []
    for row in out[:, ids.shape[1] :].tolist():  # only the new tokens
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts


def extract_code(text: str) -> str:
    """The program in a generation: the first fenced code block (```python ... ```), else the text before a
    closing fence (prompts that open the fence themselves), else the whole text."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text.split("```")[0]).strip("\n")
