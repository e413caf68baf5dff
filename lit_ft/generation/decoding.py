"""Batched text generation for every generative task (seq2seq and causal LMs), and code extraction from it.

One path for both model families: prompts arrive as token-id lists; a decoder-only model gets them padded on the
left (every row's next token then comes at the same position, and the KV cache is used), an encoder-decoder model
on the right (its encoder positions must not move); only the new tokens are decoded, up to the first stop token.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn

from lit_ft.rows import ROW, number_split

POSITION = ROW  # a row's place in its split (every split has it): generation runs on the first `generate_examples`
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}
_SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff", "eta_cutoff")
_BEAM_FLAGS = ("early_stopping", "length_penalty")


def pad_prompts(prompts: list[list[int]], pad_id: int, left: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts padded to the longest one, on the left (decoder-only models) or on the right.

    Returns:
        `input_ids` and `attention_mask`, both (batch, longest prompt).
    """
    width = max(len(p) for p in prompts)
    ids, mask = [], []
    for prompt in prompts:
        fill = width - len(prompt)
        ids.append([pad_id] * fill + list(prompt) if left else list(prompt) + [pad_id] * fill)
        mask.append([0] * fill + [1] * len(prompt) if left else [1] * len(prompt) + [0] * fill)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


def stop_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a response: the generation config's EOS ids plus the tokenizer's."""
    found = getattr(generation_config, "eos_token_id", None)
    ids = [found] if isinstance(found, int) else list(found or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def decoding_settings(generation_config: Any, tokenizer: Any, max_new_tokens: int, **kwargs: Any) -> dict[str, Any]:
    """The `model.generate` arguments lit_ft decodes with, over the model's `generation_config`: greedy unless
    `kwargs` say otherwise (a backbone's own config may turn sampling on), `max_new_tokens`, pad and stop tokens.

    An export writes these into its `generation_config.json` (`GenerationTask.export_extras`), so `generate()`
    and `pipeline()` on it decode as evaluation and `lit_ft predict` did."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"do_sample": False, "max_new_tokens": max_new_tokens, "pad_token_id": pad,
            "eos_token_id": stop_ids(generation_config, tokenizer), **kwargs}


def inert_flags(config: Any) -> list[str]:
    """The settings of a `GenerationConfig` that its decoding mode ignores (sampling ones without sampling, beam
    ones with one beam): a backbone's sampling defaults left beside `do_sample=False` do nothing, and Transformers
    refuses to save such a config."""
    flags = [] if config.do_sample else [k for k in _SAMPLING_FLAGS if getattr(config, k, None) is not None]
    if (config.num_beams or 1) == 1:
        flags += [k for k in _BEAM_FLAGS if getattr(config, k, None) is not None]
    return flags


def write_generation_config(out_dir: Path, tokenizer: Any, max_new_tokens: int, **kwargs: Any) -> None:
    """Make `generate()` and `pipeline()` on the export in `out_dir` decode as lit_ft did: `decoding_settings`
    (greedy unless `kwargs` say otherwise, `max_new_tokens`, stop and pad tokens) over the model's own generation
    config, which may have come with sampling on."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(out_dir)
    except OSError:
        config = GenerationConfig()
    config.update(**decoding_settings(config, tokenizer, max_new_tokens, **kwargs))
    for key in inert_flags(config):
        setattr(config, key, None)
    config.save_pretrained(out_dir)


def is_encoder_decoder(model: nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


@torch.no_grad()
def generate(
    model: nn.Module, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int = 128, **kwargs: Any
) -> list[str]:
    """Generate from each prompt (token ids) and return the decoded new text, stripped.

    Args:
        model: A causal LM or an encoder-decoder model (or a peft model around either).
        tokenizer: Its tokenizer (pad and EOS ids, decoding).
        prompts: Token ids of each prompt (the encoder input of an encoder-decoder model).
        max_new_tokens: Longest generated output.
        **kwargs: Further `model.generate` arguments (`num_beams`, `do_sample`, `temperature`, ...); greedy
            decoding by default.
    """
    encoder_decoder = is_encoder_decoder(model)
    device = next(model.parameters()).device
    settings = decoding_settings(getattr(model, "generation_config", None), tokenizer, max_new_tokens, **kwargs)
    ids, mask = pad_prompts(prompts, settings["pad_token_id"], left=not encoder_decoder)
    found = settings["eos_token_id"]
    stops = [found] if isinstance(found, int) else list(found or [])
    out = model.generate(  # type: ignore[operator]
        input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True, **settings,
    )
    # (batch, new tokens): a decoder-only output repeats the prompt; an encoder-decoder one starts with the
    # decoder's start token (BART's is its EOS)
    new = out[:, 1:] if encoder_decoder else out[:, ids.shape[1] :]
    texts = []
    for row in new.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts


def extract_code(generation: str) -> str:
    """The program in a generation, without the blank lines around it.

    A prompt may open the fence itself, so the generation is code and a closing fence: when the first fence has
    no language tag and the fences are odd in number, the text before it is the program. Otherwise the first
    fenced ```python block, else the first fenced block, else the whole text. An unclosed fence (generation cut
    at the token limit) runs to the end of the text.
    """
    first = generation.find("```")
    opening = _FENCE.match(generation, first) if first >= 0 else None
    if first >= 0 and generation.count("```") % 2 == 1 and not (opening and opening.group(1)):
        return generation[:first].strip("\n")
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(generation)]
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    return (python or [b for _, b in blocks] or [generation])[0].strip("\n")


def number_rows(ds: datasets.Dataset) -> datasets.Dataset:
    """The rows of a split with their place in it (`POSITION`), which `generate_examples` selects by; the data
    module's `raw` numbers every split already (kept for plugins that read rows themselves)."""
    return number_split(ds)
