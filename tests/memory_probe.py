"""Peak resident memory of real training steps: `python memory_probe.py '[{json case}, ...]'`.

Prints one JSON line per case: the measured peak growth (bytes) over the memory held before the model existed,
and `lit_ft estimate`'s figure for the same model, precision and batch. Each case runs in a process forked after
the imports and a warm-up step of tiny models (so kernels' code pages are already resident); the peak is the
kernel's high-water mark (VmHWM) of that process, reset just before the model is built (`/proc/self/clear_refs`).
A case's `repeats` (default 1) measures it that many times, in as many processes, and reports the largest.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

DTYPES = {"32-true": torch.float32, "bf16-true": torch.bfloat16}


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def build(case: dict[str, Any]) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

    shape = dict(hidden_size=case["hidden"], num_hidden_layers=case["layers"], intermediate_size=case["intermediate"],
                 num_attention_heads=case["heads"], vocab_size=case["vocab"])
    if case["family"] == "bert":
        model: Any = BertForSequenceClassification(BertConfig(**shape, num_labels=2))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape, num_key_value_heads=case["heads"]))
    model = model.to(DTYPES[case["precision"]])
    if case.get("checkpointing"):
        from lit_ft.module import enable_checkpointing

        enable_checkpointing(model)
    if case.get("lora"):
        from lit_ft.lora import LoraSettings, apply_lora

        model = apply_lora(model, LoraSettings(r=8), None)
    return model.train()


def batch(case: dict[str, Any]) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, case["vocab"], (case["batch"], case["seq"]), generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(case["batch"], dtype=torch.long) if case["family"] == "bert" else ids
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def steps(case: dict[str, Any], model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """Seconds per training step (forward, backward, AdamW step, gradients freed as Lightning does); a compiled
    case (`"compile": true`) runs one untimed step first, which compiles."""
    from lit_ft.optim import AdamW

    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    forward: Any = model
    if case.get("compile"):  # as `model.compile` does: the parameters stay the model's; the first step compiles
        forward = torch.compile(model)
        step(forward, optimizer, inputs)
    start = time.perf_counter()
    for _ in range(case.get("steps", 2)):
        step(forward, optimizer, inputs)
    return (time.perf_counter() - start) / case.get("steps", 2)


def step(model: Any, optimizer: torch.optim.Optimizer, inputs: dict[str, torch.Tensor]) -> None:
    model(**inputs).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def warm_up(case: dict[str, Any]) -> None:
    """A training step of a tiny model of the same kind: the kernels' code pages become resident (a forked
    process maps the parent's file pages lazily, so each case warms up in its own process)."""
    tiny = {**case, "hidden": 32, "layers": 1, "intermediate": 64, "heads": 2, "vocab": 64, "batch": 2, "seq": 8}
    steps(tiny, build(tiny), batch(tiny))


def measure(case: dict[str, Any]) -> dict[str, Any]:
    from lit_ft.commands.model_memory import estimate_model

    warm_up(case)
    torch.manual_seed(0)
    inputs = batch(case)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    model = build(case)
    seconds = steps(case, model, inputs)
    measured = (status_kib("VmHWM") - before) * 1024
    found = estimate_model(model, precision=case["precision"], batch_size=case["batch"], max_length=case["seq"],
                           checkpointing=bool(case.get("checkpointing")))
    return {"measured": measured, "estimated": found.total, "activations": found.activations,
            "step_seconds": seconds}


def forked(case: dict[str, Any]) -> dict[str, Any]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            with os.fdopen(write, "w") as out:
                out.write(json.dumps(measure(case)))
        finally:
            os._exit(0)  # never back into the parent's code
    os.close(write)
    with os.fdopen(read) as got:
        text = got.read()
    os.waitpid(pid, 0)
    return dict(json.loads(text))


def main(cases: list[dict[str, Any]]) -> None:
    torch.set_num_threads(1)  # no thread pool started before fork
    import peft  # noqa: F401  (imported once, before the forks)
    import transformers  # noqa: F401

    import lit_ft.commands.estimate  # noqa: F401
    for case in cases:
        # `repeats`: the largest of several measures. A kernel that pages out cold file pages (DAMON's `pageout`)
        # can drop some of them during a step, and then the high-water mark reads low; it never reads high.
        runs = [forked(case) for _ in range(int(case.get("repeats", 1)))]
        print(json.dumps(max(runs, key=lambda got: got["measured"])), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
