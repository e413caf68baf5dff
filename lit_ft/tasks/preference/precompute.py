"""`precompute_ref_log_probs`: the reference's log-probabilities of every train and validation pair, computed once
before training and kept with the tokenized features (`PreferenceData.with_reference`), so training holds no
reference model and runs no reference forward pass.

They are stored in datasets' cache under a key of the features and the reference model (`reference_key`): a later
run on the same data and backbone, or a resumed one, loads them instead of computing them again
(`PreferenceData.load_reference`); another backbone, its changed weights, or another dtype never reuses them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lit_ft.loading import LoadOptions
from lit_ft.task import Batch
from lit_ft.tasks.preference.losses import PairLogps
from lit_ft.tasks.preference.reference import REFERENCE_COLUMNS

SPLITS = ("train", "validation")
ReferenceLogps = Callable[[Batch], PairLogps]


def reference_key(backbone: str, load: LoadOptions) -> str:
    """What identifies the reference model's log-probabilities: the backbone, its weight files' sizes and times
    where it is a directory, and the dtype and attention kernels it runs with."""
    files = ""
    if os.path.isdir(backbone):
        found = sorted(p for p in Path(backbone).iterdir() if p.suffix in (".safetensors", ".bin"))
        files = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in found)
    return f"{os.path.abspath(backbone) if os.path.isdir(backbone) else backbone}|{files}|{load.dtype}|" \
           f"{load.attn_implementation}"


def precompute(datamodule: Any, logps: ReferenceLogps, device: torch.device, key: str) -> None:
    """Attach the reference log-probs to the train and validation features (loaded from the cache when there)."""
    for split in SPLITS:
        features = datamodule.features(split)
        if features is None or not len(features) or datamodule.load_reference(split, key):
            continue
        chosen, rejected = [0.0] * len(features), [0.0] * len(features)
        step = datamodule.eval_batch_size
        order = by_length(features)  # batches of similar lengths: little padding, and the LM head starts late
        for start in range(0, len(order), step):
            rows = order[start:start + step]
            found = logps(_on(datamodule.collate([features[i] for i in rows]), device))
            for i, c, r in zip(rows, found.chosen.float().tolist(), found.rejected.float().tolist(), strict=True):
                chosen[i], rejected[i] = c, r
        datamodule.with_reference(split, chosen, rejected, model_key=key)


def by_length(features: Any) -> list[int]:
    """Feature indices from the shortest pair to the longest (prompt + the longer completion)."""
    prompts, chosen, rejected = (features[c] for c in ("prompt_ids", "chosen_ids", "rejected_ids"))
    lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected, strict=True)]
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def _on(batch: Batch, device: torch.device) -> Batch:
    kept = {k: v for k, v in batch.items() if k not in REFERENCE_COLUMNS}  # computed afresh, never read back
    return {**kept, "inputs": {k: v.to(device) for k, v in batch["inputs"].items()},
            "completion_mask": batch["completion_mask"].to(device)}
