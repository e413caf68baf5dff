"""`bench/gpu_check.sh --dry-run`: every GPU check's command parses with lit_ft's recipe parser and its model builds
on the meta device, on this CPU, one JSON line per check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gpu_checks import CHECKS, LLAMA_1B  # noqa: E402


def test_dry_run_parses_every_check_and_builds_each_model_on_meta() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in lines] == [c.name for c in CHECKS], done.stderr[-2000:]
    assert all(r["ok"] and r["dry_run"] for r in lines), [r for r in lines if not r["ok"]]
    assert done.returncode == 0
    by_name = {r["name"]: r for r in lines}
    hidden, layers, inner = LLAMA_1B["hidden_size"], LLAMA_1B["num_hidden_layers"], LLAMA_1B["intermediate_size"]
    per_layer = 4 * hidden * hidden + 3 * hidden * inner + 2 * hidden  # attention, gated MLP, two RMSNorm weights
    llm = by_name["sft_bf16_mixed"]["parameters"]
    vocab = (llm - layers * per_layer - hidden) // (2 * hidden)  # untied input and output embeddings
    assert llm == layers * per_layer + hidden + 2 * vocab * hidden and 0.95e9 < llm < 1.1e9
    assert by_name["sft_qlora"]["trainable"] < llm / 50  # LoRA adapters only
    assert by_name["sft_qlora"]["estimate_gib"] < 0.6 * by_name["sft_bf16_mixed"]["estimate_gib"]  # 4-bit base
    assert by_name["sft_checkpointing"]["estimate_gib"] < by_name["sft_bf16_mixed"]["estimate_gib"]
    assert by_name["clipping"]["commands_parsed"] == 7
    assert 22_000_000 < by_name["cls_16_mixed"]["parameters"] < 23_000_000  # the packaged MiniLM with its head
    dpo = by_name["dpo_lora_bf16"]  # LoRA: the reference is the base itself, no frozen copy counted
    assert dpo["trainable"] < llm / 50 and dpo["estimate_gib"] < by_name["sft_bf16_mixed"]["estimate_gib"]
