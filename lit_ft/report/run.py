"""What one run directory holds, as `lit_ft report` reads it: config, best checkpoint, metrics, curves,
predictions and sample tables. Nothing is loaded from the network and no model is built."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from lit_ft.errors import UserError
from lit_ft.report.history import History, read_history

PREDICTION_FILES = ("test_predictions.jsonl", "predictions.jsonl")
RUN_MARKS = ("config.yaml", "checkpoints/best.json", "metrics", "csv", "tensorboard", "wandb", "lightning_logs")


@dataclass
class BestCheckpoint:
    """From `checkpoints/best.json`: the monitored key, its direction and best score, the checkpoint's optimizer
    step, and `logged_step`: the step the logs give the validation that chose it, where the charts mark it. lit_ft
    logs every row at the optimizer steps done, so it is the checkpoint's step; logs written by Lightning's own
    numbering (older runs) have it one lower, and the last validation logged at or before the step is taken."""

    path: str
    monitor: str
    mode: str
    score: float | None
    step: int | None
    logged_step: int | None = None
    tie_break: str | None = None
    tie_value: float | None = None
    ties: int = 0

    def chosen_by(self) -> str:
        """The rule that chose it: the best monitored value, or, when several validations reached that value, the
        lowest `tie_break` among them (`lit_ft.training.checkpoint.TaskCheckpoint`)."""
        best = f"the {'lowest' if self.mode == 'min' else 'highest'} {self.monitor}"
        if self.ties > 1 and self.tie_break:
            value = "" if self.tie_value is None else f" ({self.tie_value:.4g})"
            score = "" if self.score is None else f" {self.score:.4g}"
            return f"the lowest {self.tie_break}{value} of the {self.ties} validations at {self.monitor}{score}"
        if self.tie_break:
            return f"{best} (no other validation reached it; ties go to the lowest {self.tie_break})"
        return best


class RunFiles:
    """The outputs of one run directory (`trainer.default_root_dir`), read lazily.

    Args:
        root: The run directory.
        name: How the report names the run (its directory name unless two runs share one).
    """

    def __init__(self, root: Path, name: str) -> None:
        if not root.is_dir():
            raise UserError(f"run directory '{root}' does not exist; give the trainer.default_root_dir of a fit")
        if not any((root / mark).exists() for mark in RUN_MARKS):
            raise UserError(f"'{root}' holds no lit_ft run (none of {', '.join(RUN_MARKS)}); give the "
                            "trainer.default_root_dir of a fit")
        self.root, self.name = root, name
        self._read: dict[str, list[dict[str, Any]]] = {}  # prediction files by name, each read once

    @cached_property
    def config(self) -> dict[str, Any]:
        """The fit's full config (`config.yaml`), or {} when the run has none."""
        path = self.root / "config.yaml"
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        return loaded if isinstance(loaded, dict) else {}

    @property
    def task(self) -> str | None:
        model = self.config.get("model") or {}
        return model.get("task") if isinstance(model, dict) else None

    @cached_property
    def pointer(self) -> dict[str, Any]:
        path = self.root / "checkpoints" / "best.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @cached_property
    def best(self) -> BestCheckpoint | None:
        p = self.pointer
        if not p.get("best"):
            return None
        found = re.search(r"step=(\d+)", str(p["best"]))
        step = int(found.group(1)) if found else None
        monitor, score = p.get("monitor", ""), p.get("score")
        return BestCheckpoint(str(p["best"]), monitor, p.get("mode", ""), score, step,
                              self._logged_step(monitor, score, step), p.get("tie_break"), p.get("tie_break_value"),
                              int(p.get("ties") or 0))

    def _logged_step(self, key: str, score: float | None, step: int | None) -> int | None:
        """The last validation of `key` at or before the checkpoint's step (the one with its score when the
        checkpoint's name holds no step)."""
        points = self.history.series.get(key, [])
        if step is not None:
            return max((s for s, _ in points if s <= step), default=step)
        return next((s for s, v in points if score is not None and abs(v - score) < 1e-6), None)

    @cached_property
    def history(self) -> History:
        versions = {v.get("class"): v.get("version") for v in self.pointer.get("logger_versions") or []}
        return read_history(self.root, versions)

    @cached_property
    def metric_files(self) -> dict[str, dict[str, float]]:
        """`metrics/<name>.json` by name (`val_epoch_3`, `test`): every metric of that evaluation."""
        out = {}
        for path in sorted((self.root / "metrics").glob("*.json"), key=lambda p: _natural(p.stem)):
            out[path.stem] = dict(json.loads(path.read_text()).get("metrics", {}))
        return out

    def predictions(self, *needs: str) -> tuple[str, list[dict[str, Any]]] | None:
        """The first of `test_predictions.jsonl` and `predictions.jsonl` whose records hold every key in `needs`
        (say `gold_label`): its name and records."""
        for name in PREDICTION_FILES:
            records = self._records(name)
            if records and all(all(k in r for k in needs) for r in records):
                return name, records
        return None

    def _records(self, name: str) -> list[dict[str, Any]]:
        if name not in self._read:
            path = self.root / name
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
            self._read[name] = [json.loads(line) for line in text.splitlines() if line.strip()]
        return self._read[name]

    @cached_property
    def samples(self) -> dict[str, list[tuple[int, list[dict[str, Any]]]]]:
        """`samples/<key>_step<N>.jsonl` tables by key (`val_samples`), each a list of (step, rows) by step."""
        out: dict[str, list[tuple[int, list[dict[str, Any]]]]] = {}
        for path in (self.root / "samples").glob("*_step*.jsonl"):
            key, _, step = path.stem.rpartition("_step")
            if step.isdigit():
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                out.setdefault(key, []).append((int(step), rows))
        return {k: sorted(v, key=lambda item: item[0]) for k, v in sorted(out.items())}


def _natural(name: str) -> list[Any]:
    """`val_epoch_10` after `val_epoch_9`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
