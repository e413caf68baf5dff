"""Checkpoints written as a directory of shards, read back as one checkpoint (for `lit_ft export` and ExportBest).

- FSDP with `state_dict_type: sharded`: a directory of `torch.distributed.checkpoint` files, one per rank, and
  Lightning's `meta.pt` (hyperparameters, loop state). Gathered here on the CPU without any process group
  (`torch.distributed.checkpoint.format_utils.dcp_to_torch_save`), what Lightning's
  `python -m lightning.pytorch.utilities.consolidate_checkpoint DIR` does.
- DeepSpeed: a directory with `latest` and `checkpoint/` (ZeRO partitions). Gathered with Lightning's
  `convert_zero_checkpoint_to_fp32_state_dict`, which needs the deepspeed package; without it the error gives the
  exact command to run where deepspeed is installed.

The gathered checkpoint must fit in CPU memory (weights in fp32, plus optimizer state where it was saved).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from lit_ft.errors import UserError
from lit_ft.training.safe_load import load_checkpoint_file

# Lightning's private `lightning.fabric.strategies.fsdp._METADATA_FILENAME`, copied so that reading a checkpoint
# imports no Lightning; listed in lit_ft.adapters.lightning.ACCESSES, whose test checks the value
FSDP_METADATA = "meta.pt"


def is_fsdp_sharded(path: Path) -> bool:
    return path.is_dir() and (path / FSDP_METADATA).is_file()


def is_deepspeed(path: Path) -> bool:
    return path.is_dir() and (path / "latest").is_file() and (path / "checkpoint").is_dir()


def is_checkpoint_dir(path: Path) -> bool:
    """A checkpoint saved as a directory of shards (FSDP sharded or DeepSpeed), not a run directory."""
    return is_fsdp_sharded(path) or is_deepspeed(path)


def metadata_file(path: Path) -> Path:
    """The file holding a checkpoint's hyperparameters and loop state: the checkpoint itself, FSDP's `meta.pt`, or
    DeepSpeed's rank-0 model-states file (Lightning passes its state as DeepSpeed's client state)."""
    if is_fsdp_sharded(path):
        return path / FSDP_METADATA
    if is_deepspeed(path):
        found = sorted((path / "checkpoint").glob("*mp_rank_00_model_states.pt"))
        return found[0] if found else path / "checkpoint" / "mp_rank_00_model_states.pt"
    return path


def load_any_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file, or a sharded checkpoint directory gathered into the same dictionary."""
    path = Path(path)
    if is_fsdp_sharded(path):
        return gather_fsdp(path)
    if is_deepspeed(path):
        return gather_deepspeed(path)
    return load_checkpoint_file(path)


def gather_fsdp(path: Path) -> dict[str, Any]:
    """Lightning's FSDP sharded checkpoint (`{"model": ..., "optimizer_0": ...}` shards + `meta.pt`) as one dict."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    checkpoint = load_checkpoint_file(path / FSDP_METADATA, require_weights=False)
    with tempfile.TemporaryDirectory(prefix=".lit_ft-gather-", dir=path.parent) as tmp:
        gathered = Path(tmp) / "gathered.pt"
        try:
            dcp_to_torch_save(path, gathered)
        except Exception as err:
            raise UserError(f"sharded checkpoint {path}: its shards could not be read ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200]}); were all ranks' files copied?") from err
        shards = load_checkpoint_file(gathered, label="gathered shards of", require_weights=False)
    if "model" not in shards:
        raise UserError(f"sharded checkpoint {path} holds no model weights (no 'model' entry in its shards); give a "
                        "checkpoint written by `lit_ft fit` with FSDP")
    checkpoint["state_dict"] = shards.pop("model")
    optimizers = sorted(k for k in shards if k.startswith("optimizer_"))
    if optimizers:
        checkpoint["optimizer_states"] = [shards[k] for k in optimizers]
    return checkpoint


def deepspeed_command(path: Path) -> str:
    out = path.with_name(f"{path.name}.consolidated")
    return ("python -c \"from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict"
            f" as c; c('{path}', '{out}')\"")


def gather_deepspeed(path: Path) -> dict[str, Any]:
    """A DeepSpeed checkpoint directory as one checkpoint, through Lightning's ZeRO-to-fp32 conversion."""
    try:
        import deepspeed  # noqa: F401
    except ImportError as err:
        raise UserError(
            f"{path} is a DeepSpeed checkpoint (ZeRO shards); gathering it needs the deepspeed package: "
            f"pip install deepspeed, or gather it where deepspeed is installed with {deepspeed_command(path)} and "
            f"give {path.name}.consolidated to lit_ft export") from err
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    with tempfile.TemporaryDirectory(prefix=".lit_ft-gather-", dir=path.parent) as tmp:
        return dict(convert_zero_checkpoint_to_fp32_state_dict(str(path), str(Path(tmp) / "gathered.ckpt")))
