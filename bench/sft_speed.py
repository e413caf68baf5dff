"""SFT speed benchmark: lit_ft (its real CLI path) against TRL's SFTTrainer, padded and packed, in one run.

A small random-init Llama (hidden 384, 6 layers, 6 heads, intermediate 1024, about 17M parameters) with a byte-level
BPE tokenizer (8k vocabulary) trained on the LIMA texts, both built here and cached. Alpaca prompt format, loss on
the response only, batch 8, lr 1e-4, fp32, one epoch, 2 threads, every setting and seed in a fresh subprocess,
seeds interleaved. Two jobs: `lima` (the first 256 LIMA rows, max_length 512) and `mixed` (the 100 Alpaca rows
shuffled into those LIMA rows, max_length 1024: short and long examples, so padding costs much).

    python bench/sft_speed.py                          # full run: 2 jobs x 8 settings x 3 seeds
    python bench/sft_speed.py --smoke --seeds 1        # 16 rows, tiny model: checks the harness end to end

Figures per setting: loss-bearing tokens per second of training (the same tokens in every setting: checked),
padded tokens per real token, final training loss (loss-token-weighted mean of the last quarter of the steps).
Targets: lit_ft defaults >= 1.3x the best TRL setting; on `mixed` lit_ft packed >= 1.3x lit_ft random batches;
lit_ft packed >= 0.9x lit_ft defaults; final loss within 2% of TRL's (lit_ft defaults against TRL unpacked, lit_ft
packed against TRL packed; means over the seeds). Needs `trl` (`pip install 'lit_ft[bench]'`). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LIT_FT_SHARED_DATA", REPO.parent / "shared" / "data"))
LIMA, ALPACA = Path("lima/lima.json"), Path("alpaca_first100/alpaca_tiny.json")  # under --data-dir
RECIPE = REPO / "configs" / "sft_alpaca.yaml"
BATCH, LR, VOCAB = 8, 1e-4, 8000
JOBS = {"lima": 512, "mixed": 1024}  # job -> max_length
MODEL = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 6, "intermediate_size": 1024}
SMOKE_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
LIT_SETTINGS = {"lit_ft": [], "lit_ft_random": ["--data.init_args.group_batches", "1"],
                "lit_ft_packed": ["--data.init_args.packing", "true"],
                "lit_ft_compiled": ["--model.compile", "true"]}  # measured, no target: the first steps compile
# TRL with its own defaults (gradient checkpointing on), and without checkpointing, the fastest TRL can go here
TRL_SETTINGS = {"trl": {"packing": False}, "trl_packed": {"packing": True},
                "trl_nockpt": {"packing": False, "gradient_checkpointing": False},
                "trl_packed_nockpt": {"packing": True, "gradient_checkpointing": False}}
SETTINGS = (*LIT_SETTINGS, *TRL_SETTINGS)
SPEEDUP_VS_TRL, PACKED_VS_RANDOM, PACKED_VS_DEFAULTS, LOSS_TOLERANCE = 1.3, 1.3, 0.9, 0.02


def machine() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "no avx2/bf16 flags"


# ---- what both sides train on --------------------------------------------------------------------------------------
def build_tokenizer(out: Path, lima: Path) -> Path:
    """Byte-level BPE (any text round-trips) with an 8k vocabulary, trained on every LIMA instruction and answer."""
    if (out / "tokenizer.json").is_file():
        return out
    from byte_bpe import train_byte_bpe

    rows = json.loads(lima.read_text())
    train_byte_bpe((text for r in rows for text in (r["instruction"], r["output"])), VOCAB).save_pretrained(out)
    return out


def build_model(tokenizer: Path, dims: dict[str, int], seed: int, out: Path) -> Path:
    """A random-init Llama (untied embeddings), the same start for every setting of a seed."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer)
    config = LlamaConfig(vocab_size=len(tok), num_key_value_heads=dims["num_attention_heads"],
                         max_position_embeddings=max(JOBS.values()), tie_word_embeddings=False,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         **dims)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def job_rows(job: str, rows: int, tokenizer: Path, data: Path) -> tuple[list[dict[str, str]], int]:
    """Alpaca rows (instruction, input, output) of a job, and how many were left out because the prompt alone fills
    max_length (no response token would train; TRL drops them, lit_ft asks to). Answers lose leading whitespace,
    so the prompt's last token never merges with the answer's first and both sides mask the same tokens."""
    from transformers import AutoTokenizer

    from lit_ft.tasks.sft.render import alpaca_prompt

    def clean(r: dict[str, Any]) -> dict[str, str]:
        return {"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"].lstrip()}

    picked = [clean(r) for r in json.loads((data / LIMA).read_text())[:rows]]
    if job == "mixed":
        picked += [clean(r) for r in json.loads((data / ALPACA).read_text())[: min(rows, 100)]]
        random.Random(0).shuffle(picked)
    tok = AutoTokenizer.from_pretrained(tokenizer)
    fits = [r for r in picked if len(tok(alpaca_prompt(r["instruction"], r["input"]))["input_ids"]) < JOBS[job]]
    return fits, len(picked) - len(fits)


