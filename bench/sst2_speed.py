"""SST-2 speed-and-quality benchmark: lit_ft against the HF Trainer and a plain PyTorch loop, in one run.

Fine-tunes the packaged MiniLM on SST-2 (batch 32, lr 5e-5, weight decay 0.01, no warmup, fp32, max_length 128,
one epoch) once per setting and seed, each in a fresh subprocess with the same thread count, and prints
training samples/s, dev accuracy (one shared eval loop) and the ratios against the targets. See bench/README.md.

    python bench/sst2_speed.py                                  # full run: 10,000 examples x 3 seeds x 4 settings
    python bench/sst2_speed.py --n-train 512 --seeds 1          # smoke run
    python bench/sst2_speed.py --padding-only                   # padded tokens per epoch per sampler, no training
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "sst2"
TRAIN_FILE, DEV_FILE = "train_first10000.tsv", "glue_dev.tsv"
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
SETTINGS = ("lit_ft", "hf_default", "hf_grouped", "plain_loop", "lit_ft_noclip")
BATCH, LR, WEIGHT_DECAY, MAX_LENGTH, EVAL_BATCH = 32, 5e-5, 0.01, 128, 64
TARGETS = {"lit_ft/hf_default samples/s": (">=", 2.0), "lit_ft/hf_grouped samples/s": (">=", 1.0),
           "dev acc lit_ft - hf_default": (">=", -0.003), "lit_ft overhead vs plain_loop": ("<=", 0.05),
           "clipping cost (lit_ft time / noclip - 1)": ("report", 0.0)}
CLIP = 1.0  # lit_ft's default trainer.gradient_clip_val (the HF Trainer's max_grad_norm)


# ---- shared by every setting -----------------------------------------------------------------------
def read_rows(path: str) -> list[dict[str, Any]]:
    """GLUE-style TSV (header `sentence<TAB>label`, no quoting) as dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def evaluate(model: Any, tokenizer: Any, dev_file: str, label_names: list[str]) -> float:
    """Dev accuracy by argmax, in file order, batches of 64: the same loop for every setting."""
    import torch
    from transformers import DataCollatorWithPadding

    rows = read_rows(dev_file)
    pad = DataCollatorWithPadding(tokenizer)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(rows), EVAL_BATCH):
            chunk = rows[start : start + EVAL_BATCH]
            enc = [tokenizer(r["sentence"], truncation=True, max_length=MAX_LENGTH) for r in chunk]
            predicted = model(**pad(enc)).logits.argmax(-1).tolist()
            correct += sum(label_names[p] == str(r["label"]) for p, r in zip(predicted, chunk, strict=True))
    return correct / len(rows)


class Stopwatch:
    """Wall and process CPU seconds (all threads) since creation; CPU time is steadier on a busy machine."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


class StepClock:
    """Wall time from the first training step to the end (excludes dataloader/optimizer setup)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.threads = 0

    def step(self) -> None:
        if self.first is None:
            import torch

            self.first, self.threads = time.perf_counter(), torch.get_num_threads()

    def seconds(self) -> float:
        return time.perf_counter() - (self.first or time.perf_counter())


# ---- the four settings (each returns the trained model, its tokenizer and label names) ---------------------------
def lit_data(opts: argparse.Namespace) -> Any:
    from lit_ft.source import DataSource
    from lit_ft.tasks.classification import ClassificationData

    data = ClassificationData(
        source=DataSource(train=opts.train_file, validation=opts.dev_file), tokenizer=opts.backbone,
        text_column="sentence", label_column="label", batch_size=BATCH, max_length=MAX_LENGTH, shuffle_seed=opts.seed,
    )
    data.prepare_data()  # tokenizes (cached) before the clock starts
    return data


def lit_module(opts: argparse.Namespace, data: Any) -> Any:
    from lightning.pytorch import seed_everything

    from lit_ft.module import FineTuner

    seed_everything(opts.seed, verbose=False)
    return FineTuner(task="classification", backbone=opts.backbone, info=data.info, learning_rate=LR,
                     weight_decay=WEIGHT_DECAY, warmup=0.0)


