"""The quickstart fit calls nothing deprecated: run as a user runs it, with Python's DeprecationWarning and
FutureWarning turned into errors for every module (lit_ft's own calls included), it finishes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_fit_under_warnings_as_errors(tmp_path: Path, tiny_bert: Path) -> None:
    """The shipped recipe with its data, loggers (W&B offline, CSV), checkpoints and export; only the backbone is
    the tiny stand-in and the fit two steps long."""
    run = tmp_path / "run"
    command = [sys.executable, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning", "-m", "lit_ft",
               "fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--model.backbone", str(tiny_bert),
               "--trainer.max_steps", "2", "--trainer.limit_val_batches", "2", "--trainer.default_root_dir", str(run)]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for category in ("DeprecationWarning", "FutureWarning"):
        assert category not in done.stderr, done.stderr[-3000:]
    assert (run / "checkpoints" / "best.json").is_file() and (run / "export" / "config.json").is_file()
