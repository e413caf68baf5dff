"""Sentence classification: does lit_ft's default gradient clipping (1.0) cost accuracy? lit_ft's defaults against
lit_ft without clipping (its old default) and the HF Trainer, same backbone and initial weights, 3 seeds.

The job: Rotten Tomatoes polarity (`../shared/data/rt_polarity`, latin-1), shuffled once with a fixed seed into
train (first 2,000), validation (next 500) and test (next 2,000); the packaged MiniLM, fp32, batch 32, lr 5e-5,
weight decay 0.01, warmup 6%, linear decay, 3 epochs, max_length 64. lit_ft keeps its best checkpoint by validation
accuracy (its default), the HF Trainer its final model (its default). Test accuracy by one shared evaluation.

    python bench/cls_vs_hf.py                         # full run: 3 settings x 3 seeds, fresh process each
    python bench/cls_vs_hf.py --seeds 0 --train 300   # smoke run

Target: lit_ft defaults' mean test accuracy >= lit_ft without clipping - 0.5 pt, and >= HF Trainer - 0.5 pt.
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
from pathlib import Path
from typing import Any

from ner_vs_hf import machine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "rt_polarity"
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
BATCH, LR, WEIGHT_DECAY, WARMUP, MAX_LENGTH, EPOCHS = 32, 5e-5, 0.01, 0.06, 64, 3
SETTINGS = ("lit_ft defaults", "lit_ft no clipping", "HF Trainer")
TARGET = -0.5  # pt


def splits(data: Path, train: int) -> dict[str, list[tuple[str, int]]]:
    rows = [(line.strip(), label) for label, name in enumerate(("rt-polarity.neg", "rt-polarity.pos"))
            for line in (data / name).read_text(encoding="latin-1").splitlines() if line.strip()]
    random.Random(0).shuffle(rows)
    return {"train": rows[:train], "validation": rows[train : train + 500], "test": rows[train + 500 : train + 2500]}


def write_csv(rows: list[tuple[str, int]], path: Path) -> str:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((text, ("negative", "positive")[label]) for text, label in rows)
    return str(path)


def initial_model(seed: int, out: Path) -> Path:
    """MiniLM with a seeded new classification head: the same start for every setting of a seed."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lit_ft.backbone import resolve_backbone

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_backbone(BACKBONE), num_labels=2, id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_backbone(BACKBONE)).save_pretrained(out)
    return out


def accuracy(model_dir: str, rows: list[tuple[str, int]]) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    label_id = {name: int(i) for name, i in model.config.label2id.items()}
    correct = 0
    with torch.no_grad():
        for start in range(0, len(rows), 128):
            chunk = rows[start : start + 128]
            enc = tokenizer([t for t, _ in chunk], truncation=True, max_length=MAX_LENGTH, padding=True,
                            return_tensors="pt")
            best = model(**enc).logits.argmax(-1).tolist()
            gold = [label_id[("negative", "positive")[y]] for _, y in chunk]
            correct += sum(int(p == g) for p, g in zip(best, gold, strict=True))
    return correct / len(rows)


def run_lit_ft(backbone: Path, files: dict[str, str], root: Path, seed: int, clip: bool) -> str:
    from lit_ft.cli import run

    args = ["fit", "--config", str(REPO / "configs/quickstart.yaml"), "--seed_everything", str(seed),
            "--model.backbone", str(backbone), "--model.learning_rate", str(LR), "--model.warmup", str(WARMUP),
            "--model.weight_decay", str(WEIGHT_DECAY), "--data.init_args.source.train", files["train"],
            "--data.init_args.source.validation", files["validation"], "--data.init_args.source.test", "null",
            "--data.init_args.source.predict", "null", "--data.init_args.batch_size", str(BATCH),
            "--data.init_args.max_length", str(MAX_LENGTH), "--trainer.max_epochs", str(EPOCHS),
            "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    if not clip:
        args += ["--trainer.gradient_clip_val", "null"]
    run(args)
    return str(root / "export")


def run_hf(backbone: Path, rows: list[tuple[str, int]], root: Path, seed: int) -> str:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    data = Dataset.from_list([{"text": t, "label": y} for t, y in rows]).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LENGTH), batched=True, remove_columns=["text"])
    args = TrainingArguments(
        output_dir=str(root / "hf"), per_device_train_batch_size=BATCH, learning_rate=LR, weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP, num_train_epochs=EPOCHS, lr_scheduler_type="linear", save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, seed=seed, disable_tqdm=True)
    model = AutoModelForSequenceClassification.from_pretrained(backbone)
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(root / "export"))
    return str(root / "export")


def worker(opts: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(opts.threads)
    root = Path(tempfile.mkdtemp(prefix="lit_ft_cls_"))
    data = splits(Path(opts.data), opts.train)
    files = {name: write_csv(rows, root / f"{name}.csv") for name, rows in data.items()}
    backbone = initial_model(opts.seed, root / "init")
    start = time.perf_counter()
    if opts.worker == "HF Trainer":
        model_dir = run_hf(backbone, data["train"], root, opts.seed)
    else:
        model_dir = run_lit_ft(backbone, files, root, opts.seed, clip=opts.worker == "lit_ft defaults")
    seconds = time.perf_counter() - start
    print("RESULT " + json.dumps({"setting": opts.worker, "seed": opts.seed, "seconds": seconds,
                                  "test_accuracy": accuracy(model_dir, data["test"])}), flush=True)


def spawn(opts: argparse.Namespace, setting: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--seed", str(seed),
           "--train", str(opts.train), "--threads", str(opts.threads), "--data", str(opts.data)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{setting} seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def summarise(results: list[dict[str, Any]]) -> bool:
    acc = {s: [r["test_accuracy"] for r in results if r["setting"] == s] for s in SETTINGS}
    print("\ntest accuracy per seed (mean, spread)")
    for setting, values in acc.items():
        secs = statistics.mean(r["seconds"] for r in results if r["setting"] == setting)
        print(f"  {setting:<20} {', '.join(f'{v:.4f}' for v in values)}  mean {statistics.mean(values):.4f} "
              f"spread {max(values) - min(values):.4f}  ({secs:.0f} s per run)")
    ok = True
    for other in SETTINGS[1:]:
        delta = 100 * (statistics.mean(acc["lit_ft defaults"]) - statistics.mean(acc[other]))
        ok &= delta >= TARGET
        print(f"  mean accuracy, lit_ft defaults - {other} (pt): {delta:+.2f} (target >= {TARGET:+.1f})  "
              f"{'PASS' if delta >= TARGET else 'FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=2000, help="training sentences")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(DATA), help="folder with rt-polarity.neg and rt-polarity.pos")
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if not (Path(opts.data) / "rt-polarity.pos").is_file():
        sys.exit(f"rt_polarity files not found in {opts.data}: pass --data DIR with rt-polarity.neg/.pos")
    if opts.worker:
        return worker(opts)
    print(f"machine: {os.cpu_count()} CPUs ({machine()}); fp32, {opts.threads} threads")
    results = []
    for seed in opts.seeds:
        for setting in SETTINGS:  # interleaved, so load on the machine hits every setting alike
            results.append(spawn(opts, setting, seed))
            print(f"  {json.dumps(results[-1])}", flush=True)
    sys.exit(0 if summarise(results) else 1)


if __name__ == "__main__":
    main()
