"""DPO speed benchmark: the `dpo` task (its real CLI path, configs/dpo_hh.yaml) against TRL's DPOTrainer.

A small random-init Llama (hidden 128, 4 layers, 4 heads, intermediate 344) with a byte-level BPE tokenizer (4k
vocabulary) trained on the pairs' texts, both built here and cached. The same HH-RLHF harmless pairs on both sides
(the first --rows whose prompt + longer answer fit max_length, so neither side truncates), batch 8, max_length 256,
lr 5e-5 without warmup, linear decay, clipping at 1.0, fp32, one epoch, sigmoid loss, beta 0.1, every setting in
a fresh subprocess.

    python bench/preference_dpo.py                 # the default run (about 3 minutes here)
    python bench/preference_dpo.py --smoke         # 16 pairs, a tiny model: checks the harness end to end
    python bench/preference_vs_trl.py dpo ...      # the same, through the preference bench's dispatcher

Settings: `lit_ft` (the frozen reference copy), `lit_ft_precompute` (`precompute_ref_log_probs`), `lit_ft_lora`
(LoRA r 16: the reference is the base with adapters disabled), and TRL's DPOTrainer: `trl` (its defaults, gradient
checkpointing on), `trl_nockpt` (off: the fastest TRL goes here), `trl_precompute` (off, precomputed log-probs).
Figures: pairs/s of the whole fit (from the fit's start, so precomputing counts), by wall clock and by the process's
CPU time (steadier on a busy machine), the peak resident memory of the process and its rise over the fit's start,
the loss: `epoch` (the mean over every step: each pair seen once on both sides) and `final` (the last quarter).
Targets: lit_ft >= 1.3x the best TRL setting's pairs/s; |lit_ft's epoch loss / TRL's - 1| <= 2% (against `trl`;
the final loss is shown too, without a target: lit_ft groups batches by length, so its last steps see other pairs).
Precompute and LoRA are measured against the frozen copy, no target. Needs `trl` (`pip install 'lit_ft[bench]'`).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LIT_FT_SHARED_DATA", REPO.parent / "shared" / "data"))
HH = Path("hh_rlhf_harmless/train.jsonl")
RECIPE = REPO / "configs" / "dpo_hh.yaml"
BATCH, LR, VOCAB, MAX_LENGTH, BETA = 8, 5e-5, 4000, 256, 0.1
MODEL = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 344}
SMOKE_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
LIT_SETTINGS = {"lit_ft": [], "lit_ft_precompute": ["--model.task_options.precompute_ref_log_probs", "true"],
                "lit_ft_lora": ["--model.lora.r", "16", "--model.lora.alpha", "32"]}
TRL_SETTINGS = {"trl": {}, "trl_nockpt": {"gradient_checkpointing": False},
                "trl_precompute": {"gradient_checkpointing": False, "precompute_ref_log_probs": True}}
SETTINGS = (*LIT_SETTINGS, *TRL_SETTINGS)
SPEEDUP_VS_TRL, LOSS_TOLERANCE = 1.3, 0.02


def rss_mib() -> float:
    """The process's resident memory now (Linux /proc), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---- what both sides train on ---------------------------------------------------------------------------------------
