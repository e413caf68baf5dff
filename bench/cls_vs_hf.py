"""Sentence classification against the HF Trainer: lit_ft's defaults, lit_ft without clipping and the HF Trainer as
its `run_classification.py` example trains (random batches, clipping at 1.0, final model), same backbone and initial
weights per seed, 3 seeds.

Two jobs, both on the packaged MiniLM, fp32, batch 32, lr 5e-5, weight decay 0.01, warmup 6%, linear decay, 3 epochs:
- `rt_polarity`: Rotten Tomatoes polarity (`../shared/data/rt_polarity`, latin-1), shuffled once with a fixed seed
  into train (first 2,000), validation (next 500) and test (next 2,000); max_length 64.
- `clinc150`: CLINC150 intents (`../shared/data/clinc150/data_small.json`): the 150 in-scope intents, its own train
  (7,500: 50 per intent), val (3,000) and test (4,500) splits; max_length 128.
lit_ft keeps its best checkpoint by validation accuracy (its default), the HF Trainer its final model (its default).
Test accuracy by one shared evaluation. Every run writes a per-step trace (`bench/step_trace.py`: learning rate and
pre-clip gradient norm) and its RESULT carries the trace's summary.

    python bench/cls_vs_hf.py --job clinc150               # full run: 3 settings x 3 seeds, fresh process each
    python bench/cls_vs_hf.py --job rt_polarity
    python bench/cls_vs_hf.py --job clinc150 --seeds 0 --train 600 --epochs 1   # smoke run
    python bench/cls_vs_hf.py --job clinc150 --settings "lit_ft random batches" "HF Trainer grouped"  # diagnostics

Settings: "lit_ft defaults" (classification's own: no clipping), "lit_ft clip 1.0" (lit_ft's default for other
tasks, and classification's before), "HF Trainer"; diagnostics: "lit_ft no clipping", "lit_ft random batches"
(`group_batches 1`), "HF Trainer grouped" (`group_by_length`).
Targets: lit_ft defaults' mean >= the HF Trainer's mean; lit_ft defaults' worst seed >= the HF Trainer's worst - 1 pt.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ner_vs_hf import machine
from step_trace import HFTrace, lit_trace_args, summary

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
BATCH, LR, WEIGHT_DECAY, WARMUP, EPOCHS = 32, 5e-5, 0.01, 0.06, 3
SETTINGS = ("lit_ft defaults", "lit_ft clip 1.0", "HF Trainer")
DIAGNOSTICS = ("lit_ft no clipping", "lit_ft random batches", "HF Trainer grouped")
CLIP = {"lit_ft clip 1.0": 1.0, "HF Trainer": 1.0, "HF Trainer grouped": 1.0}  # others: classification's default, none
TARGETS = {"mean, lit_ft defaults - HF Trainer (pt)": 0.0, "worst seed, lit_ft defaults - HF Trainer (pt)": -1.0}
Rows = list[tuple[str, str]]


@dataclass(frozen=True)
class Job:
    max_length: int
    default_train: int


JOBS = {"rt_polarity": Job(max_length=64, default_train=2000), "clinc150": Job(max_length=128, default_train=7500)}


def splits(job: str, data: Path, train: int) -> dict[str, Rows]:
    if job == "clinc150":
        raw = json.loads((data / "clinc150" / "data_small.json").read_text())
        rows = {name: [(text, intent) for text, intent in raw[key]] for name, key in
                (("train", "train"), ("validation", "val"), ("test", "test"))}
        # the file lists each intent's rows together: deal them round-robin, so --train N keeps every intent
        by_intent: dict[str, Rows] = {}
        for row in rows["train"]:
            by_intent.setdefault(row[1], []).append(row)
        dealt = [row for rank in range(max(map(len, by_intent.values()))) for group in by_intent.values()
                 for row in group[rank : rank + 1]]
        return {**rows, "train": dealt[:train]}
    pairs = [(line.strip(), label) for label, name in (("negative", "rt-polarity.neg"), ("positive", "rt-polarity.pos"))
             for line in (data / "rt_polarity" / name).read_text(encoding="latin-1").splitlines() if line.strip()]
    random.Random(0).shuffle(pairs)
    return {"train": pairs[:train], "validation": pairs[train : train + 500], "test": pairs[train + 500 : train + 2500]}


def write_csv(rows: Rows, path: Path) -> str:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def initial_model(seed: int, labels: list[str], out: Path) -> Path:
    """MiniLM with a seeded new classification head: the same start for every setting of a seed."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lit_ft.backbone import resolve_backbone

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_backbone(BACKBONE), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_backbone(BACKBONE)).save_pretrained(out)
    return out


