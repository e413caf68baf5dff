"""A callback for bench/gpu_checks.py's fits: tokens/s, MFU, peak CUDA memory against `lit_ft estimate`.

Added to a fit with `--trainer.callbacks+=gpu_probe.StepProbe` (bench/ on PYTHONPATH); at the end of training it
prints one line `PROBE {json}`. The first `GPU_PROBE_WARMUP` optimizer steps (default 3; compiled runs compile
there) are left out of the rates.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch
from lightning.pytorch import Callback

# dense bf16 tensor-core peak per GPU, FLOP/s (vendor data sheets, without sparsity)
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def peak_flops(name: str) -> float | None:
    return next((flops for key, flops in PEAK_BF16.items() if key in name), None)


class StepProbe(Callback):
    """Times optimizer steps after a warm-up, counts the real (non-padding) tokens, reads the peak memory."""

    def __init__(self) -> None:
        self.warmup = int(os.environ.get("GPU_PROBE_WARMUP", "3"))
        self.tokens = 0
        self.slots = 0
        self.start = 0.0
        self.steps = 0
        self.estimate: dict[str, Any] = {}

    def on_train_start(self, trainer: Any, module: Any) -> None:
        torch.cuda.reset_peak_memory_stats()
        self.estimate = estimate_of(trainer, module)

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and not self.start:
            torch.cuda.synchronize()
            self.start = time.perf_counter()
        if self.start:
            inputs = batch.get("inputs", batch)  # lit_ft's batches hold the model's inputs under `inputs`
            ids = inputs["input_ids"]
            mask = inputs.get("attention_mask")
            self.tokens += int(mask.sum()) if mask is not None else ids.numel()
            self.slots += ids.numel()

    def on_train_end(self, trainer: Any, module: Any) -> None:
        torch.cuda.synchronize()
        seconds = time.perf_counter() - self.start if self.start else float("nan")
        steps = trainer.global_step - self.warmup
        params = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        tokens_per_s = self.tokens / seconds
        # 6 FLOPs per parameter and token for a full fine-tune (2 forward, 4 backward); frozen weights skip the
        # weight gradient (4); attention's s^2 terms are left out, so this undercounts long sequences a little
        flops_per_token = 4 * params + 2 * trainable
        peak = peak_flops(torch.cuda.get_device_name(0))
        figures = {
            "steps_timed": steps, "seconds": round(seconds, 3), "tokens_per_s": round(tokens_per_s, 1),
            "padding_share": round(1 - self.tokens / max(self.slots, 1), 4), "parameters": params,
            "trainable": trainable, "mfu": round(flops_per_token * tokens_per_s / peak, 4) if peak else None,
            "max_memory_allocated_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 3), **self.estimate,
        }
        print("PROBE " + json.dumps(figures), flush=True)


def estimate_of(trainer: Any, module: Any) -> dict[str, Any]:
    """`lit_ft estimate`'s peak for this model, precision and batch (single-device runs: sharded models have been
    wrapped by now, and their own estimate is per device of many)."""
    from lit_ft.commands.model_memory import estimate_model
    from lit_ft.lora import is_adapter_model
    from lit_ft.quantization import as_settings

    if trainer.strategy.__class__.__name__ not in ("SingleDeviceStrategy",):
        return {}
    data = trainer.datamodule
    plugin = module.plugin  # pairs put two sequences each through the model; a task may hold a frozen reference
    found = estimate_model(module.model, precision=str(trainer.precision),
                           batch_size=data.batch_size * plugin.sequences_per_example, max_length=data.max_length,
                           checkpointing=bool(module.hparams.get("gradient_checkpointing")),
                           quantization=as_settings(module.hparams.get("quantization")),
                           adapter=is_adapter_model(module.model), frozen=plugin.frozen_parameters(module.model))
    return {"estimate_gib": round(found.total / 1024**3, 3), "estimate_activations_gib":
            round(found.activations / 1024**3, 3)}