# ---- measuring, the same on both sides -------------------------------------------------------------------------------
class Record:
    """Per-step loss and loss tokens, token slots against real tokens, and the training time (wall and CPU)."""

    def __init__(self) -> None:
        self.losses: list[Any] = []
        self.tokens: list[int] = []
        self.slots = self.real = 0
        self.start = self.cpu = self.wall_s = self.cpu_s = 0.0
        self.marks: list[float] = []  # seconds since the start at each batch: warm-up shows in the first

    def begin(self) -> None:
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def end(self) -> None:
        self.wall_s, self.cpu_s = time.perf_counter() - self.start, time.process_time() - self.cpu

    def batch(self, inputs: dict[str, Any], row_tokens: list[int] | None = None) -> None:
        """One training batch as the model gets it: padded with a mask, packed rows with `position_ids` (lit_ft:
        `row_tokens` real tokens per row, the rest padding), or TRL's one padding-free row."""
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        self.marks.append(round(time.perf_counter() - self.start, 3))
        self.tokens.append(int((inputs["labels"][:, 1:] != -100).sum()))  # the shifted loss never predicts token 0
        self.slots += ids.numel()
        if row_tokens is not None:
            self.real += sum(row_tokens)
        else:
            self.real += int(mask.sum()) if mask is not None else ids.numel()

    def figures(self) -> dict[str, Any]:
        losses = [float(x) for x in self.losses]
        if len(losses) != len(self.tokens):
            raise RuntimeError(f"{len(losses)} losses recorded for {len(self.tokens)} batches")
        last = max(1, math.ceil(len(losses) / 4))
        return {"steps": len(losses), "loss_tokens": sum(self.tokens), "train_s": round(self.wall_s, 3),
                "cpu_s": round(self.cpu_s, 3), "tokens_per_s": round(sum(self.tokens) / self.wall_s, 2),
                "pad_per_real": round((self.slots - self.real) / self.real, 4),
                "final_loss": round(weighted(losses[-last:], self.tokens[-last:]), 5),
                "epoch_loss": round(weighted(losses, self.tokens), 5), "batch_marks_s": self.marks}


def weighted(losses: list[float], tokens: list[int]) -> float:
    """Mean loss per loss token over the given steps (each step's loss is a mean over its own loss tokens)."""
    return sum(x * n for x, n in zip(losses, tokens, strict=True)) / max(1, sum(tokens))


