"""The GPU checks behind bench/gpu_check.sh: one JSON line per check (`name`, `ok`, figures).

Each check is a real `lit_ft fit` (or export) in a fresh subprocess with a timeout; one failing check does not stop
the others, and the whole run keeps to a time budget (`--budget`, default 460 s). The LLM checks train a randomly
initialised ~1B Llama (hidden 2048, 20 layers) built here from a config, with a byte-level BPE tokenizer trained
here on the data (LIMA from ../shared/data/lima when present, else generated rows): nothing comes from the hub.
`dpo_lora_bf16` runs configs/dpo_hh.yaml (bf16-mixed) on HH-RLHF pairs with LoRA, so the reference is the base with
its adapters disabled (no copy), its peak memory held to `lit_ft estimate`'s (which counts both sequences of a pair).

    python bench/gpu_checks.py                      # every check (a CUDA GPU)
    python bench/gpu_checks.py --only sft_bf16_mixed sft_compiled
    python bench/gpu_checks.py --dry-run            # CPU: parse every check's command, build its model on meta
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SHARED = Path(os.environ.get("LIT_FT_SHARED_DATA", REPO.parent / "shared" / "data"))
LLAMA_1B = {"hidden_size": 2048, "num_hidden_layers": 20, "intermediate_size": 5632, "num_attention_heads": 16,
            "num_key_value_heads": 16, "max_position_embeddings": 2048}
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--export.enabled", "false",
         "--trainer.callbacks+=gpu_probe.StepProbe"]
NO_SAVES = ["--trainer.limit_val_batches", "0", "--checkpoint.validate_at_end", "false", "--checkpoint.save_top_k",
            "0", "--checkpoint.save_last", "false"]


@dataclass
class Work:
    root: Path
    backbone: Path = field(init=False)
    data: Path = field(init=False)
    pairs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.backbone, self.data = self.root / "llama_1b", self.root / "sft.json"
        self.pairs = self.root / "pairs.jsonl"


@dataclass
class Check:
    name: str
    argv: Callable[[Work], list[str]]
    timeout: int = 150
    needs: str | None = None      # an optional package; without it the check reports ok false and why
    export: bool = False          # then export the run's best checkpoint and load it with transformers


def sft(name: str, *extra: str, saves: bool = False) -> Callable[[Work], list[str]]:
    def argv(work: Work) -> list[str]:
        return ["fit", "--config", "configs/sft_lima.yaml", "--model.backbone", str(work.backbone),
                "--data.init_args.source.train", str(work.data), "--data.init_args.batch_size", "4",
                "--data.init_args.max_length", "1024", "--trainer.accelerator", "cuda", "--trainer.devices", "1",
                "--trainer.max_steps", "12", "--trainer.accumulate_grad_batches", "1",
                "--trainer.default_root_dir", str(work.root / name), *QUIET,
                *(["--trainer.limit_val_batches", "1", "--model.task_options.generate_examples", "0",
                   "--checkpoint.save_last", "false"] if saves else NO_SAVES), *extra]
    return argv


def dpo_lora(work: Work) -> list[str]:
    """configs/dpo_hh.yaml (bf16-mixed) with LoRA: the reference is the base with adapters disabled, no copy."""
    return ["fit", "--config", "configs/dpo_hh.yaml", "--model.backbone", str(work.backbone),
            "--data.init_args.source.train", str(work.pairs), "--data.init_args.batch_size", "4",
            "--data.init_args.max_length", "512", "--data.init_args.max_prompt_length", "384",
            "--model.lora.r", "16", "--model.lora.alpha", "32", "--model.learning_rate", "1e-4",
            "--trainer.accelerator", "cuda", "--trainer.devices", "1", "--trainer.max_steps", "12",
            "--trainer.accumulate_grad_batches", "1", "--trainer.default_root_dir", str(work.root / "dpo_lora"),
            *QUIET, *NO_SAVES]


def quickstart_16_mixed(work: Work) -> list[str]:
    return ["fit", "--config", "configs/quickstart.yaml", "--config", "configs/precision/16-mixed.yaml",
            "--trainer.max_steps", "24", "--trainer.default_root_dir", str(work.root / "cls_16_mixed"), *QUIET,
            *NO_SAVES]


CHECKS = [
    Check("sft_bf16_mixed", sft("sft_bf16_mixed")),
    Check("sft_bf16_true", sft("sft_bf16_true", "--trainer.precision", "bf16-true")),
    Check("sft_packed", sft("sft_packed", "--data.init_args.packing", "true")),
    Check("sft_checkpointing", sft("sft_checkpointing", "--model.gradient_checkpointing", "true")),
    Check("sft_compiled", sft("sft_compiled", "--model.compile", "true", "--trainer.max_steps", "16"), timeout=300),
    Check("sft_qlora", sft("sft_qlora", "--model.lora.r", "16", "--model.lora.alpha", "32",
                           "--model.quantization.bits", "4"), needs="bitsandbytes"),
    Check("cls_16_mixed", quickstart_16_mixed, timeout=120),
    Check("dpo_lora_bf16", dpo_lora),
    Check("fsdp_one_device", sft("fsdp", "--config", "configs/strategy/fsdp.yaml", "--trainer.devices", "1",
                                 "--trainer.strategy.init_args.state_dict_type", "sharded", saves=True),
          timeout=240, export=True),
    Check("deepspeed_one_device", sft("deepspeed", "--config", "configs/strategy/deepspeed.yaml",
                                      "--trainer.devices", "1", saves=True),
          timeout=240, needs="deepspeed", export=True),
    Check("clipping", lambda work: [sys.executable, "bench/gpu_check.py"], timeout=360),
]


# ---- the model and data the LLM checks share -----------------------------------------------------------------
def sft_rows() -> list[dict[str, Any]]:
    lima = SHARED / "lima" / "lima.json"
    if lima.is_file():
        return list(json.loads(lima.read_text()))
    rng = random.Random(0)
    words = "the a model data train token layer batch answer question write code explain why how".split()
    return [{"instruction": " ".join(rng.choices(words, k=rng.randint(8, 60))), "input": "",
             "output": " ".join(rng.choices(words, k=rng.randint(40, 700))), "history": []} for _ in range(800)]


def pair_rows() -> list[dict[str, str]]:
    """HH-RLHF harmless pairs (implicit prompts) from ../shared/data when present, else generated ones; pairs whose
    chosen answer is empty are left out (PreferenceData refuses them)."""
    hh = SHARED / "hh_rlhf_harmless" / "train.jsonl"
    if hh.is_file():
        rows = [json.loads(line) for line in hh.read_text().splitlines()]
        return [r for r in rows if not r["chosen"].rstrip().endswith("Assistant:")]
    rng = random.Random(0)
    words = "the a model data train token layer batch answer question write code explain why how".split()

    def said(n: int) -> str:
        return " ".join(rng.choices(words, k=n))

    prompts = [f"\n\nHuman: {said(rng.randint(8, 200))}\n\nAssistant:" for _ in range(400)]
    return [{"chosen": f"{p} {said(rng.randint(20, 200))}", "rejected": f"{p} {said(rng.randint(20, 200))}"}
            for p in prompts]


def prepare(work: Work, weights: bool) -> None:
    """The data files, a BPE tokenizer trained on the SFT rows, the ~1B Llama config (and random weights unless
    dry)."""
    sys.path.insert(0, str(REPO / "tests"))
    from sft_fixtures import write_tokenizer
    from transformers import AutoTokenizer, LlamaConfig

    rows = sft_rows()
    work.data.write_text(json.dumps(rows))
    work.pairs.write_text("".join(json.dumps(r) + "\n" for r in pair_rows()))
    corpus = [f"{r['instruction']} {r['output']}" for r in rows[:400]]
    write_tokenizer(work.backbone, corpus=corpus, num_merges=4000)
    tok = AutoTokenizer.from_pretrained(work.backbone)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **LLAMA_1B)
    if not weights:
        config.save_pretrained(work.backbone)
        return
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("cuda"):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(work.backbone)  # fp32 weights, as a full fine-tune keeps them


# ---- running ---------------------------------------------------------------------------------------------------
def run_check(check: Check, work: Work, timeout: float, earlier: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if check.needs and importlib.util.find_spec(check.needs) is None:
        return {"ok": False, "error": f"the {check.needs} package is not installed (pip install {check.needs})"}
    argv = check.argv(work)
    cmd = argv if argv[0] == sys.executable else [sys.executable, "-m", "lit_ft", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GPU_PROBE_WARMUP": "6" if check.name == "sft_compiled" else "3"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    if check.name == "clipping":
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("PASS", "FAIL", "SKIP"))]
        return {"ok": done.returncode == 0 and bool(lines), "results": lines, **failure(done)}
    probes = [json.loads(ln[6:]) for ln in done.stdout.splitlines() if ln.startswith("PROBE ")]
    if done.returncode != 0 or not probes:
        return {"ok": False, **failure(done, always=True)}
    figures = {**probes[-1], **compared(check.name, probes[-1], earlier)}
    if check.export:
        figures.update(export_and_load(work.root / argv[argv.index("--trainer.default_root_dir") + 1], env))
    return {"ok": figures.pop("_ok", True) and figures["tokens_per_s"] > 0, **figures}


def failure(done: subprocess.CompletedProcess[str], always: bool = False) -> dict[str, Any]:
    if done.returncode == 0 and not always:
        return {}
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"exit": done.returncode, "error": " | ".join(tail)[-600:]}


def compared(name: str, got: dict[str, Any], earlier: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios against the plain bf16-mixed run; the checkpointing and DPO runs' memory against the estimate."""
    base = earlier.get("sft_bf16_mixed", {})
    out: dict[str, Any] = {}
    if base.get("tokens_per_s") and name in ("sft_packed", "sft_compiled", "sft_bf16_true", "sft_checkpointing"):
        out["tokens_per_s_vs_bf16_mixed"] = round(got["tokens_per_s"] / base["tokens_per_s"], 3)
    if base.get("max_memory_allocated_gib") and name == "sft_checkpointing":
        out["memory_vs_bf16_mixed"] = round(got["max_memory_allocated_gib"] / base["max_memory_allocated_gib"], 3)
    if got.get("estimate_gib"):
        out["measured_over_estimate"] = round(got["max_memory_allocated_gib"] / got["estimate_gib"], 3)
        if name in ("sft_checkpointing", "dpo_lora_bf16"):  # the estimate errs high by design: no large undershoot
            out["_ok"] = out["measured_over_estimate"] <= 1.25
    return out