def run_lit_ft(opts: argparse.Namespace, clock: StepClock) -> tuple[Any, Any, list[str], tuple[float, float]]:
    from lightning.pytorch import Callback, Trainer

    class Clock(Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            clock.step()

    data = lit_data(opts)
    module = lit_module(opts, data)
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", devices=1, precision="32-true", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        use_distributed_sampler=False, callbacks=[Clock()],
        gradient_clip_val=None if opts.worker.endswith("noclip") else CLIP,
    )
    watch = Stopwatch()
    trainer.fit(module, datamodule=data)
    return module.model, data.tokenizer, data.info["label_names"], watch.elapsed()


def run_plain_loop(opts: argparse.Namespace, clock: StepClock) -> tuple[Any, Any, list[str], tuple[float, float]]:
    """lit_ft's own batches (sampler order and collate) and model, trained by a bare PyTorch loop."""
    import torch

    from lit_ft.optim import AdamW, decay_groups

    data = lit_data(opts)
    model = lit_module(opts, data).model
    watch = Stopwatch()
    loader = data.train_dataloader()
    optimizer = AdamW(decay_groups(model, WEIGHT_DECAY), lr=LR)  # lit_ft's default optimizer (fused AdamW)
    total = len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total)
    model.train()
    for batch in loader:
        clock.step()
        model(**batch["inputs"]).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)  # the same work as lit_ft's default
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return model, data.tokenizer, data.info["label_names"], watch.elapsed()


def run_hf(opts: argparse.Namespace, clock: StepClock) -> tuple[Any, Any, list[str], tuple[float, float]]:
    """HF Trainer with dynamic padding; `hf_grouped` adds `train_sampling_strategy="group_by_length"`."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from lit_ft.backbone import resolve_backbone

    class Clock(TrainerCallback):
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            clock.step()

    path = resolve_backbone(opts.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = [{"text": r["sentence"], "label": int(r["label"])} for r in read_rows(opts.train_file)]
    train = Dataset.from_list(rows).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LENGTH), batched=True, remove_columns=["text"])
    torch.manual_seed(opts.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    strategy = "group_by_length" if opts.worker == "hf_grouped" else "random"
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="lit_ft_bench_hf_"), per_device_train_batch_size=BATCH,
        learning_rate=LR, num_train_epochs=1, weight_decay=WEIGHT_DECAY, warmup_steps=0, logging_steps=50,
        save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=opts.seed,
        train_sampling_strategy=strategy, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[Clock()])
    watch = Stopwatch()
    trainer.train()
    return model, tokenizer, ["0", "1"], watch.elapsed()


def worker(opts: argparse.Namespace) -> None:
    """One setting and seed in this (fresh) process; prints `RESULT {json}` last."""
    import torch

    torch.set_num_threads(opts.threads)
    clock = StepClock()
    run = {"lit_ft": run_lit_ft, "lit_ft_noclip": run_lit_ft, "plain_loop": run_plain_loop}.get(opts.worker, run_hf)
    load = os.getloadavg()[0]
    model, tokenizer, names, (train_s, cpu_s) = run(opts, clock)
    loop_s = clock.seconds()
    n_train = len(read_rows(opts.train_file))
    result = {
        "setting": opts.worker, "seed": opts.seed, "n_train": n_train, "train_s": round(train_s, 3),
        "samples_per_s": round(n_train / train_s, 3), "loop_s": round(loop_s, 3),
        "cpu_s": round(cpu_s, 3), "load1": round(load, 2), "threads": clock.threads,
        "dev_acc": round(evaluate(model, tokenizer, opts.dev_file, names), 4),
    }
    print("RESULT " + json.dumps(result), flush=True)


# ---- padding-only mode -----------------------------------------------------------------------------------------
def batch_orders(lengths: list[int], seed: int) -> dict[str, list[list[int]]]:
    """One epoch of batches from each sampler, plus a fully sorted order (the padding lower bound)."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from lit_ft.sampler import LengthGroupedBatchSampler

    def chunks(order: list[int]) -> list[list[int]]:
        return [order[i : i + BATCH] for i in range(0, len(order), BATCH)]

    def lit(group_batches: int) -> list[list[int]]:
        return LengthGroupedBatchSampler(lengths, BATCH, seed=seed, group_batches=group_batches).global_batches()

    random = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    grouped = get_length_grouped_indices(lengths, BATCH, generator=torch.Generator().manual_seed(seed))
    return {
        "random (HF default)": chunks(random),
        "HF group_by_length": chunks(grouped),
        "lit_ft group_batches=50": lit(50),
        "lit_ft group_batches=1": lit(1),
        "sorted (lower bound)": chunks(sorted(range(len(lengths)), key=lengths.__getitem__)),
    }