# ---- the settings (each in its own process) -------------------------------------------------------------------------
def run_lit_ft(opts: argparse.Namespace, record: Record, work: Path) -> None:
    """`lit_ft fit` on configs/sft_alpaca.yaml with the job's overrides; no validation, checkpoint, export or logger."""
    from lightning.pytorch import Callback

    from lit_ft.commands.cli import run

    class Measure(Callback):
        def on_train_start(self, *args: Any) -> None:
            record.begin()

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, *args: Any) -> None:
            record.batch(batch["inputs"], batch.get("row_tokens"))

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, *args: Any) -> None:
            record.losses.append((outputs["loss"] if isinstance(outputs, dict) else outputs).detach())

        def on_train_end(self, *args: Any) -> None:
            record.end()

    train = str(work / f"{opts.job}.json")
    run(["fit", "--config", str(RECIPE), "--seed_everything", str(opts.seed), "--model.backbone", opts.model,
         "--model.learning_rate", str(LR), "--data.init_args.source.train", train,
         "--data.init_args.source.validation", str(work / "validation.json"),
         "--data.init_args.batch_size", str(BATCH), "--data.init_args.max_length", str(JOBS[opts.job]),
         "--data.init_args.shuffle_seed", str(opts.seed), "--trainer.max_epochs", "1",
         "--trainer.precision", "32-true", "--trainer.accumulate_grad_batches", "1", "--trainer.accelerator", "cpu",
         "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false",
         "--checkpoint.save_last", "false", "--checkpoint.save_top_k", "0", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--export.enabled", "false", "--summary.enabled", "false",
         "--trainer.default_root_dir", str(work / f"run_{opts.worker}_{opts.seed}"), "--overwrite", "true",
         *LIT_SETTINGS[opts.worker]], callbacks=[Measure()])