def accuracy(model_dir: str, rows: Rows, max_length: int) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    label_id = {name: int(i) for name, i in model.config.label2id.items()}
    correct = 0
    with torch.no_grad():
        for start in range(0, len(rows), 128):
            chunk = rows[start : start + 128]
            enc = tokenizer([t for t, _ in chunk], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            best = model(**enc).logits.argmax(-1).tolist()
            correct += sum(int(p == label_id[gold]) for p, (_, gold) in zip(best, chunk, strict=True))
    return correct / len(rows)


def run_lit_ft(opts: argparse.Namespace, backbone: Path, files: dict[str, str], root: Path, trace: Path) -> str:
    """The quickstart recipe with this job's data and hyperparameters; everything else is lit_ft's default."""
    from lit_ft.commands.cli import run

    args = ["fit", "--config", str(REPO / "configs/quickstart.yaml"), "--seed_everything", str(opts.seed),
            "--model.backbone", str(backbone), "--model.learning_rate", str(LR), "--model.warmup", str(WARMUP),
            "--model.weight_decay", str(WEIGHT_DECAY), "--data.init_args.source.train", files["train"],
            "--data.init_args.source.validation", files["validation"], "--data.init_args.source.test", "null",
            "--data.init_args.source.predict", "null", "--data.init_args.batch_size", str(BATCH),
            "--data.init_args.max_length", str(JOBS[opts.job].max_length), "--trainer.max_epochs", str(opts.epochs),
            "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            *lit_trace_args(trace)]
    if opts.worker == "lit_ft no clipping":
        args += ["--trainer.gradient_clip_val", "null"]
    if opts.worker == "lit_ft clip 1.0":  # lit_ft's default for other tasks, and classification's before its own
        args += ["--trainer.gradient_clip_val", "1.0"]
    if opts.worker == "lit_ft random batches":
        args += ["--data.init_args.group_batches", "1"]
    run(args)
    return str(root / "export")


def run_hf(opts: argparse.Namespace, backbone: Path, rows: Rows, root: Path, trace: Path) -> str:
    """The HF Trainer as `run_classification.py` sets it up: dynamic padding, its defaults (clip 1.0, random order)."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(backbone)
    label_id = {name: int(i) for name, i in model.config.label2id.items()}
    data = Dataset.from_list([{"text": t, "label": label_id[y]} for t, y in rows]).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=JOBS[opts.job].max_length), batched=True,
        remove_columns=["text"])
    args = TrainingArguments(
        output_dir=str(root / "hf"), per_device_train_batch_size=BATCH, learning_rate=LR, weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP, num_train_epochs=opts.epochs, lr_scheduler_type="linear", save_strategy="no",
        report_to=[], use_cpu=True, dataloader_num_workers=0, seed=opts.seed, disable_tqdm=True, logging_steps=1,
        train_sampling_strategy="group_by_length" if opts.worker == "HF Trainer grouped" else "random")
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      callbacks=[HFTrace(trace)])
    trainer.train()
    trainer.save_model(str(root / "export"))
    return str(root / "export")


def worker(opts: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(opts.threads)
    root = Path(tempfile.mkdtemp(prefix="lit_ft_cls_"))
    data = splits(opts.job, Path(opts.data), opts.train)
    files = {name: write_csv(rows, root / f"{name}.csv") for name, rows in data.items()}
    backbone = initial_model(opts.seed, sorted({label for _, label in data["train"]}), root / "init")
    trace = root / "trace.json"
    start = time.perf_counter()
    if opts.worker.startswith("HF Trainer"):
        model_dir = run_hf(opts, backbone, data["train"], root, trace)
    else:
        model_dir = run_lit_ft(opts, backbone, files, root, trace)
    seconds = time.perf_counter() - start
    clip = CLIP.get(opts.worker)
    print("RESULT " + json.dumps({"job": opts.job, "setting": opts.worker, "seed": opts.seed, "seconds": seconds,
                                  "test_accuracy": accuracy(model_dir, data["test"], JOBS[opts.job].max_length),
                                  "trace": summary(trace, clip), "trace_file": str(trace)}), flush=True)


def spawn(opts: argparse.Namespace, setting: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--seed", str(seed), "--job", opts.job,
           "--train", str(opts.train), "--epochs", str(opts.epochs), "--threads", str(opts.threads),
           "--data", str(opts.data)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{setting} seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def summarise(results: list[dict[str, Any]], settings: list[str]) -> bool:
    acc = {s: [r["test_accuracy"] for r in results if r["setting"] == s] for s in settings}
    print("\ntest accuracy per seed (mean, spread)")
    for setting, values in acc.items():
        secs = statistics.mean(r["seconds"] for r in results if r["setting"] == setting)
        print(f"  {setting:<22} {', '.join(f'{v:.4f}' for v in values)}  mean {statistics.mean(values):.4f} "
              f"spread {max(values) - min(values):.4f}  ({secs:.0f} s per run)")
    checks = {}
    if {"lit_ft defaults", "HF Trainer"} <= acc.keys():
        checks["mean, lit_ft defaults - HF Trainer (pt)"] = statistics.mean(acc["lit_ft defaults"]) - statistics.mean(
            acc["HF Trainer"])
        checks["worst seed, lit_ft defaults - HF Trainer (pt)"] = min(acc["lit_ft defaults"]) - min(acc["HF Trainer"])
    ok = True
    for name, delta in checks.items():
        passed = 100 * delta >= TARGETS[name]
        ok &= passed
        print(f"  {name}: {100 * delta:+.2f} (target >= {TARGETS[name]:+.1f})  {'PASS' if passed else 'FAIL'}")
    print(json.dumps({"bench": "cls_vs_hf", "results": results, "checks": checks, "ok": ok}))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", choices=sorted(JOBS), default="clinc150")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS + DIAGNOSTICS, default=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, help="training rows (default: the job's)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(DATA), help="the folder holding rt_polarity/ and clinc150/")
    parser.add_argument("--worker", choices=SETTINGS + DIAGNOSTICS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    opts.train = opts.train or JOBS[opts.job].default_train
    needed = {"rt_polarity": "rt_polarity/rt-polarity.pos", "clinc150": "clinc150/data_small.json"}[opts.job]
    if not (Path(opts.data) / needed).is_file():
        sys.exit(f"{needed} not found in {opts.data}: pass --data DIR (the shared data folder)")
    if opts.worker:
        return worker(opts)
    print(f"machine: {os.cpu_count()} CPUs ({machine()}); fp32, {opts.threads} threads; job {opts.job}, "
          f"{opts.train} training rows, {opts.epochs} epochs")
    results = []
    for seed in opts.seeds:
        for setting in opts.settings:  # interleaved, so load on the machine hits every setting alike
            results.append(spawn(opts, setting, seed))
            print(f"  {json.dumps(results[-1])}", flush=True)
    sys.exit(0 if summarise(results, opts.settings) else 1)


if __name__ == "__main__":
    main()