def padding_stats(lengths: list[int], batches: list[list[int]]) -> dict[str, float]:
    """Token slots after padding each batch to its longest example, and how batch lengths follow each other."""
    tops = [max(lengths[i] for i in b) for b in batches]
    slots = sum(t * len(b) for t, b in zip(tops, batches, strict=True))
    real = sum(lengths[i] for b in batches for i in b)
    try:
        lag1 = statistics.correlation(tops[:-1], tops[1:])
    except statistics.StatisticsError:  # fewer than 3 batches, or constant lengths
        lag1 = 0.0
    return {"slots": slots, "pad": slots - real, "pad_share": (slots - real) / slots,
            "attn": sum(t * t * len(b) for t, b in zip(tops, batches, strict=True)), "lag1": lag1}


def padding_only(opts: argparse.Namespace, seeds: list[int]) -> None:
    opts.seed = 0
    lengths = list(lit_data(opts).features("train")["length"])
    per: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        for name, batches in batch_orders(lengths, seed).items():
            per.setdefault(name, []).append(padding_stats(lengths, batches))
    mean = {n: {k: statistics.fmean(s[k] for s in runs) for k in runs[0]} for n, runs in per.items()}
    base = mean["random (HF default)"]
    print(f"\npadded tokens per epoch, {len(lengths)} SST-2 examples (real tokens {sum(lengths)}), batch {BATCH}, "
          f"mean over seeds {seeds}")
    print(f"{'sampler':<26}{'token slots':>12}{'pad tokens':>12}{'pad share':>10}{'slots/random':>13}"
          f"{'attn/random':>12}{'lag-1 corr':>11}")
    for name, m in mean.items():
        print(f"{name:<26}{m['slots']:>12.0f}{m['pad']:>12.0f}{m['pad_share']:>10.3f}"
              f"{m['slots'] / base['slots']:>13.3f}{m['attn'] / base['attn']:>12.3f}{m['lag1']:>11.3f}")
    print(json.dumps({"bench": "sst2_padding", "n_train": len(lengths), "seeds": seeds, "samplers": mean}))


# ---- driver ----------------------------------------------------------------------------------------------------
def run_worker(opts: argparse.Namespace, setting: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--seed", str(seed),
           "--train-file", opts.train_file, "--dev-file", opts.dev_file, "--threads", str(opts.threads),
           "--backbone", opts.backbone]
    env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads), "MKL_NUM_THREADS": str(opts.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"setting {setting} seed {seed} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    print(f"  {setting:<11} seed {seed}: {result['samples_per_s']:7.2f} samples/s  train {result['train_s']:7.1f}s  "
          f"dev acc {result['dev_acc']:.4f}  threads {result['threads']}", flush=True)
    return result


def ratios(mean: dict[str, dict[str, float]], time_key: str) -> dict[str, float]:
    """The target ratios for the settings that ran; speed from `time_key` (`train_s` wall or `cpu_s`)."""
    out: dict[str, float] = {}
    lit = mean.get("lit_ft")
    if lit is None:
        return out
    for other in ("hf_default", "hf_grouped"):
        if other in mean:
            out[f"lit_ft/{other} samples/s"] = mean[other][time_key] / lit[time_key]
    if "hf_default" in mean:
        out["dev acc lit_ft - hf_default"] = lit["dev_acc"] - mean["hf_default"]["dev_acc"]
    if "plain_loop" in mean:
        out["lit_ft overhead vs plain_loop"] = lit[time_key] / mean["plain_loop"][time_key] - 1.0
    if "lit_ft_noclip" in mean:
        out["clipping cost (lit_ft time / noclip - 1)"] = lit[time_key] / mean["lit_ft_noclip"][time_key] - 1
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["setting"], []).append(r)
    keys = ("samples_per_s", "train_s", "cpu_s", "dev_acc")
    mean = {s: {k: statistics.fmean(r[k] for r in rs) for k in keys} for s, rs in by.items()}
    return {"mean": mean, "ratios": ratios(mean, "train_s"), "ratios_cpu_time": ratios(mean, "cpu_s")}


