#!/usr/bin/env bash
# GPU checks of lit_ft's scale features on one NVIDIA GPU (prepared for an H200: about 8 minutes in all).
#
# On the GPU machine, from the repository root (a fresh checkout; no hub access needed):
#   pip install -e '.[dev]'        # torch (CUDA build from pip), lit_ft and its test tools
#   pip install bitsandbytes deepspeed   # optional: the QLoRA and DeepSpeed checks report ok false without them
#   bash bench/gpu_check.sh        # every check; PYTHON=/path/to/python to pick the interpreter
#   bash bench/gpu_check.sh --only sft_bf16_mixed sft_compiled
# On a CPU, without training (what the test suite runs):
#   bash bench/gpu_check.sh --dry-run
#
# One JSON line per check ({"name": ..., "ok": ..., figures}), each check a real `lit_ft fit` in a fresh
# subprocess with a timeout, a failed check does not stop the others; exit status 1 if any check failed.
# The checks (bench/gpu_checks.py): SFT steps of a randomly initialised ~1B Llama in bf16-mixed and bf16-true
# (tokens/s, MFU, peak memory against `lit_ft estimate`), packing on, gradient checkpointing (memory), torch.compile,
# QLoRA (bitsandbytes), DPO with LoRA as the reference (bf16-mixed, peak memory against `lit_ft estimate`),
# 16-mixed classification (the quickstart), FSDP and DeepSpeed on one device with the export
# of their checkpoints, and bench/gpu_check.py's clipping checks. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" bench/gpu_checks.py "$@"
