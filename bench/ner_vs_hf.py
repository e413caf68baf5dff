"""Token classification: lit_ft against the HF Trainer on CoNLL-2003, same backbone, same initial weights.

Two modes, both on the packaged MiniLM, fp32, batch 32, lr 5e-5, weight decay 0.01, warmup 6%, linear decay,
max_length 128, both sides length-grouped, test entity F1 by one shared evaluation (seqeval on word-level tags):

    python bench/ner_vs_hf.py                      # full run: 3,000 and 10,000 sentences x 3 epochs x 3 seeds
    python bench/ner_vs_hf.py --sizes 300 --seeds 0 --epochs 1          # smoke run
    python bench/ner_vs_hf.py --compare-steps      # identical batches, step by step: lit_ft vs the HF Trainer

`--compare-steps` feeds the HF Trainer exactly the batches lit_ft trained on (same order, same padding) from the
same initial weights with dropout off, and prints per-step loss, pre-clip gradient norm and learning rate of
lit_ft without clipping, lit_ft with `gradient_clip_val: 1.0`, and the HF Trainer (which clips at 1.0), plus how
far each ends from the HF Trainer's weights. Every setting and seed of the full run is a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "conll2003"
TRAIN, DEV, TEST = "eng.train.first10000", "eng.testa", "eng.testb"
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
TYPES = ["LOC", "MISC", "ORG", "PER"]
BATCH, LR, WEIGHT_DECAY, WARMUP, MAX_LENGTH = 32, 5e-5, 0.01, 0.06, 128
TARGETS = {"mean F1, lit_ft - HF (pt)": -0.5, "worst seed F1, lit_ft - HF (pt)": -1.0}


# ---- data and the shared evaluation -------------------------------------------------------------------------------
def read_conll(path: Path, limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """Sentences (words, IOB2 tags) of a CoNLL-2003 file, skipping -DOCSTART- blocks."""
    from lit_ft.tasks.token_classification.conll import read_sentences
    from lit_ft.tasks.token_classification.schemes import convert

    out = []
    for words, tags in read_sentences(path, 0, -1):
        if words and words[0] != "-DOCSTART-":
            out.append((list(words), convert(list(tags or []), "IOB2")))
            if limit is not None and len(out) == limit:
                break
    return out


def write_conll(sentences: list[tuple[list[str], list[str]]], path: Path) -> Path:
    path.write_text("".join("".join(f"{w} {t}\n" for w, t in zip(ws, ts, strict=True)) + "\n" for ws, ts in sentences))
    return path


def label_names() -> list[str]:
    from lit_ft.tasks.token_classification.schemes import label_set

    return label_set(TYPES, "IOB2")


def evaluate(model_dir: str, sentences: list[tuple[list[str], list[str]]]) -> float:
    """Entity F1 (seqeval) of first-sub-token predictions; words cut off by max_length count as `O`."""
    import torch
    from seqeval.metrics import f1_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    id2label = model.config.id2label
    predicted = []
    with torch.no_grad():
        for start in range(0, len(sentences), 64):
            chunk = [words for words, _ in sentences[start : start + 64]]
            enc = tokenizer(chunk, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH,
                            padding=True, return_tensors="pt")
            best = model(**enc).logits.argmax(-1)
            for i, words in enumerate(chunk):
                tags, seen = ["O"] * len(words), set()
                for pos, word in enumerate(enc.word_ids(i)):
                    if word is not None and word not in seen:
                        seen.add(word)
                        tags[word] = id2label[int(best[i, pos])]
                predicted.append(tags)
    return float(f1_score([tags for _, tags in sentences], predicted))


def initial_model(seed: int, out: Path, dropout: bool = True) -> Path:
    """MiniLM with a freshly initialised token-classification head (seeded): the same start for every side."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from lit_ft.backbone import resolve_backbone

    names = label_names()
    torch.manual_seed(seed)
    extra = {} if dropout else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = AutoModelForTokenClassification.from_pretrained(
        resolve_backbone(BACKBONE), num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, **extra)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_backbone(BACKBONE)).save_pretrained(out)
    return out