def run_trl(opts: argparse.Namespace, record: Record, work: Path) -> None:
    """TRL's SFTTrainer on prompt/completion rows (its completion-only loss), its defaults apart from the job."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from lit_ft.tasks.sft.render import alpaca_prompt

    class Measure(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            record.begin()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            record.end()

    class Recorded(SFTTrainer):  # type: ignore[misc]
        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if model.training:
                record.batch(inputs)
            loss = super().compute_loss(model, inputs, *args, **kwargs)
            if model.training:
                record.losses.append(loss.detach())
            return loss

    rows = json.loads((work / f"{opts.job}.json").read_text())
    data = Dataset.from_list([{"prompt": alpaca_prompt(r["instruction"], r["input"]), "completion": r["output"]}
                              for r in rows])
    args = SFTConfig(output_dir=str(work / f"run_{opts.worker}_{opts.seed}"), per_device_train_batch_size=BATCH,
                     learning_rate=LR, num_train_epochs=1, max_length=JOBS[opts.job], bf16=False, fp16=False,
                     use_cpu=True, seed=opts.seed, save_strategy="no", report_to=[], disable_tqdm=True,
                     dataloader_num_workers=0, **TRL_SETTINGS[opts.worker])
    model = AutoModelForCausalLM.from_pretrained(opts.model, dtype="float32")
    trainer = Recorded(model=model, args=args, train_dataset=data,
                       processing_class=AutoTokenizer.from_pretrained(opts.model), callbacks=[Measure()])
    trainer.train()


def worker(opts: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(opts.threads)
    record, load = Record(), os.getloadavg()[0]
    (run_lit_ft if opts.worker in LIT_SETTINGS else run_trl)(opts, record, Path(opts.work))
    result = {"job": opts.job, "setting": opts.worker, "seed": opts.seed, "load1": round(load, 2),
              "threads": torch.get_num_threads(), **record.figures()}
    print("RESULT " + json.dumps(result), flush=True)


def spawn(opts: argparse.Namespace, job: str, setting: str, seed: int, model: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--job", job, "--seed", str(seed),
           "--model", str(model), "--work", opts.work, "--threads", str(opts.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads), "MKL_NUM_THREADS": str(opts.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{job} {setting} seed {seed} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                 f"{done.stderr[-5000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    print(f"  {job:<6}{setting:<18} seed {seed}: {result['tokens_per_s']:9.1f} loss tok/s  {result['steps']:4d} steps"
          f"  pad/real {result['pad_per_real']:.3f}  final loss {result['final_loss']:.4f}  "
          f"({result['train_s']:.1f} s, load {result['load1']})", flush=True)
    return result


# ---- summary ------------------------------------------------------------------------------------------------------
def means(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["setting"], []).append(r)
    keys = ("tokens_per_s", "train_s", "cpu_s", "pad_per_real", "final_loss", "epoch_loss", "steps")
    mean = {s: {k: statistics.fmean(r[k] for r in rs) for k in keys} for s, rs in by.items()}
    for s, rs in by.items():  # CPU time is steadier than wall time on a busy machine
        mean[s]["cpu_tokens_per_s"] = statistics.fmean(r["loss_tokens"] / r["cpu_s"] for r in rs)
    return mean


def speed(mean: dict[str, dict[str, float]], a: str, b: str) -> tuple[float, float]:
    """Loss tokens/s of setting `a` over setting `b`, from wall time and from CPU time."""
    wall, cpu = (mean[a][k] / mean[b][k] for k in ("tokens_per_s", "cpu_tokens_per_s"))
    return wall, cpu


def targets(job: str, mean: dict[str, dict[str, float]]) -> list[tuple[str, float, float | None, str, float]]:
    """(name, value, value from CPU time or None, op, target) of the targets whose settings ran."""
    out: list[tuple[str, float, float | None, str, float]] = []
    trl = [s for s in TRL_SETTINGS if s in mean]
    if "lit_ft" in mean and trl:
        best = max(trl, key=lambda s: mean[s]["tokens_per_s"])
        out.append((f"lit_ft / best TRL ({best}) tok/s", *speed(mean, "lit_ft", best), ">=", SPEEDUP_VS_TRL))
    if job == "mixed" and {"lit_ft_packed", "lit_ft_random"} <= mean.keys():
        out.append(("lit_ft packed / random tok/s", *speed(mean, "lit_ft_packed", "lit_ft_random"), ">=",
                    PACKED_VS_RANDOM))
    if {"lit_ft_packed", "lit_ft"} <= mean.keys():
        out.append(("lit_ft packed / defaults tok/s", *speed(mean, "lit_ft_packed", "lit_ft"), ">=",
                    PACKED_VS_DEFAULTS))
    for lit, ref in (("lit_ft", "trl"), ("lit_ft_packed", "trl_packed")):
        if {lit, ref} <= mean.keys():
            delta = abs(mean[lit]["final_loss"] / mean[ref]["final_loss"] - 1)
            out.append((f"|final loss {lit} / {ref} - 1|", delta, None, "<=", LOSS_TOLERANCE))
    return out


def report(job: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    mean = means(results)
    tokens = sorted({r["loss_tokens"] for r in results})
    print(f"\njob {job} (max_length {JOBS[job]}): loss tokens per epoch {tokens} "
          f"({'the same in every setting and seed' if len(tokens) == 1 else 'MISMATCH'})")
    print(f"{'setting':<19}{'loss tok/s per seed':<28}{'mean':>9}{'cpu tok/s':>10}{'steps':>6}{'pad/real':>9}"
          f"{'final loss per seed':>28}{'mean':>8}{'epoch':>8}")
    for s, m in mean.items():
        runs = [r for r in results if r["setting"] == s]
        speeds = ", ".join(f"{r['tokens_per_s']:.0f}" for r in runs)
        losses = ", ".join(f"{r['final_loss']:.3f}" for r in runs)
        print(f"{s:<19}{speeds:<28}{m['tokens_per_s']:>9.1f}{m['cpu_tokens_per_s']:>10.1f}{m['steps']:>6.0f}"
              f"{m['pad_per_real']:>9.3f}{losses:>28}{m['final_loss']:>8.4f}{m['epoch_loss']:>8.4f}")
    passed = {"identical loss tokens": len(tokens) == 1}
    print(f"  {'':<44}{'wall':>8}{'cpu time':>10}")
    for name, value, cpu, op, target in targets(job, mean):
        passed[name] = value >= target if op == ">=" else value <= target
        print(f"  {name:<44}{value:>8.3f}{'' if cpu is None else f'{cpu:.3f}':>10}   target {op} {target:<5} "
              f"{'PASS' if passed[name] else 'FAIL'}")
    print(f"  {'loss tokens agree':<44}{'':>18}   {'PASS' if passed['identical loss tokens'] else 'FAIL'}")
    if {"lit_ft_compiled", "lit_ft"} <= mean.keys():  # measured, no target (`model.compile` stays off by default)
        wall, cpu = speed(mean, "lit_ft_compiled", "lit_ft")
        print(f"  {'lit_ft compiled / defaults tok/s':<44}{wall:>8.3f}{cpu:>10.3f}   (compiling counts: first steps)")
    busy = max(r["load1"] for r in results)
    if busy > max(r["threads"] for r in results) + 0.5:
        print(f"  note: the load average reached {busy:.1f}: wall-clock figures are noisy, CPU time is steadier")
    return {"job": job, "means": mean, "passed": passed}


# ---- driver --------------------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """`3` means seeds 0, 1, 2; a comma list (`7,11`) names the seeds."""
    return [int(s) for s in text.split(",") if s] if "," in text else list(range(int(text)))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="first N LIMA rows (default 256; 16 with --smoke)")
    p.add_argument("--seeds", default="3", help="number of seeds (0..N-1), or a comma list such as 7,11")
    p.add_argument("--jobs", default=",".join(JOBS), help=f"comma list of {', '.join(JOBS)}")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    p.add_argument("--smoke", action="store_true", help="16 rows and a tiny model: checks the harness end to end")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every setting")
    p.add_argument("--data-dir", type=Path, default=DATA, help="folder with lima/ and alpaca_first100/")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lit_ft_sft_speed",
                   help="where the tokenizer and the initial models are kept between runs")
    for hidden in ("--worker", "--job", "--model", "--work"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def prepare(opts: argparse.Namespace, jobs: list[str], tokenizer: Path) -> None:
    """Each job's rows as an Alpaca JSON file under `opts.work`, and a small validation file the runs never use."""
    for job in jobs:
        rows, dropped = job_rows(job, opts.rows, tokenizer, opts.data_dir)
        (Path(opts.work) / f"{job}.json").write_text(json.dumps(rows))
        print(f"job {job}: {len(rows)} rows, max_length {JOBS[job]}"
              + (f" ({dropped} left out: the prompt alone fills max_length)" if dropped else ""), flush=True)
        (Path(opts.work) / "validation.json").write_text(json.dumps(rows[:BATCH]))


