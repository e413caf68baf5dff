"""`lit_ft estimate`: the formulas against hand counts, the verb on real recipes (meta device, nothing loaded),
and the whole estimate against the peak resident memory of real training steps (tests/memory_probe.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from builders import make_tiny_bert

from lit_ft.commands.cli import main
from lit_ft.commands.memory import Shape, activation_bytes_per_token, estimate, sharding

ROOT = Path(__file__).resolve().parents[1]
BERT = {"family": "bert", "hidden": 128, "layers": 2, "intermediate": 512, "heads": 4, "vocab": 1000,
        "batch": 8, "seq": 128, "precision": "32-true"}
LLAMA = {"family": "llama", "hidden": 128, "layers": 2, "intermediate": 344, "heads": 4, "vocab": 2000,
         "batch": 8, "seq": 128, "precision": "32-true"}
CASES = {name: {**case, "repeats": 2} for name, case in {  # the larger of two measures (tests/memory_probe.py)
    "bert": BERT, "llama": LLAMA, "llama_checkpointing": {**LLAMA, "checkpointing": True},
    "llama_lora": {**LLAMA, "lora": True}}.items()}


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, float]]:
    """One probe process (imports once, a forked process per case, each warmed up before its high-water mark)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "memory_probe.py"), json.dumps(list(CASES.values()))],
                          capture_output=True, text=True, env=env, check=True, timeout=300)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return dict(zip(CASES, lines, strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_within_25_percent_of_measured_peak(measured: dict[str, dict[str, float]], case: str) -> None:
    got = measured[case]
    assert got["measured"] > 30e6, got  # well above the noise of the allocator
    assert 0.75 <= got["estimated"] / got["measured"] <= 1.25, got


def test_checkpointing_lowers_measured_and_estimated_memory(measured: dict[str, dict[str, float]]) -> None:
    full, ckpt = measured["llama"], measured["llama_checkpointing"]
    assert ckpt["measured"] < full["measured"] and ckpt["estimated"] < full["estimated"]


def test_formula_by_hand() -> None:
    shape = Shape(layers=2, hidden=64, intermediate=256, heads=2, vocab=100, gated=True, lm_head=True)
    layer = 4 * (10 * 64 + 4 * 256 + 2)
    assert activation_bytes_per_token(shape, 32, 4.0) == 3 * layer + 4 * 3 * 64 + 16 * 100
    assert activation_bytes_per_token(shape, 32, 4.0, checkpointing=True) == 2 * 4 * 64 + 2 * layer + 4 * 3 * 64 + 1600
    found = estimate(parameters=1000, trainable=100, shape=shape, precision="bf16-true", batch_size=2, max_length=32,
                     split=sharding("fsdp", 4))
    assert (found.weights, found.gradients, found.optimizer) == (500, 50, 100)
    assert found.tokens == 64
    assert sharding("deepspeed_stage_2", 4).weights == 1 and sharding("deepspeed_stage_2", 4).optimizer == 4
    assert sharding("ddp", 8).gradients == 1


def test_evaluation_checkpoint_and_process_by_hand() -> None:
    shape = Shape(layers=2, hidden=64, intermediate=256, heads=2, vocab=100, gated=True, lm_head=True)
    found = estimate(parameters=1000, trainable=100, shape=shape, precision="32-true", batch_size=2, max_length=32,
                     eval_batch_size=16, adapter=True)
    layer = 4 * (10 * 64 + 4 * 256 + 2)
    assert found.evaluation == (layer + 4 * 64 + 8 * 100) * 16 * 32  # one layer, the logits and log-probabilities
    assert found.evaluation > found.activations  # 8x the tokens: the evaluation batch is the device's peak
    assert found.checkpoint == 100 * 4 + 2 * 100 * 4  # an adapter model saves its trainable weights, AdamW state
    tensors = 1000 * 4 + 100 * 4 + 2 * 100 * 4 + found.evaluation
    assert found.total == found.device == tensors and found.host == found.checkpoint  # a GPU: tensors only
    on_cpu = replace(found, process=5e8, on_host=True)
    assert on_cpu.total == on_cpu.host == 5e8 + found.checkpoint + tensors


def test_estimate_verb_counts_the_recipe_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    backbone = make_tiny_bert(tmp_path / "bert")
    real = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
    expected = sum(p.numel() for p in real.parameters())
    main(["estimate", "--config", "configs/quickstart.yaml", "--model.backbone", str(backbone)])
    out = capsys.readouterr().out
    assert f"parameters: {expected:,} ({expected:,} trainable, 100.00%)" in out
    assert "activations per token" in out and "1,024 tokens" in out  # batch 16 x max_length 64
    # on the CPU the total is the process's resident memory: the process itself counts, what is not counted is said
    total = float(out.split("peak memory per device (estimate): ")[1].split()[0])
    process = float(out.split("  process ")[1].split()[0])
    assert "GiB of host memory" in out and 0.1 < process < total and "left out: the data set in memory" in out
    assert not list(tmp_path.glob("runs")) and torch.get_default_device().type == "cpu"


def test_lora_and_checkpointing_shrink_the_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backbone = str(make_tiny_bert(tmp_path / "bert"))
    runs = {}
    for name, extra in {"full": [], "lora": ["--model.lora.r", "4"],
                        "ckpt": ["--model.gradient_checkpointing", "true"]}.items():
        main(["estimate", "--config", "configs/quickstart.yaml", "--model.backbone", backbone, *extra])
        runs[name] = capsys.readouterr().out
    # what each shrinks (the total holds this pytest process's resident memory, which moves between calls)
    trainable = {n: int(o.split("(")[1].split()[0].replace(",", "")) for n, o in runs.items()}
    per_token = {n: float(o.split("activations per token: ")[1].split()[0]) for n, o in runs.items()}
    assert trainable["lora"] < trainable["full"] == trainable["ckpt"]
    assert per_token["ckpt"] < per_token["full"]


def test_checkpointing_with_lora_trains_the_adapters(tiny_bert: Path) -> None:
    import torch

    from lit_ft.lora import LoraSettings
    from lit_ft.module import FineTuner

    module = FineTuner(backbone=str(tiny_bert), lora=LoraSettings(r=4), gradient_checkpointing=True,
                       info={"problem_type": "single_label", "label_names": ["neg", "pos"]})
    model: Any = module.model
    assert model.base_model.model.is_gradient_checkpointing
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 13, 3]])
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1])).loss
    loss.backward()
    adapters = [p for n, p in model.named_parameters() if "lora_" in n]
    assert adapters and all(p.grad is not None for p in adapters)
    assert any(float(p.grad.abs().sum()) > 0 for p in adapters)
