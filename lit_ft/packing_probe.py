"""Whether a backbone architecture keeps packed examples apart: tested, not looked up.

A tiny randomly initialised model of the backbone's `model_type` (2 layers, hidden 32, built from a config: no
download, no weights) runs two short examples packed in one row (`position_ids` restarting, no attention mask)
and each alone; the architecture honours boundaries when the logits agree. Architectures that ignore
`position_ids` for masking (OPT derives its mask from `attention_mask` only; Bloom, MPT and XGLM take no
`position_ids` or use ALiBi) fail it and packing is refused for them.
"""

from __future__ import annotations

import functools
from typing import Any

# the usual config names of the size settings, and the GPT-2 style ones
TINY: dict[str, Any] = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64, "head_dim": 16,
        "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}
TOLERANCE = 1e-4


def packing_problem(model_type: str | None) -> str | None:
    """Why packing cannot be used with backbones of `model_type` (one line), or None when it can."""
    if not model_type:
        return "the backbone's config.json names no model_type, so packing cannot be checked"
    verdict = _probe(model_type)
    if verdict is None:
        return None
    return (f"data.packing needs a backbone that keeps packed examples apart, but model type '{model_type}' "
            f"{verdict}")


@functools.cache
def _probe(model_type: str) -> str | None:
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    if model_type not in CONFIG_MAPPING:
        return "is not built into Transformers"
    try:
        config = CONFIG_MAPPING[model_type](**TINY)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        gap = _packed_gap(model)
    except Exception as err:  # noqa: BLE001 - any failure means packing is unproven for this architecture
        return f"could not be tested with packed inputs ({type(err).__name__}: {str(err).splitlines()[0][:80]})"
    return None if gap <= TOLERANCE else f"lets packed examples attend to each other (logits differ by {gap:.2g})"


def _packed_gap(model: Any) -> float:
    """Largest logit difference between two examples packed in one row and each run alone."""
    import torch

    first, second = torch.arange(3, 8)[None], torch.arange(10, 17)[None]
    positions = torch.cat([torch.arange(5), torch.arange(7)])[None]
    with torch.no_grad():
        alone = [model(input_ids=x, use_cache=False).logits for x in (first, second)]
        packed = model(input_ids=torch.cat([first, second], 1), position_ids=positions, use_cache=False).logits
    return max(float((packed[:, :5] - alone[0]).abs().max()), float((packed[:, 5:] - alone[1]).abs().max()))