# ---- the two sides ------------------------------------------------------------------------------------------------
def lit_args(backbone: Path, train: Path, dev: Path, root: Path, seed: int, epochs: int) -> list[str]:
    """The shipped NER recipe with this job's data and hyperparameters; everything else is lit_ft's default."""
    return ["fit", "--config", str(REPO / "configs/ner_conll2003.yaml"), "--seed_everything", str(seed),
            "--model.backbone", str(backbone), "--model.learning_rate", str(LR), "--model.warmup", str(WARMUP),
            "--model.weight_decay", str(WEIGHT_DECAY), "--data.init_args.source.hub", "null",
            "--data.init_args.source.train", str(train), "--data.init_args.source.validation", str(dev),
            "--data.init_args.source.test", "null", "--data.init_args.source.predict", "null",
            "--data.init_args.tag_scheme", "IOB2", "--data.init_args.label_names", json.dumps(label_names()),
            "--data.init_args.batch_size", str(BATCH), "--data.init_args.max_length", str(MAX_LENGTH),
            "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(root),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]


def run_lit_ft(opts: argparse.Namespace, backbone: Path, train: Path, dev: Path, root: Path) -> str:
    from lit_ft.commands.cli import run

    run(lit_args(backbone, train, dev, root, opts.seed, opts.epochs))
    return str(root / "export")  # the best checkpoint by dev F1, as a Hugging Face directory


def hf_args(out: str, seed: int, epochs: float, strategy: str = "group_by_length", **extra: Any) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR, weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP, num_train_epochs=epochs, lr_scheduler_type="linear", save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, seed=seed, train_sampling_strategy=strategy, disable_tqdm=True,
        **extra)