def report(results: list[dict[str, Any]], opts: argparse.Namespace) -> None:
    summary = summarize(results)
    print(f"\n{'setting':<12}{'seed':>5}{'samples/s':>11}{'train s':>9}{'cpu s':>9}{'load':>6}{'dev acc':>9}")
    for r in sorted(results, key=lambda r: (SETTINGS.index(r["setting"]), r["seed"])):
        print(f"{r['setting']:<12}{r['seed']:>5}{r['samples_per_s']:>11.2f}{r['train_s']:>9.1f}{r['cpu_s']:>9.1f}"
              f"{r['load1']:>6.1f}{r['dev_acc']:>9.4f}")
    for s, m in summary["mean"].items():
        print(f"{s:<12}{'mean':>5}{m['samples_per_s']:>11.2f}{m['train_s']:>9.1f}{m['cpu_s']:>9.1f}{'':>6}"
              f"{m['dev_acc']:>9.4f}")
    print(f"\n{'ratio':<32}{'wall':>9}{'cpu time':>10}")
    passed = {}
    for name, value in summary["ratios"].items():
        op, target = TARGETS[name]
        if op == "report":  # measured, no target
            print(f"{name:<32}{value:>9.3f}{summary['ratios_cpu_time'][name]:>10.3f}")
            continue
        passed[name] = value >= target if op == ">=" else value <= target
        print(f"{name:<32}{value:>9.3f}{summary['ratios_cpu_time'][name]:>10.3f}   target {op} {target:<6} "
              f"{'PASS' if passed[name] else 'MISS'}")
    busy = max(r["load1"] for r in results)
    if busy > opts.threads + 0.5:
        print(f"note: load average reached {busy:.1f} on this machine; wall-clock ratios are noisy, "
              "the cpu-time column is steadier")
    print(json.dumps({"bench": "sst2_speed", "n_train": results[0]["n_train"], "threads": opts.threads,
                      "results": results, **summary, "passed": passed}))


def check_data(data_dir: Path) -> None:
    missing = [n for n in (TRAIN_FILE, DEV_FILE) if not (data_dir / n).is_file()]
    if missing:
        sys.exit(f"sst2_speed: {missing} not found in '{data_dir}'. Pass --data-dir DIR, a folder holding "
                 f"{TRAIN_FILE} and {DEV_FILE} (columns sentence/label); on the development machines that is "
                 f"../shared/data/sst2 next to the repository.")


def train_subset(opts: argparse.Namespace, tmp: str) -> str:
    """The training file itself, or its first `--n-train` rows in a temporary file (never in the repository)."""
    source = opts.data_dir / TRAIN_FILE
    if opts.n_train is None:
        return str(source)
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    if opts.n_train >= len(lines) - 1:
        return str(source)
    subset = Path(tmp) / f"train_first{opts.n_train}.tsv"
    subset.write_text("".join(lines[: opts.n_train + 1]), encoding="utf-8")
    return str(subset)


def parse_seeds(text: str) -> list[int]:
    """`3` means seeds 0, 1, 2; a comma list (`7,11`) names the seeds."""
    return [int(s) for s in text.split(",") if s] if "," in text else list(range(int(text)))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=None, help="first N training rows (default: all 10,000)")
    p.add_argument("--seeds", default="3", help="number of seeds (0..N-1), or a comma list such as 7,11")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with the SST-2 TSV files")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every setting")
    p.add_argument("--backbone", default=BACKBONE, help="model (hub id with a packaged copy, or a local directory)")
    p.add_argument("--padding-only", action="store_true", help="count padded tokens per sampler; no training")
    for hidden in ("--worker", "--train-file", "--dev-file"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    import datasets

    datasets.disable_progress_bars()
    if opts.worker:
        return worker(opts)
    opts.data_dir = opts.data_dir.expanduser().resolve()
    check_data(opts.data_dir)
    settings = [s for s in opts.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        sys.exit(f"sst2_speed: unknown --settings {unknown}; choose from {list(SETTINGS)}")
    seeds = parse_seeds(opts.seeds)
    with tempfile.TemporaryDirectory(prefix="lit_ft_bench_") as tmp:
        opts.train_file, opts.dev_file = train_subset(opts, tmp), str(opts.data_dir / DEV_FILE)
        if opts.padding_only:
            return padding_only(opts, seeds)
        print(f"sst2_speed: {settings} x seeds {seeds}, {opts.threads} threads, train {opts.train_file}", flush=True)
        results = [run_worker(opts, s, seed) for seed in seeds for s in settings]
    report(results, opts)


if __name__ == "__main__":
    main()
