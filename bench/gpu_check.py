"""GPU check: every precision and strategy piece clips gradients with the default fused AdamW on CUDA.

Run on a machine with an NVIDIA GPU (a few minutes; the packaged MiniLM and the packaged quickstart data):

    python bench/gpu_check.py                 # every check, one fresh subprocess each; exit 1 if any fails
    python bench/gpu_check.py --only 16-mixed fsdp

Each check runs `lit_ft fit --config configs/quickstart.yaml --config <piece>` for 4 optimizer steps with
accumulation 2 and `trainer.gradient_clip_val` far below the gradient norm, and a probe callback that reads the
gradient norm after every optimizer step: it must equal the clipping norm (fp16: after unscaling). It prints one
PASS/FAIL line per check with the samples/s of the run. CPUs cannot run these pieces; tests/test_clipping.py
covers the same path on a CPU (fp16 GradScaler included) and tests/test_configs.py what each piece configures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

REPO = Path(__file__).resolve().parents[1]
CLIP = 1e-4
CHECKS: dict[str, list[str]] = {
    "32-true": ["--trainer.precision", "32-true"],
    "bf16-mixed": ["--config", "configs/precision/bf16-mixed.yaml"],
    "bf16-true": ["--config", "configs/precision/bf16-true.yaml"],
    "16-mixed": ["--config", "configs/precision/16-mixed.yaml"],
    "fsdp": ["--config", "configs/strategy/fsdp.yaml", "--trainer.devices", "1"],
    "fsdp+16-mixed": ["--config", "configs/strategy/fsdp.yaml", "--config", "configs/precision/16-mixed.yaml",
                      "--trainer.devices", "1"],
    "deepspeed": ["--config", "configs/strategy/deepspeed.yaml", "--trainer.devices", "1"],
}


class ClipProbe(Callback):
    """Gradient norm as each optimizer step used it (read after the step; gradients are zeroed at the next batch)."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.steps = 0
        self.start = 0.0

    def on_train_start(self, trainer: Any, module: Any) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
        import torch

        if trainer.global_step > self.steps:
            self.steps = trainer.global_step
            grads = [p.grad.float().norm() for p in module.parameters() if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack(grads))) if grads else float("nan"))

    def on_train_end(self, trainer: Any, module: Any) -> None:
        seconds = time.perf_counter() - self.start
        samples = self.steps * trainer.accumulate_grad_batches * 16
        print("PROBE " + json.dumps({"norms": self.norms, "samples_per_s": samples / seconds}), flush=True)


def run_check(name: str, root: Path) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "lit_ft.commands.cli", "fit", "--config", "configs/quickstart.yaml", *CHECKS[name],
           "--trainer.accelerator", "cuda", "--trainer.max_steps", "4", "--trainer.accumulate_grad_batches", "2",
           "--trainer.gradient_clip_val", str(CLIP), "--trainer.logger", "false", "--export.enabled", "false",
           "--trainer.default_root_dir", str(root / name), "--trainer.enable_progress_bar", "false",
           "--trainer.callbacks+=gpu_check.ClipProbe"]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'bench'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    probes = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    if done.returncode != 0 or not probes:
        return False, f"exit {done.returncode}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    probe = json.loads(probes[-1][len("PROBE "):])
    norms = probe["norms"]
    if name == "deepspeed":  # the engine clips internally and keeps its own (partitioned) gradient buffers
        return len(norms) == 4, f"{len(norms)} steps, {probe['samples_per_s']:.1f} samples/s (engine clips)"
    ok = len(norms) == 4 and all(abs(n - CLIP) <= 0.05 * CLIP for n in norms)
    shown = ", ".join(f"{n:.3g}" for n in norms)
    return ok, f"norms after clipping [{shown}] (want {CLIP}), {probe['samples_per_s']:.1f} samples/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), default=list(CHECKS))
    opts = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run it on a machine with an NVIDIA GPU")
    print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix="lit_ft_gpu_check_") as tmp:
        for name in opts.only:
            if name == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
                print(f"SKIP  {name:<14} the deepspeed package is not installed (pip install deepspeed)")
                continue
            ok, detail = run_check(name, Path(tmp))
            print(f"{'PASS' if ok else 'FAIL'}  {name:<14} {detail}", flush=True)
            if not ok:
                failed.append(name)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
