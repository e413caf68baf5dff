"""Per-step training traces for the `*_vs_hf.py` benches: the same record from lit_ft and from the HF Trainer.

Each optimizer step records the learning rate it was taken with and the total gradient norm before clipping, so two
runs can be compared step by step (schedules, how often and how hard clipping bites, the number of optimizer steps).

    lit_ft:      --trainer.callbacks+=step_trace.LitTrace --trainer.callbacks.init_args.path FILE
                 (or `lit_trace_args(FILE)`)
    HF Trainer:  Trainer(..., callbacks=[HFTrace(FILE)], args=TrainingArguments(..., logging_steps=1))
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback
from transformers import TrainerCallback


def lit_trace_args(path: Path | str) -> list[str]:
    """lit_ft CLI arguments that add a `LitTrace` writing to `path` (the bench folder must be on sys.path)."""
    return ["--trainer.callbacks+=step_trace.LitTrace", "--trainer.callbacks.init_args.path", str(path)]


def write(path: Path | str, record: dict[str, list[float]]) -> None:
    Path(path).write_text(json.dumps(record))


class LitTrace(Callback):
    """Lightning callback: learning rate and pre-clip gradient norm of every optimizer step, written at train end.

    Args:
        path: JSON file to write (`{"lr": [...], "grad_norm": [...]}`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.record: dict[str, list[float]] = {"lr": [], "grad_norm": []}

    def on_before_optimizer_step(self, trainer: Any, module: Any, optimizer: Any) -> None:
        import torch

        # Lightning calls this hook after backward and before `configure_gradient_clipping`: the norm is pre-clip
        grads = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
        self.record["grad_norm"].append(float(torch.linalg.vector_norm(torch.stack(grads))))
        self.record["lr"].append(float(optimizer.param_groups[0]["lr"]))

    def on_train_end(self, trainer: Any, module: Any) -> None:
        write(self.path, self.record)


class HFTrace(TrainerCallback):
    """HF Trainer callback: the same record, from the logs of every step (`logging_steps=1`).

    The Trainer logs the pre-clip `grad_norm` and the `learning_rate` the step was taken with (read before the
    scheduler steps).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.record: dict[str, list[float]] = {"lr": [], "grad_norm": []}

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if logs and "grad_norm" in logs:
            self.record["grad_norm"].append(float(logs["grad_norm"]))
            self.record["lr"].append(float(logs["learning_rate"]))

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        write(self.path, self.record)


def summary(path: Path | str, clip: float | None) -> dict[str, Any]:
    """Steps, the gradient-norm distribution, how many steps a clip at `clip` rescaled, and the lr at fixed points."""
    record = json.loads(Path(path).read_text())
    norms, lrs = record["grad_norm"], record["lr"]
    n = len(norms)
    out: dict[str, Any] = {"steps": n}
    if n:
        out.update(grad_norm_median=statistics.median(norms), grad_norm_max=max(norms),
                   grad_norm_last_quarter=statistics.median(norms[3 * n // 4:]) if n >= 4 else norms[-1],
                   clipped_steps=sum(g > clip for g in norms) if clip else 0,
                   lr_at={f"{q}%": lrs[min(n - 1, q * n // 100)] for q in (0, 5, 10, 25, 50, 75, 99)},
                   lr_sum=sum(lrs))
    return out
