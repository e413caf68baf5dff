"""Gradient checkpointing and `model.compile` on a small Llama-like model: peak memory and step time, in one run.

The runs (plain, gradient checkpointing, torch.compile) train the same model on the same batch
(tests/memory_probe.py: a process per run, forked after the imports and warmed up, peak resident memory from the
kernel's high-water mark); the script prints each run's measured peak, `lit_ft estimate`'s activation figure,
seconds per step, and the ratios against plain. The compiled run's first step compiles (untimed; its peak includes
the compiler's own memory, which Inductor holds in the training process).

    python bench/memory.py                    # 4 layers, hidden 256, batch 8 x 256 tokens
    python bench/memory.py --layers 8 --seq 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2


def run(cases: list[dict[str, object]]) -> list[dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "memory_probe.py"), json.dumps(cases)],
                          capture_output=True, text=True, env=env, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    case = {"family": "llama", "hidden": args.hidden, "layers": args.layers, "intermediate": args.hidden * 8 // 3,
            "heads": max(args.hidden // 64, 1), "vocab": 2000, "batch": args.batch, "seq": args.seq,
            "precision": "32-true", "steps": args.steps}
    plain, ckpt, compiled = run([case, {**case, "checkpointing": True}, {**case, "compile": True}])
    for name, got in (("plain", plain), ("checkpointing", ckpt), ("compiled", compiled)):
        print(f"{name:<14} peak {got['measured'] / MIB:8.1f} MiB (estimate {got['estimated'] / MIB:8.1f}, "
              f"activations {got['activations'] / MIB:8.1f})  {got['step_seconds']:.3f} s/step")
    print(f"ratio checkpointing / plain: peak {ckpt['measured'] / plain['measured']:.2f}x, "
          f"estimated activations {ckpt['activations'] / plain['activations']:.2f}x, "
          f"step time {ckpt['step_seconds'] / plain['step_seconds']:.2f}x")
    print(f"ratio compiled / plain: peak {compiled['measured'] / plain['measured']:.2f}x, "
          f"step time {compiled['step_seconds'] / plain['step_seconds']:.2f}x")


if __name__ == "__main__":
    main()