def build_model(out: Path, rows: list[dict[str, str]], dims: dict[str, int]) -> Path:
    """A byte-level BPE tokenizer trained on the pairs and a random-init Llama (seed 0), cached in `out`."""
    if (out / "config.json").is_file():
        return out
    import torch
    from byte_bpe import train_byte_bpe
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = train_byte_bpe((r[side] for r in rows for side in ("chosen", "rejected")), VOCAB)
    config = LlamaConfig(vocab_size=len(fast), num_key_value_heads=dims["num_attention_heads"],
                         max_position_embeddings=MAX_LENGTH, tie_word_embeddings=False, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, **dims)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def pick_rows(rows: list[dict[str, str]], model: Path, count: int) -> list[dict[str, str]]:
    """The first `count` pairs both of whose texts (plus EOS) fit MAX_LENGTH tokens and whose answers differ."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    fits = [r for r in rows if r["chosen"] != r["rejected"] and r["chosen"].rstrip()[-10:] != "Assistant:"
            and max(len(tok(r[s])["input_ids"]) for s in ("chosen", "rejected")) < MAX_LENGTH]
    return fits[:count]


# ---- the settings (each in its own process) -------------------------------------------------------------------------
class Record:
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.start = self.cpu = self.wall_s = self.cpu_s = self.rss_start = 0.0

    def begin(self) -> None:
        self.start, self.cpu, self.rss_start = time.perf_counter(), time.process_time(), rss_mib()

    def end(self) -> None:
        self.wall_s, self.cpu_s = time.perf_counter() - self.start, time.process_time() - self.cpu


def run_lit_ft(opts: argparse.Namespace, record: Record, work: Path) -> None:
    """`lit_ft fit` on configs/dpo_hh.yaml with the bench's overrides; no validation, checkpoint, export or logger."""
    from lightning.pytorch import Callback

    from lit_ft.commands.cli import run

    class Measure(Callback):
        def on_fit_start(self, *args: Any) -> None:  # before the module's: precomputing counts
            record.begin()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, *args: Any) -> None:
            record.losses.append(float((outputs["loss"] if isinstance(outputs, dict) else outputs).detach()))

        def on_train_end(self, *args: Any) -> None:
            record.end()

    run(["fit", "--config", str(RECIPE), "--seed_everything", "0", "--model.backbone", opts.model,
         "--model.learning_rate", str(LR), "--model.warmup", "0", "--model.task_options.beta", str(BETA),
         "--data.init_args.source.train", str(work / "train.jsonl"),
         "--data.init_args.source.validation", str(work / "validation.jsonl"),
         "--data.init_args.batch_size", str(BATCH), "--data.init_args.max_length", str(MAX_LENGTH),
         "--data.init_args.max_prompt_length", "null", "--trainer.max_epochs", "1",
         "--trainer.precision", "32-true", "--trainer.accumulate_grad_batches", "1", "--trainer.accelerator", "cpu",
         "--trainer.gradient_clip_val", "1.0", "--trainer.limit_val_batches", "0",
         "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false", "--checkpoint.save_last", "false",
         "--checkpoint.save_top_k", "0", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--export.enabled", "false", "--summary.enabled", "false",
         "--trainer.default_root_dir", str(work / f"run_{opts.worker}"), "--overwrite", "true",
         *LIT_SETTINGS[opts.worker]], callbacks=[Measure()])


