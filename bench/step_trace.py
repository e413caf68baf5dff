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


def adam_step_scale(norms: list[float], clip: float | None, beta2: float = 0.999) -> list[float]:
    """Per step, the gradient norm Adam steps with (after clipping) over the root of Adam's running mean of its
    square (bias-corrected, `beta2`): how much larger than the learning rate Adam's steps are, as a whole.

    A one-number model of Adam's per-coordinate normalisation, to compare runs: when gradients grow during training
    the running mean lags behind and steps come out larger than the lr (above 1); clipping every step to the same
    norm keeps them near 1; a burst of large early gradients inflates the mean and shrinks later steps (below 1).
    """
    out, mean_square = [], 0.0
    for t, norm in enumerate(norms, 1):
        g = min(norm, clip) if clip else norm
        mean_square = beta2 * mean_square + (1 - beta2) * g * g
        out.append(g / (mean_square / (1 - beta2**t)) ** 0.5 if mean_square > 0 else 0.0)
    return out


def quarters(values: list[float]) -> list[float]:
    n = len(values)
    return [statistics.mean(values[q * n // 4 : max(q * n // 4 + 1, (q + 1) * n // 4)]) for q in range(4)]


def summary(path: Path | str, clip: float | None) -> dict[str, Any]:
    """Steps, the gradient-norm distribution, how many steps a clip at `clip` rescaled, the lr at fixed points, and
    Adam's step scale per quarter of training (`adam_step_scale`) with the lr sum it makes effective."""
    record = json.loads(Path(path).read_text())
    norms, lrs = record["grad_norm"], record["lr"]
    n = len(norms)
    out: dict[str, Any] = {"steps": n}
    if n:
        scale = adam_step_scale(norms, clip)
        out.update(grad_norm_quarters=[round(v, 3) for v in quarters(norms)],
                   adam_step_scale_quarters=[round(v, 3) for v in quarters(scale)],
                   effective_lr_ratio=sum(s * lr for s, lr in zip(scale, lrs, strict=True)) / max(sum(lrs), 1e-30))
        out.update(grad_norm_median=statistics.median(norms), grad_norm_max=max(norms),
                   grad_norm_last_quarter=statistics.median(norms[3 * n // 4:]) if n >= 4 else norms[-1],
                   clipped_steps=sum(g > clip for g in norms) if clip else 0,
                   lr_at={f"{q}%": lrs[min(n - 1, q * n // 100)] for q in (0, 5, 10, 25, 50, 75, 99)},
                   lr_sum=sum(lrs))
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3 or len(sys.argv) % 2 == 0:
        sys.exit("usage: python bench/step_trace.py TRACE.json CLIP [TRACE.json CLIP ...]   (CLIP 0: none)")
    for file, clip in zip(sys.argv[1::2], sys.argv[2::2], strict=True):
        print(file, json.dumps(summary(file, float(clip) or None)))