def run_hf(opts: argparse.Namespace, backbone: Path, train: Path, dev: Path, root: Path) -> str:
    """The HF Trainer as its token-classification example uses it: first sub-token labelled, its defaults."""
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    index = {n: i for i, n in enumerate(label_names())}

    def encode(batch: dict[str, list[Any]]) -> Any:
        enc = tokenizer(batch["words"], is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
        enc["labels"] = []
        for i, tags in enumerate(batch["tags"]):
            labels, previous = [], None
            for word in enc.word_ids(i):
                labels.append(-100 if word is None or word == previous else index[tags[word]])
                previous = word
            enc["labels"].append(labels)
        return enc

    rows = [{"words": w, "tags": t} for w, t in read_conll(train)]
    data = Dataset.from_list(rows).map(encode, batched=True, remove_columns=["words", "tags"])
    model = AutoModelForTokenClassification.from_pretrained(backbone)
    trainer = Trainer(model=model, args=hf_args(str(root / "hf"), opts.seed, opts.epochs), train_dataset=data,
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    trainer.train()
    trainer.save_model(str(root / "export"))
    tokenizer.save_pretrained(str(root / "export"))
    return str(root / "export")


def worker(opts: argparse.Namespace) -> None:
    """One side, size and seed in this fresh process; prints `RESULT {json}` last."""
    import torch

    torch.set_num_threads(opts.threads)
    root = Path(tempfile.mkdtemp(prefix=f"lit_ft_ner_{opts.worker}_"))
    train = write_conll(read_conll(Path(opts.data) / TRAIN, opts.size), root / "train.conll")
    backbone = initial_model(opts.seed, root / "init")
    start = time.perf_counter()
    side = run_lit_ft if opts.worker == "lit_ft" else run_hf
    model_dir = side(opts, backbone, train, Path(opts.data) / DEV, root)
    seconds = time.perf_counter() - start
    f1 = evaluate(model_dir, read_conll(Path(opts.data) / TEST))
    print("RESULT " + json.dumps({"side": opts.worker, "size": opts.size, "seed": opts.seed, "test_f1": f1,
                                  "seconds": seconds}), flush=True)


# ---- step-by-step comparison on identical batches -----------------------------------------------------------------
def compare_steps(opts: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(opts.threads)
    root = Path(tempfile.mkdtemp(prefix="lit_ft_ner_steps_"))
    train = write_conll(read_conll(Path(opts.data) / TRAIN, opts.sizes[0]), root / "train.conll")
    dev = write_conll(read_conll(Path(opts.data) / DEV, 200), root / "dev.conll")
    backbone = initial_model(opts.seeds[0], root / "init", dropout=False)
    runs = {}
    for name, clip in (("lit_ft, no clipping", None), ("lit_ft, clip 1.0", 1.0), ("lit_ft defaults", "default")):
        runs[name] = steps_of_lit_ft(backbone, train, dev, root / name.replace(" ", "_"), opts, clip)
    batches = runs["lit_ft, no clipping"]["batches"]
    runs["HF Trainer defaults"] = steps_of_hf(backbone, batches, root / "hf", opts)
    print_step_table(runs, opts.show_steps)


def steps_of_lit_ft(backbone: Path, train: Path, dev: Path, root: Path, opts: argparse.Namespace,
                    clip: float | str | None) -> dict[str, Any]:
    from lit_ft.commands.cli import run

    args = lit_args(backbone, train, dev, root, opts.seeds[0], 1) + [
        "--trainer.callbacks+=ner_vs_hf.StepRecorder", "--export.enabled", "false", "--trainer.limit_val_batches", "0"]
    if clip != "default":
        args += ["--trainer.gradient_clip_val", json.dumps(clip)]
    result = run(args)
    assert result is not None
    recorder = next(cb for cb in result.trainer.callbacks if type(cb).__name__ == "StepRecorder")
    module = result.trainer.lightning_module
    return {**recorder.record, "weights": {k: v.detach().clone() for k, v in module.model.state_dict().items()}}


def steps_of_hf(backbone: Path, batches: list[dict[str, Any]], out: Path, opts: argparse.Namespace) -> dict[str, Any]:
    from torch.utils.data import DataLoader
    from transformers import AutoModelForTokenClassification, Trainer, TrainerCallback

    record: dict[str, list[float]] = {"loss": [], "grad_norm": [], "lr": []}

    class Logs(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if logs and "grad_norm" in logs:
                record["grad_norm"].append(float(logs["grad_norm"]))
                record["loss"].append(float(logs["loss"]))

    class SameBatches(Trainer):
        def get_train_dataloader(self) -> DataLoader:
            return DataLoader(batches, batch_size=1, collate_fn=lambda items: items[0])

    model = AutoModelForTokenClassification.from_pretrained(backbone)
    trainer = SameBatches(model=model, args=hf_args(str(out), opts.seeds[0], 1, "sequential", logging_steps=1),
                          train_dataset=batches, callbacks=[Logs()])
    trainer.train()
    return {**record, "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def print_step_table(runs: dict[str, dict[str, Any]], show: int) -> None:
    import torch

    names = list(runs)
    print("\nstep  " + "  ".join(f"{n[:22]:>22} loss / |g|" for n in names))
    for step in range(min(show, len(runs[names[0]]["loss"]))):
        cells = [f"{runs[n]['loss'][step]:>22.4f} {runs[n]['grad_norm'][step]:>7.3f}" for n in names]
        print(f"{step:>4}  " + "  ".join(cells))
    norms = runs["lit_ft, no clipping"]["grad_norm"]
    print(f"\nsteps with pre-clip gradient norm > 1: {sum(g > 1 for g in norms)} of {len(norms)}; "
          f"max {max(norms):.2f}, median {statistics.median(norms):.2f}")
    hf = runs["HF Trainer defaults"]["weights"]
    for name in names[:-1]:
        diff = sum(float((runs[name]["weights"][k].float() - hf[k].float()).norm() ** 2) for k in hf) ** 0.5
        ref = sum(float(hf[k].float().norm() ** 2) for k in hf) ** 0.5
        losses = torch.tensor(runs[name]["loss"]) - torch.tensor(runs["HF Trainer defaults"]["loss"])
        print(f"{name:<22}: weights vs HF Trainer, relative L2 {diff / ref:.2e}; "
              f"max |loss - HF loss| over steps {float(losses.abs().max()):.4f}")


class StepRecorder(Callback):
    """Per optimizer step: the batch's model inputs, the loss, the pre-clip gradient norm and the learning rate."""

    def __init__(self) -> None:
        self.record: dict[str, list[Any]] = {"loss": [], "grad_norm": [], "lr": [], "batches": []}

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        self.record["batches"].append({k: v.clone() for k, v in batch["inputs"].items()})

    def on_before_optimizer_step(self, trainer: Any, module: Any, optimizer: Any) -> None:
        import torch

        grads = [p.grad.norm() for p in module.parameters() if p.grad is not None]
        self.record["grad_norm"].append(float(torch.linalg.vector_norm(torch.stack(grads))))
        self.record["lr"].append(float(optimizer.param_groups[0]["lr"]))

    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.record["loss"].append(float(outputs["loss"]))


# ---- the full run -------------------------------------------------------------------------------------------------
def spawn(opts: argparse.Namespace, side: str, size: int, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--size", str(size), "--seed", str(seed),
           "--epochs", str(opts.epochs), "--threads", str(opts.threads), "--data", str(opts.data)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{side} size {size} seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def summarise(results: list[dict[str, Any]], sizes: list[int]) -> bool:
    ok = True
    for size in sizes:
        f1 = {side: [r["test_f1"] for r in results if r["side"] == side and r["size"] == size]
              for side in ("lit_ft", "hf")}
        secs = {side: statistics.mean(r["seconds"] for r in results if r["side"] == side and r["size"] == size)
                for side in ("lit_ft", "hf")}
        print(f"\n{size} training sentences: test entity F1 per seed (mean, spread)")
        for side, values in f1.items():
            spread = max(values) - min(values)
            print(f"  {side:<7} {', '.join(f'{v:.4f}' for v in values)}  mean {statistics.mean(values):.4f} "
                  f"spread {spread:.4f}  ({secs[side]:.0f} s per run)")
        checks = {"mean F1, lit_ft - HF (pt)": 100 * (statistics.mean(f1["lit_ft"]) - statistics.mean(f1["hf"])),
                  "worst seed F1, lit_ft - HF (pt)": 100 * (min(f1["lit_ft"]) - min(f1["hf"]))}
        for name, value in checks.items():
            passed = value >= TARGETS[name]
            ok &= passed
            print(f"  {name}: {value:+.2f} (target >= {TARGETS[name]:+.1f})  {'PASS' if passed else 'FAIL'}")
    return ok


def machine() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return ", ".join(f for f in ("avx2", "avx512_bf16", "amx_bf16") if f in flags) or "no avx2/bf16 flags"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 10000], help="training sentences per job")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(DATA), help="folder with the CoNLL-2003 files")
    parser.add_argument("--compare-steps", action="store_true", help="identical batches, step by step")
    parser.add_argument("--show-steps", type=int, default=12, help="steps printed by --compare-steps")
    parser.add_argument("--worker", choices=["lit_ft", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if not (Path(opts.data) / TRAIN).is_file():
        sys.exit(f"CoNLL-2003 files not found in {opts.data}: pass --data DIR with {TRAIN}, {DEV}, {TEST}")
    if opts.worker:
        return worker(opts)
    print(f"machine: {os.cpu_count()} CPUs ({machine()}); fp32, {opts.threads} threads")
    if opts.compare_steps:
        return compare_steps(opts)
    results = []
    for size in opts.sizes:
        for seed in opts.seeds:
            for side in ("lit_ft", "hf"):  # interleaved, so load on the machine hits both sides alike
                results.append(spawn(opts, side, size, seed))
                print(f"  {json.dumps(results[-1])}", flush=True)
    sys.exit(0 if summarise(results, opts.sizes) else 1)


if __name__ == "__main__":
    main()
