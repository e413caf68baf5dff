"""2-process DDP on the CPU gives the same validation metrics as 1 process at the same global batch."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tiny_args


def _fit(root: Path, tiny_bert: Path, files: dict[str, str], devices: int, batch: int) -> list[dict[str, str]]:
    args = tiny_args(root, tiny_bert, files, logger="lightning.pytorch.loggers.CSVLogger")
    cmd = [sys.executable, "-m", "lit_ft", "fit", "--config", "configs/quickstart.yaml", *args,
           "--trainer.logger.save_dir", str(root), "--trainer.devices", str(devices),
           "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.max_epochs", "2",
           "--data.init_args.batch_size", str(batch), "--data.init_args.eval_batch_size", "5",
           "--model.learning_rate", "2e-3", "--export.enabled", "false"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(next(root.glob("lightning_logs/version_*/metrics.csv"))) as f:
        return [row for row in csv.DictReader(f) if row.get("val/accuracy")]


def test_two_process_ddp_matches_one_process(tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    single = _fit(tmp_path / "one", tiny_bert, sentiment_files, devices=1, batch=8)
    double = _fit(tmp_path / "two", tiny_bert, sentiment_files, devices=2, batch=4)
    assert len(single) == len(double) == 2
    for a, b in zip(single, double, strict=True):
        assert a["step"] == b["step"]  # same number of optimizer steps
        for key in ("val/accuracy", "val/f1", "val/loss"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4), key
