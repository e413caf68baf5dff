"""What a checkpoint needs besides Lightning's own state for `fit --ckpt_path last` to continue exactly.

- RNG states (python, numpy, torch, CUDA) of every rank, restored when training restarts;
- how many rows each CSV logger had written, so the resumed run continues the same file without the rows
  logged after the checkpoint (they are logged again, with the same values);
- the logger versions (CSV/TensorBoard version, W&B run id), recorded in `best.json` so the CLI continues them.

The sampler's position is saved by the training DataLoader itself (`lit_ft.sampler.ResumableLoader`).
"""

from __future__ import annotations

import csv
import io
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_ft.adapters.lightning import restore_pending_loader_state
from lit_ft.io import atomic_file

_CSV_STASH: dict[str, str] = {}  # metrics.csv text of the CSV loggers being resumed, by absolute path


def rng_states(trainer: Trainer) -> list[dict[str, Any]]:
    """The RNG states of every rank (gathered to all ranks; rank 0 writes them). Tensors only: weights_only loads."""
    mine = _rng_state()
    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        gathered: list[dict[str, Any] | None] = [None] * trainer.world_size
        dist.all_gather_object(gathered, mine)
        return [g for g in gathered if g is not None]
    return [mine]


def restore_rng(states: list[dict[str, Any]], rank: int) -> None:
    """Set this rank's RNG states from a checkpoint (a run with another world size reuses rank 0's)."""
    if not states:
        return
    state = states[rank] if rank < len(states) else states[0]
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), None if gauss is None else float(gauss)))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32), int(np_state["pos"]),
                         int(np_state["has_gauss"]), float(np_state["cached_gaussian"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    _, key, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": pos, "has_gauss": has_gauss,
                  "cached_gaussian": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def reposition_train_loader(trainer: Trainer) -> None:
    """Give the training loader its saved position, and restart its iterator from there.

    Lightning loads stateful loaders' states only when it creates the loader during `fit`; lit_ft's
    `configure_optimizers` reads `estimated_stepping_batches`, which creates it earlier (before the loop state is
    restored), so the saved state is still pending here, at the start of training.
    """
    restore_pending_loader_state(trainer)


def logger_versions(trainer: Trainer) -> list[dict[str, Any]]:
    """Each logger's class and version (W&B: the run id), in `trainer.loggers` order."""
    return [{"class": type(logger).__name__, "version": logger.version} for logger in trainer.loggers]


def flush_and_count_rows(trainer: Trainer) -> dict[str, int]:
    """Write buffered CSV metrics to disk and return the row count of each CSV logger's file (by log dir)."""
    counts = {}
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger) and trainer.is_global_zero:
            logger.save()
            path = Path(logger.experiment.metrics_file_path)
            counts[Path(logger.log_dir).name] = _count_rows(path) if path.is_file() else 0
    return counts


def truncate_csv_logs(trainer: Trainer, counts: dict[str, int]) -> None:
    """Drop the rows logged after the checkpoint, and continue the same file (same header) from there."""
    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger) or not trainer.is_global_zero:
            continue
        keep = counts.get(Path(logger.log_dir).name)
        path = Path(logger.experiment.metrics_file_path)
        # Lightning's CSV writer deletes an existing metrics.csv when it starts: the CLI kept a copy
        text = _CSV_STASH.pop(str(path.absolute()), None)
        if keep is None or text is None:
            continue
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = list(reader.fieldnames or [])
        rows = [row for _, row in zip(range(keep), reader, strict=False)]
        with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        logger.experiment.metrics_keys = header  # new columns extend this header instead of replacing it


def resume_logger_runs(logger_configs: list[Any], pointer: dict[str, Any]) -> None:
    """Continue the logger runs recorded with the checkpoint being resumed (W&B run id, CSV/TensorBoard version)
    unless the config names them; loggers are matched by class, in order. Keeps a copy of each CSV file."""
    recorded = list(pointer.get("logger_versions") or [])
    if not recorded and pointer.get("wandb_run_id"):
        recorded = [{"class": "WandbLogger", "version": pointer["wandb_run_id"]}]
    for cfg in logger_configs:
        name = str(cfg.class_path).rpartition(".")[2]
        match = next((r for r in recorded if r.get("class") == name), None)
        if match is None or match.get("version") is None:
            continue
        recorded.remove(match)
        version, init_args = match["version"], cfg.init_args
        if name == "WandbLogger":
            if not init_args.get("id"):
                init_args["id"] = version
                init_args["resume"] = "allow"
                print(f"lit_ft: resuming W&B run {version} with the checkpoint", file=sys.stderr)
            continue
        if "version" in init_args and init_args.get("version") is None:
            init_args["version"] = version
        if name == "CSVLogger":
            _stash_csv(init_args)


def _stash_csv(init_args: Any) -> None:
    version = init_args.get("version")
    folder = version if isinstance(version, str) else f"version_{version}"
    path = Path(init_args.get("save_dir") or ".", init_args.get("name") or "", folder, "metrics.csv")
    if path.is_file():
        _CSV_STASH[str(path.absolute())] = path.read_text()


def _count_rows(path: Path) -> int:
    with open(path, newline="") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)
