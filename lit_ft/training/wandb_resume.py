"""A resumed fit continues its W&B run without logging any step twice.

`fit --ckpt_path last` replays the optimizer steps between the checkpoint and the interruption, and since the
replay is exact it logs the same values again. The W&B run (same id, see `lit_ft.training.resume`) may already hold
those rows: an interrupted run that shut down cleanly (Ctrl-C, a scheduler's SIGTERM) or was streaming online
logged them before it stopped. So the replayed rows W&B already holds are dropped, key by key:

- offline, the run's earlier files under `<save_dir>/wandb/offline-run-*-<id>/` say exactly which
  (`trainer/global_step`, key) pairs are held (after `kill -9` W&B keeps only what it had flushed, which may end
  before the checkpoint: then nothing is dropped, and those steps stay missing from W&B, not repeated);
- online, the resumed run's summary holds the last logged `trainer/global_step` and each key's last value:
  rows before that step are dropped, and at that step the keys whose held value is the replayed one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

from lit_ft.wandb_file import history

STEP_KEY = "trainer/global_step"
Held = Callable[[int, str, Any], bool]  # (step, key, value) -> W&B holds it already


def skip_replayed_rows(trainer: Trainer) -> None:
    """Make each W&B logger of a resumed fit drop the rows its run already holds (rank 0 only logs)."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            held = _held_rows(logger)
            if held is not None:
                _filter_logging(logger, held)


def _held_rows(logger: WandbLogger) -> Held | None:
    run = logger.experiment
    if getattr(run, "offline", False):
        return _held_offline(Path(run.dir).parent, str(run.id))
    summary = dict(run.summary.items()) if getattr(run, "summary", None) is not None else {}
    last = summary.get(STEP_KEY)
    if not isinstance(last, (int, float)):
        return None
    return lambda step, key, value: step < last or (step == last and key in summary and _same(summary[key], value))


def _held_offline(current: Path, run_id: str) -> Held | None:
    """The (step, key) pairs the earlier offline files of this run hold."""
    pairs: set[tuple[int, str]] = set()
    for earlier in sorted(current.parent.glob(f"offline-run-*-{run_id}")):
        if earlier.resolve() == current.resolve():
            continue
        for path in earlier.glob(f"run-{run_id}.wandb"):
            for row in _rows(path):
                step = row.get(STEP_KEY)
                if isinstance(step, (int, float)):
                    pairs.update((int(step), key) for key in row if not key.startswith("_") and key != STEP_KEY)
    if not pairs:
        return None
    return lambda step, key, value: (step, key) in pairs


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        return history(path)
    except (OSError, ValueError):  # not a run file (a foreign file, or one cut short before its header)
        return []


def _same(held: Any, value: Any) -> bool:
    try:
        a, b = float(held), float(value)
    except (TypeError, ValueError):
        return bool(held == value)
    return a == b or (math.isnan(a) and math.isnan(b))


def _filter_logging(logger: WandbLogger, held: Held) -> None:
    log_metrics = logger.log_metrics

    def filtered(metrics: Mapping[str, Any], step: int | None = None) -> None:
        if step is None:
            log_metrics(metrics, step)
            return
        kept = {k: v for k, v in metrics.items() if not held(step, k, _value(v))}
        if any(k != "epoch" for k in kept):
            log_metrics(kept if len(kept) < len(metrics) else metrics, step)

    logger.log_metrics = filtered  # type: ignore[method-assign]  # this logger object, for this resumed fit


def _value(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1 else value
