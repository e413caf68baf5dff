"""A run's logged curves, read from whichever logger wrote them: Lightning's CSV log, TensorBoard event files, or a
W&B offline run file (no account, no network), plus lit_ft's own `metrics/val_*.json` for what they lack.

Only the fit's log is read: the logger version recorded in `checkpoints/best.json`, else the newest one that
holds `train/loss` (`lit_ft test` and `validate` log into versions of their own).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_ft import wandb_file

Points = list[tuple[int, float]]
SKIP = {"epoch", "step", "hp_metric", "trainer/global_step", "_step", "_runtime", "_timestamp"}


@dataclass
class History:
    """Logged scalars by key, each a list of (optimizer step, value) sorted by step; `source` says where from."""

    series: dict[str, Points] = field(default_factory=dict)
    source: str = ""

    def add(self, key: str, step: int, value: Any) -> None:
        if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return
        self.series.setdefault(key, []).append((int(step), float(value)))

    def sorted(self) -> History:
        return History({k: sorted(set(v)) for k, v in sorted(self.series.items())}, self.source)


def read_history(root: Path, versions: dict[str, Any]) -> History:
    """The fit's curves of the run in `root`; `versions` maps a logger class name to the fit's version."""
    for reader in (_csv_history, _tensorboard_history, _wandb_history):
        found = reader(root, versions)
        if found is not None and found.series:
            return _with_metric_files(found, root).sorted()
    return _with_metric_files(History(source="metrics/*.json"), root).sorted()


def _fit_log(candidates: list[Path], version: Any, holds_training: Any) -> Path | None:
    """The recorded version's log, else the newest (by version number) that holds training rows."""
    for path in candidates:
        if version is not None and path.parent.name == f"version_{version}":
            return path
    ordered = sorted(candidates, key=lambda p: _version_number(p.parent.name), reverse=True)
    return next((p for p in ordered if holds_training(p)), None)


def _version_number(name: str) -> int:
    tail = name.rpartition("_")[2]
    return int(tail) if tail.isdigit() else -1


def _csv_history(root: Path, versions: dict[str, Any]) -> History | None:
    candidates = sorted(root.glob("*/version_*/metrics.csv"))
    path = _fit_log(candidates, versions.get("CSVLogger"), lambda p: "train/loss" in p.open().readline())
    if path is None:
        return None
    found = History(source=str(path.relative_to(root)))
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if value not in ("", None):
                    found.add(key, step, float(value))
    return found


def _tensorboard_history(root: Path, versions: dict[str, Any]) -> History | None:
    files = [p for p in root.glob("**/events.out.tfevents.*") if "wandb" not in p.parts]
    if not files:
        return None
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None

    def scalars(directory: Path) -> EventAccumulator:
        return EventAccumulator(str(directory), size_guidance={"scalars": 0}).Reload()

    dirs = sorted({p.parent for p in files})
    chosen = _fit_log([d / "events" for d in dirs], versions.get("TensorBoardLogger"),
                      lambda p: "train/loss" in scalars(p.parent).Tags()["scalars"])
    if chosen is None:
        return None
    events = scalars(chosen.parent)
    found = History(source=str(chosen.parent.relative_to(root)))
    for tag in events.Tags()["scalars"]:
        for event in events.Scalars(tag):
            found.add(tag, event.step, event.value)
    return found


def _wandb_history(root: Path, versions: dict[str, Any]) -> History | None:
    files = sorted(root.glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        try:
            rows = wandb_file.history(path)
        except ValueError:  # not a W&B run file
            continue
        if not any("train/loss" in row for row in rows):
            continue
        found = History(source=str(path.relative_to(root)))
        for row in rows:
            step = row.get("trainer/global_step", row.get("_step", 0))
            for key, value in row.items():
                found.add(key, step, value)
        return found
    return None


def _with_metric_files(found: History, root: Path) -> History:
    """Validation values from `metrics/val_*.json` for keys no logger holds (a run without loggers)."""
    logged = set(found.series)
    for path in sorted((root / "metrics").glob("val_*.json")):
        record = json.loads(path.read_text())
        for key, value in record.get("metrics", {}).items():
            if key not in logged:
                found.add(key, record.get("step", 0), value)
    return found
