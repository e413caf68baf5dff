"""Whether a backbone architecture keeps packed examples apart: tested, not looked up.

A tiny randomly initialised model of the backbone's `model_type` (2 layers, hidden 32, built from a config: no
download, no weights) runs three short examples as lit_ft feeds packed rows (`lit_ft.packing.bins.stack_bins`: two
examples in one row, the third in a second row filled with padding; `position_ids` restarting, no attention mask)
and each alone, in both layouts its attention can get in training (Transformers' block-diagonal mask, and on a
CPU per-example attention: `lit_ft.packing.bins.packed_inputs`); the architecture honours boundaries when the logits
agree in both. Architectures that ignore
`position_ids` for masking (OPT derives its mask from `attention_mask` only; Bloom, MPT and XGLM take no
`position_ids` or use ALiBi) fail it and packing is refused for them.
"""

from __future__ import annotations

import functools
import json
from typing import Any

# the usual config names of the size settings, and the GPT-2 style ones
TINY: dict[str, Any] = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64, "head_dim": 16,
        "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64, "rotary_dim": 8,
        "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "num_layers": 2}
# what a config file holds besides settings: never part of the probe (per-layer lists follow the tiny depth)
NOT_PROBED = {"architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "auto_map",
              "quantization_config", "layer_types", "attention_types", "model_type"}
TOLERANCE = 1e-4


def packing_problem(config: dict[str, Any]) -> str | None:
    """Why packing cannot be used with a backbone of this `config.json` (one line), or None when it can.

    The probe keeps the backbone's own settings (ALiBi or not, sliding windows, ...) and shrinks only its sizes."""
    model_type = config.get("model_type")
    if not model_type:
        return "data.packing cannot be checked: the backbone's config.json names no model_type"
    settings = {k: v for k, v in config.items() if k not in TINY and k not in NOT_PROBED}
    verdict = _probe(str(model_type), json.dumps(settings, sort_keys=True, default=str))
    if verdict is None:
        return None
    return (f"data.packing needs a backbone that keeps packed examples apart, but model type '{model_type}' "
            f"{verdict}")


@functools.cache
def _probe(model_type: str, settings: str) -> str | None:
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if model_type not in CONFIG_MAPPING:
        return "is not built into Transformers"
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # configs log each tiny size they derive themselves instead
    try:
        config = _tiny_config(CONFIG_MAPPING[model_type], json.loads(settings))
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        gap = _packed_gap(model)
    except Exception as err:  # noqa: BLE001 - any failure means packing is unproven for this architecture
        return f"could not be tested with packed inputs ({type(err).__name__}: {str(err).splitlines()[0][:80]})"
    finally:
        hf_logging.set_verbosity(level)
    return None if gap <= TOLERANCE else f"lets packed examples attend to each other (logits differ by {gap:.2g})"


def _tiny_config(kind: Any, settings: dict[str, Any]) -> Any:
    """A config of `kind` with the backbone's settings and the tiny sizes (a derived size, as Falcon's head_dim,
    is left to the config); the type's defaults when the backbone's settings do not build."""
    derived = {k for k in TINY if isinstance(getattr(kind, k, None), property) and getattr(kind, k).fset is None}
    tiny = {k: v for k, v in TINY.items() if k not in derived}
    for given in (settings, {}):
        try:
            return kind(**{**given, **tiny})
        except Exception:  # noqa: BLE001, S112 - settings that need the real sizes: try the next way
            continue
    config = kind()
    for key, value in tiny.items():
        try:
            setattr(config, key, value)
        except (AttributeError, TypeError, ValueError):
            continue
    return config


def _packed_gap(model: Any) -> float:
    """Largest logit difference between three examples packed in two rows and each run alone."""
    import torch

    from lit_ft.packing.bins import packed_inputs, stack_bins

    examples = [list(range(3, 8)), list(range(10, 17)), list(range(20, 24))]
    rows = [{"input_ids": ids, "labels": ids} for ids in examples]
    batch = stack_bins(rows, capacity=12, pad_id=0)  # [5 + 7 tokens], [4 tokens + 8 of padding]
    inputs, gap = batch["inputs"], 0.0
    spans = [(r, start, end) for r, row in enumerate(batch["spans"]) for start, end in row]
    with torch.no_grad():
        alone = [model(input_ids=inputs["input_ids"][r, start:end][None], use_cache=False).logits[0]
                 for r, start, end in spans]
        # Transformers' mask (the layout on a GPU), then the layout on this CPU (per-example attention for sdpa)
        for layout in (inputs, packed_inputs(model, batch)):
            packed = model(**{k: v for k, v in layout.items() if k != "labels"}).logits
            for (r, start, end), own in zip(spans, alone, strict=True):
                gap = max(gap, float((packed[r, start:end] - own).abs().max()))
    return gap