def export_and_load(run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    out = run_dir / "hf_export"
    code = ("import sys; from lit_ft.commands.cli import main; "
            "main(['export', sys.argv[1], '--output_dir', sys.argv[2]]); "
            "from transformers import AutoModelForCausalLM; m = AutoModelForCausalLM.from_pretrained(sys.argv[2]); "
            "print('LOADED', sum(p.numel() for p in m.parameters()))")
    done = subprocess.run([sys.executable, "-c", code, str(run_dir), str(out)], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=240)
    loaded = [ln for ln in done.stdout.splitlines() if ln.startswith("LOADED ")]
    if not loaded:
        return {"_ok": False, "export": "failed", **failure(done, always=True)}
    return {"export": "loaded with transformers", "exported_parameters": int(loaded[0].split()[1])}


def run_all(checks: list[Check], budget: float) -> bool:
    import torch

    if not torch.cuda.is_available():
        for check in checks:
            emit(check.name, {"ok": False, "error": "no CUDA device here (bench/gpu_check.sh --dry-run runs on a CPU)"})
        return False
    deadline = time.monotonic() + budget
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lit_ft_gpu_checks_") as tmp:
        work = Work(Path(tmp))
        setup = subprocess.run([sys.executable, __file__, "--prepare", tmp], cwd=REPO, capture_output=True,
                               text=True, timeout=300)
        for check in checks:
            left = deadline - time.monotonic()
            start = time.monotonic()
            if setup.returncode != 0 and check.name != "clipping" and check.name != "cls_16_mixed":
                result = {"ok": False, **failure(setup, always=True), "error_in": "preparing the 1B Llama"}
            elif left < 20:
                result = {"ok": False, "error": f"not run: the {budget:.0f} s budget is spent (--only {check.name})"}
            else:
                try:
                    result = run_check(check, work, min(check.timeout, left), results)
                except subprocess.TimeoutExpired as err:
                    result = {"ok": False, "error": f"timed out after {err.timeout:.0f} s"}
            results[check.name] = {**result, "wall_s": round(time.monotonic() - start, 1)}
            emit(check.name, results[check.name])
    return all(r["ok"] for r in results.values())


def emit(name: str, result: dict[str, Any]) -> None:
    print(json.dumps({"name": name, **result}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[c.name for c in CHECKS])
    parser.add_argument("--dry-run", action="store_true", help="CPU: parse each check and build its model on meta")
    parser.add_argument("--budget", type=float, default=460, help="seconds for all checks together")
    parser.add_argument("--prepare", help=argparse.SUPPRESS)  # the subprocess that builds the 1B Llama
    args = parser.parse_args()
    if args.prepare:
        prepare(Work(Path(args.prepare)), weights=True)
        return
    checks = [c for c in CHECKS if not args.only or c.name in args.only]
    if args.dry_run:
        from gpu_dry_run import dry_run

        sys.exit(0 if dry_run(checks) else 1)
    sys.exit(0 if run_all(checks, args.budget) else 1)


if __name__ == "__main__":
    main()
