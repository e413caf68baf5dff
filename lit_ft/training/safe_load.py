"""Loading checkpoints without running their pickle code: `weights_only=True` with lit_ft's own classes allowed."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from lit_ft.errors import UserError
from lit_ft.lora import LoraSettings

# the non-primitive classes lit_ft puts in checkpoints (hyperparameters); Lightning's own loads see them too
SAFE_GLOBALS: list[Any] = [LoraSettings]
torch.serialization.add_safe_globals(SAFE_GLOBALS)


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu", mmap: bool = False,
                         label: str = "checkpoint", require_weights: bool = True) -> dict[str, Any]:
    """Load a Lightning checkpoint safely; anything else (foreign, corrupt, malicious) is one UserError line.

    `mmap=True` maps the tensors instead of reading them (a cheap check of a file that is loaded again later);
    `label` names where the path came from in the message (`--ckpt_path`); `require_weights=False` reads a part of a
    sharded checkpoint (FSDP's `meta.pt`, the gathered shards), which has no `state_dict` of its own.
    """
    path = Path(path)
    named = f"{label} '{path}'"
    fix = "give a .ckpt written by `lit_ft fit`"
    if not path.is_file():
        raise UserError(f"{named} does not exist (absolute: {path.absolute()}); give a .ckpt file, `best` or `last`")
    if path.stat().st_size == 0:
        raise UserError(f"{named} is not a readable lit_ft checkpoint (empty file: an interrupted write?); use "
                        f"another checkpoint of the run, e.g. {path.parent / 'last.ckpt'}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:unsupported|Unsupported global:) (GLOBAL [\w.]+)", str(err))
        what = found.group(1) if found else "objects other than tensors and plain values"
        raise UserError(f"{named} holds {what}, which lit_ft never saves, so it is not loaded (checkpoints are "
                        f"loaded with weights_only=True): {fix}") from None
    except Exception as err:  # garbage bytes fail anywhere in the unpickler (EOFError, IndexError, KeyError, ...)
        raise UserError(f"{named} is not a readable lit_ft checkpoint ({type(err).__name__}: truncated or not a "
                        f"checkpoint); {fix}") from None
    if not isinstance(checkpoint, dict) or (require_weights and "state_dict" not in checkpoint):
        raise UserError(f"{named} is not a readable lit_ft checkpoint (a file without a Lightning state_dict); {fix}")
    return checkpoint