def choose(text: str, known: tuple[str, ...], what: str) -> list[str]:
    chosen = [s for s in text.split(",") if s]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        sys.exit(f"sft_speed: unknown --{what} {unknown}; choose from {list(known)}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    if opts.worker:
        return worker(opts)
    jobs, settings = choose(opts.jobs, tuple(JOBS), "jobs"), choose(opts.settings, SETTINGS, "settings")
    missing = [str(opts.data_dir / p) for p in (LIMA, ALPACA) if not (opts.data_dir / p).is_file()]
    if missing:
        sys.exit(f"sft_speed: {missing} not found; pass --data-dir DIR (or set LIT_FT_SHARED_DATA), the folder holding "
                 f"{LIMA} and {ALPACA}: on the development machines ../shared/data next to the repository")
    if any(s in TRL_SETTINGS for s in settings):
        try:
            import trl  # noqa: F401
        except ImportError:
            sys.exit("sft_speed: the TRL settings need the `trl` package: pip install 'lit_ft[bench]'")
    opts.rows = opts.rows or (16 if opts.smoke else 256)
    dims, seeds = SMOKE_MODEL if opts.smoke else MODEL, parse_seeds(opts.seeds)
    print(f"machine: {os.cpu_count()} CPUs ({machine()}); fp32, {opts.threads} threads; model {dims}, "
          f"vocab {VOCAB}; LIMA rows {opts.rows}; seeds {seeds}", flush=True)
    tokenizer = build_tokenizer(opts.cache / f"tokenizer_{VOCAB}", opts.data_dir / LIMA)
    tag = "_".join(str(v) for v in dims.values())
    models = {seed: build_model(tokenizer, dims, seed, opts.cache / f"llama_{tag}_seed{seed}") for seed in seeds}
    with tempfile.TemporaryDirectory(prefix="lit_ft_sft_speed_") as work:
        opts.work = work
        prepare(opts, jobs, tokenizer)
        results = [spawn(opts, job, s, seed, models[seed]) for job in jobs for seed in seeds for s in settings]
    summaries = [report(job, [r for r in results if r["job"] == job]) for job in jobs]
    print(json.dumps({"bench": "sft_speed", "rows": opts.rows, "seeds": seeds, "threads": opts.threads,
                      "smoke": opts.smoke, "results": results, "summaries": summaries}))
    sys.exit(0 if all(all(s["passed"].values()) for s in summaries) else 1)


if __name__ == "__main__":
    main()