def run_trl(opts: argparse.Namespace, record: Record, work: Path) -> None:
    """TRL's DPOTrainer on the same rows (implicit prompts, which it extracts as lit_ft does), its defaults apart
    from the bench's settings."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    class Recorded(DPOTrainer):  # type: ignore[misc]
        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            loss = super().compute_loss(model, inputs, *args, **kwargs)
            if model.training:
                record.losses.append(float(loss.detach()))
            return loss

    rows = [json.loads(line) for line in (work / "train.jsonl").read_text().splitlines()]
    args = DPOConfig(output_dir=str(work / f"run_{opts.worker}"), per_device_train_batch_size=BATCH,
                     learning_rate=LR, num_train_epochs=1, max_length=MAX_LENGTH, beta=BETA, bf16=False, fp16=False,
                     use_cpu=True, seed=0, save_strategy="no", report_to=[], disable_tqdm=True, max_grad_norm=1.0,
                     dataloader_num_workers=0, **TRL_SETTINGS[opts.worker])
    model = AutoModelForCausalLM.from_pretrained(opts.model, dtype="float32")
    reference = AutoModelForCausalLM.from_pretrained(opts.model, dtype="float32")
    trainer = Recorded(model=model, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows),
                       processing_class=AutoTokenizer.from_pretrained(opts.model))
    record.begin()  # precomputing happens inside train()
    trainer.train()
    record.end()


def worker(opts: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(opts.threads)
    record, load = Record(), os.getloadavg()[0]
    (run_lit_ft if opts.worker in LIT_SETTINGS else run_trl)(opts, record, Path(opts.work))
    losses = record.losses
    last = max(1, len(losses) // 4)
    result = {"setting": opts.worker, "load1": round(load, 2), "steps": len(losses),
              "train_s": round(record.wall_s, 2), "pairs_per_s": round(opts.pairs / record.wall_s, 2),
              "cpu_s": round(record.cpu_s, 2), "pairs_per_cpu_s": round(opts.pairs / record.cpu_s, 3),
              "final_loss": round(statistics.fmean(losses[-last:]), 5),
              "epoch_loss": round(statistics.fmean(losses), 5), "peak_mib": round(peak_mib(), 1),
              "rise_mib": round(peak_mib() - record.rss_start, 1)}
    print("RESULT " + json.dumps(result), flush=True)


def spawn(opts: argparse.Namespace, setting: str, model: Path, pairs: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--model", str(model), "--work",
           opts.work, "--threads", str(opts.threads), "--pairs", str(pairs)]
    env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads), "MKL_NUM_THREADS": str(opts.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{setting} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-5000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    print(f"  {setting:<18}{result['pairs_per_s']:8.2f} pairs/s ({result['pairs_per_cpu_s']:.3f} per CPU s)  "
          f"{result['steps']:4d} steps  loss: epoch {result['epoch_loss']:.4f} final {result['final_loss']:.4f}  "
          f"peak {result['peak_mib']:7.1f} MiB (+{result['rise_mib']:.1f} in the fit)  "
          f"({result['train_s']:.1f} s, load {result['load1']})", flush=True)
    return result


# ---- summary ------------------------------------------------------------------------------------------------------
def report(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
    passed: dict[str, bool] = {}
    trl = [s for s in TRL_SETTINGS if s in results]
    for unit in ("pairs_per_s", "pairs_per_cpu_s"):  # CPU time is steadier than wall time on a busy machine
        if "lit_ft" in results and trl:
            best = max(trl, key=lambda s: results[s][unit])
            ratio = results["lit_ft"][unit] / results[best][unit]
            passed[f"speed ({unit})"] = ratio >= SPEEDUP_VS_TRL
            print(f"  lit_ft / best TRL ({best}) {unit}: {ratio:.3f}   target >= {SPEEDUP_VS_TRL}  "
                  f"{'PASS' if passed[f'speed ({unit})'] else 'FAIL'}")
    if {"lit_ft", "trl"} <= results.keys():
        for kind in ("epoch_loss", "final_loss"):
            delta = abs(results["lit_ft"][kind] / results["trl"][kind] - 1)
            verdict = f"target <= {LOSS_TOLERANCE}  {'PASS' if delta <= LOSS_TOLERANCE else 'FAIL'}" \
                if kind == "epoch_loss" else "(no target: lit_ft batches by length, its last steps see other pairs)"
            print(f"  |{kind} lit_ft / trl - 1|: {delta:.4f}   {verdict}")
            if kind == "epoch_loss":
                passed["loss"] = delta <= LOSS_TOLERANCE
    for variant in ("lit_ft_precompute", "lit_ft_lora"):
        if {variant, "lit_ft"} <= results.keys():
            a, b = results[variant], results["lit_ft"]
            print(f"  {variant} / lit_ft (frozen copy): time {a['train_s'] / b['train_s']:.3f}x, peak memory "
                  f"{a['peak_mib'] / b['peak_mib']:.3f}x, rise in the fit {a['rise_mib']:.1f} vs "
                  f"{b['rise_mib']:.1f} MiB")
    busy = max(r["load1"] for r in results.values())
    print(f"  note: load average up to {busy:.1f} on {os.cpu_count()} CPUs"
          + (": wall-clock figures are noisy" if busy > 1.5 else ""))
    return passed


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="preference_dpo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="pairs trained on (default 128; 16 with --smoke)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    p.add_argument("--smoke", action="store_true", help="16 pairs and a tiny model: checks the harness end to end")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every setting")
    p.add_argument("--data-dir", type=Path, default=DATA, help=f"folder holding {HH}")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lit_ft_preference_dpo",
                   help="where the tokenizer and the initial model are kept between runs")
    for hidden in ("--worker", "--model", "--work"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--pairs", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    if opts.worker:
        return worker(opts)
    settings = [s for s in opts.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        sys.exit(f"preference_dpo: unknown --settings {unknown}; choose from {list(SETTINGS)}")
    if not (opts.data_dir / HH).is_file():
        sys.exit(f"preference_dpo: {opts.data_dir / HH} not found; pass --data-dir DIR (or set LIT_FT_SHARED_DATA)")
    count = opts.rows or (16 if opts.smoke else 128)
    dims = SMOKE_MODEL if opts.smoke else MODEL
    rows = [json.loads(line) for line in (opts.data_dir / HH).read_text().splitlines()]
    model = build_model(opts.cache / ("llama_" + "_".join(str(v) for v in dims.values())), rows, dims)
    picked = pick_rows(rows, model, count)
    print(f"machine: {os.cpu_count()} CPUs; fp32, {opts.threads} threads; model {dims}, vocab {VOCAB}; "
          f"{len(picked)} HH pairs, batch {BATCH}, max_length {MAX_LENGTH}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lit_ft_preference_dpo_") as work:
        opts.work = work
        text = "".join(json.dumps(r) + "\n" for r in picked)
        (Path(work) / "train.jsonl").write_text(text)
        (Path(work) / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in picked[:BATCH]))
        results = {s: spawn(opts, s, model, len(picked)) for s in settings}
    passed = report(results)
    print(json.dumps({"bench": "preference_dpo", "pairs": len(picked), "threads": opts.threads, "smoke": opts.smoke,
                      "results": results, "passed": passed}))
    sys.exit(0 if all(passed.values()) else 1)


if __name__ == "__main__":
    main()
