"""Extractive question answering: lit_ft against the HF Trainer set up as transformers'
`examples/pytorch/question-answering/run_qa.py` does, same backbone and initial weights, 3 seeds.

The job: XQuAD English, first half (`../shared/data/xquad_en_first_half`, SQuAD v1.1 JSON, 24 articles, 632
questions) split by article so no context is shared: test = articles with index % 4 == 3, train = the rest plus the
answerable rows of the SQuAD sample (`../shared/data/hf_tests_samples/SQUAD/sample.json`, flat rows, converted).
The packaged MiniLM, fp32, lr 1e-4, batch 16, max_length 384, stride 128, weight decay 0.01, warmup 6%, linear
decay, 3 epochs. lit_ft runs `configs/qa_squad.yaml` (its 10% hold-out as validation, best checkpoint kept, val
check every quarter epoch); the HF Trainer trains on all train rows and keeps its final model. Test exact match
and F1 by one shared evaluation written here (run_qa.py's features and post-processing, the official SQuAD v1.1
metric), never lit_ft's own.

    python bench/qa_vs_hf.py                 # full run: 3 settings x 3 seeds, fresh process each
    python bench/qa_vs_hf.py --seeds 0 --epochs 1 --max-train-questions 64 \\
        --settings "lit_ft defaults" "lit_ft clip 1.0" "HF Trainer" "lit_ft random batches"   # smoke run
    python bench/qa_vs_hf.py --check-eval    # the shared evaluation on gold answers and gold-span logits: 100

Settings: "lit_ft defaults" (the task's own default: no clipping), "lit_ft clip 1.0" (lit_ft's default for other
tasks, and this task's before it declared its own), "HF Trainer"; diagnostics "lit_ft no clipping" (explicit null)
and "lit_ft random batches" (`group_batches 1`).
Targets (over seeds): lit_ft defaults' mean test F1 >= the HF Trainer's, and its worst seed >= HF's worst - 1 pt.
Each RESULT carries the run's trace (`bench/step_trace.py`): optimizer steps, pre-clip gradient norms, lr by step.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ner_vs_hf import machine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "xquad_en_first_half" / "xquad.en.first_half.json"
SAMPLE = REPO.parent / "shared" / "data" / "hf_tests_samples" / "SQUAD" / "sample.json"
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
BATCH, LR, WEIGHT_DECAY, WARMUP, MAX_LENGTH, STRIDE, EPOCHS = 16, 1e-4, 0.01, 0.06, 384, 128, 3
N_BEST, MAX_ANSWER_LENGTH = 20, 30
SETTINGS = ("lit_ft defaults", "lit_ft clip 1.0", "HF Trainer", "lit_ft no clipping", "lit_ft random batches")
CLIP = {"lit_ft clip 1.0": 1.0, "HF Trainer": 1.0}  # the others train with the task's default: no clipping
TARGETS = {"mean F1, lit_ft defaults - HF Trainer (pt)": 0.0, "worst seed F1, lit_ft defaults - HF Trainer (pt)": -1.0}
Row = dict[str, Any]  # id, title, question, context, answers = {"text": [...], "answer_start": [...]}


# ---- data ---------------------------------------------------------------------------------------------------------
def articles_of(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["data"]


def sample_articles(path: Path) -> list[dict[str, Any]]:
    """The SQuAD sample's flat rows (`{"data": [{id, question, context, answers}]}`, some unanswerable) as one
    SQuAD v1.1 article, answerable rows only (a v1.1 job: lit_ft refuses unanswerable rows there)."""
    paragraphs: dict[str, list[dict[str, Any]]] = {}
    for row in json.loads(path.read_text(encoding="utf-8"))["data"]:
        answers = [{"text": t, "answer_start": s}
                   for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True)]
        if answers:
            paragraphs.setdefault(row["context"], []).append(
                {"id": row["id"], "question": row["question"], "answers": answers})
    return [{"title": "squad_sample", "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs.items()]}]


def splits(opts: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Articles of train and test: by article index, so no context is in both."""
    articles = articles_of(Path(opts.data))
    test = [a for i, a in enumerate(articles) if i % 4 == 3]
    train = [a for i, a in enumerate(articles) if i % 4 != 3][: opts.train_articles] + sample_articles(SAMPLE)
    if opts.max_train_questions is not None:
        train = cap_questions(train, opts.max_train_questions)
    return {"train": train, "test": test}


def cap_questions(articles: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The first `limit` questions of `articles`, in order, in the same nested layout."""
    out, left = [], limit
    for article in articles:
        paragraphs = []
        for p in article["paragraphs"]:
            if left > 0:
                paragraphs.append({"context": p["context"], "qas": p["qas"][:left]})
                left -= len(paragraphs[-1]["qas"])
        if paragraphs:
            out.append({"title": article["title"], "paragraphs": paragraphs})
    return out


def write_squad(articles: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(json.dumps({"version": "1.1", "data": articles}))
    return path


def flat_rows(articles: list[dict[str, Any]]) -> list[Row]:
    return [{"id": q["id"], "title": a["title"], "question": q["question"], "context": p["context"],
             "answers": {"text": [x["text"] for x in q["answers"]],
                         "answer_start": [x["answer_start"] for x in q["answers"]]}}
            for a in articles for p in a["paragraphs"] for q in p["qas"]]


def initial_model(seed: int, out: Path) -> Path:
    """MiniLM with a seeded new span head: the same start for every setting of a seed."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from lit_ft.backbone import resolve_backbone

    torch.manual_seed(seed)
    AutoModelForQuestionAnswering.from_pretrained(resolve_backbone(BACKBONE)).save_pretrained(out)
    AutoTokenizer.from_pretrained(resolve_backbone(BACKBONE)).save_pretrained(out)
    return out


# ---- run_qa.py's features -----------------------------------------------------------------------------------------
def windows(tokenizer: Any, examples: dict[str, list[Any]]) -> Any:
    """run_qa.py's tokenization of both feature functions: question and context cut into padded, overlapping windows
    (leading spaces of questions stripped; the context is the truncated side)."""
    pad_right = tokenizer.padding_side == "right"
    examples["question"] = [q.lstrip() for q in examples["question"]]
    return tokenizer(examples["question" if pad_right else "context"], examples["context" if pad_right else "question"],
                     truncation="only_second" if pad_right else "only_first", max_length=MAX_LENGTH, stride=STRIDE,
                     return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")


def prepare_train_features(tokenizer: Any, examples: dict[str, list[Any]]) -> Any:
    """run_qa.py's `prepare_train_features` (pad_to_max_length=True, its default): start/end token positions of the
    first answer, the CLS index where the answer is not wholly inside the window."""
    pad_right = tokenizer.padding_side == "right"
    enc = windows(tokenizer, examples)
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    offset_mapping = enc.pop("offset_mapping")
    enc["start_positions"], enc["end_positions"] = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = enc["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = enc.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        if len(answers["answer_start"]) == 0:
            enc["start_positions"].append(cls_index)
            enc["end_positions"].append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start = 0
        while sequence_ids[token_start] != (1 if pad_right else 0):
            token_start += 1
        token_end = len(input_ids) - 1
        while sequence_ids[token_end] != (1 if pad_right else 0):
            token_end -= 1
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            enc["start_positions"].append(cls_index)
            enc["end_positions"].append(cls_index)
        else:
            while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                token_start += 1
            enc["start_positions"].append(token_start - 1)
            while offsets[token_end][1] >= end_char:
                token_end -= 1
            enc["end_positions"].append(token_end + 1)
    return enc


def prepare_validation_features(tokenizer: Any, examples: dict[str, list[Any]]) -> Any:
    """run_qa.py's `prepare_validation_features`: windows with their example id; offsets outside the context None."""
    pad_right = tokenizer.padding_side == "right"
    enc = windows(tokenizer, examples)
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = []
    for i in range(len(enc["input_ids"])):
        context_index = 1 if pad_right else 0
        sequence_ids = enc.sequence_ids(i)
        enc["example_id"].append(examples["id"][sample_mapping[i]])
        enc["offset_mapping"][i] = [o if sequence_ids[k] == context_index else None
                                    for k, o in enumerate(enc["offset_mapping"][i])]
    return enc


def postprocess_qa_predictions(rows: list[Row], features: list[dict[str, Any]], start_logits: Any,
                               end_logits: Any) -> dict[str, str]:
    """run_qa.py's `postprocess_qa_predictions` (SQuAD v1.1): per question, the best span over all its windows
    by start + end logit among the `N_BEST` starts and ends, at most `MAX_ANSWER_LENGTH` tokens, inside the context."""
    features_per_example = collections.defaultdict(list)
    for i, feature in enumerate(features):
        features_per_example[feature["example_id"]].append(i)
    predictions = {}
    for row in rows:
        candidates = []
        for i in features_per_example[row["id"]]:
            start, end, offsets = start_logits[i], end_logits[i], features[i]["offset_mapping"]
            starts = sorted(range(len(start)), key=lambda k: -start[k])[:N_BEST]
            ends = sorted(range(len(end)), key=lambda k: -end[k])[:N_BEST]
            for s in starts:
                for e in ends:
                    if (s >= len(offsets) or e >= len(offsets) or offsets[s] is None or len(offsets[s]) < 2
                            or offsets[e] is None or len(offsets[e]) < 2 or e < s or e - s + 1 > MAX_ANSWER_LENGTH):
                        continue
                    candidates.append((start[s] + end[e], offsets[s][0], offsets[e][1]))
        if candidates:
            _, a, b = max(candidates, key=lambda c: c[0])
            predictions[row["id"]] = row["context"][a:b]
        else:
            predictions[row["id"]] = ""
    return predictions


# ---- the official SQuAD v1.1 metric -------------------------------------------------------------------------------
def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def f1_score(prediction: str, ground_truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], rows: list[Row]) -> dict[str, float]:
    """Exact match and F1 (0-100), each the max over a question's gold answers, averaged over questions."""
    em = f1 = 0.0
    for row in rows:
        golds, pred = row["answers"]["text"], predictions[row["id"]]
        em += max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        f1 += max(f1_score(pred, g) for g in golds)
    return {"exact_match": 100 * em / len(rows), "f1": 100 * f1 / len(rows)}


def validation_features(tokenizer: Any, rows: list[Row]) -> list[dict[str, Any]]:
    enc = prepare_validation_features(tokenizer, {k: [r[k] for r in rows] for k in ("id", "question", "context")})
    return [{k: enc[k][i] for k in enc} for i in range(len(enc["input_ids"]))]


def evaluate(model_dir: str, rows: list[Row]) -> dict[str, float]:
    """The shared evaluation: test EM and F1 of the model in `model_dir`."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    features = validation_features(tokenizer, rows)
    starts, ends = [], []
    with torch.no_grad():
        for at in range(0, len(features), 32):
            chunk = features[at : at + 32]
            inputs = {k: torch.tensor([f[k] for f in chunk]) for k in tokenizer.model_input_names if k in chunk[0]}
            out = model(**inputs)
            starts += out.start_logits.tolist()
            ends += out.end_logits.tolist()
    return squad_scores(postprocess_qa_predictions(rows, features, starts, ends), rows)


def check_eval(opts: argparse.Namespace) -> None:
    """Gold answers as predictions, and logits that put the gold span of each window first: both must score 100."""
    from transformers import AutoTokenizer

    from lit_ft.backbone import resolve_backbone

    rows = flat_rows(splits(opts)["test"])
    gold = squad_scores({r["id"]: r["answers"]["text"][0] for r in rows}, rows)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(BACKBONE))
    features = validation_features(tokenizer, rows)
    spans = prepare_train_features(tokenizer, {k: [r[k] for r in rows] for k in ("question", "context", "answers")})
    starts = [[0.0] * MAX_LENGTH for _ in features]
    ends = [[0.0] * MAX_LENGTH for _ in features]
    for i, (s, e) in enumerate(zip(spans["start_positions"], spans["end_positions"], strict=True)):
        if features[i]["offset_mapping"][s] is not None:  # the window holds the answer (else CLS: not a span)
            starts[i][s], ends[i][e] = 10.0, 10.0
    oracle = squad_scores(postprocess_qa_predictions(rows, features, starts, ends), rows)
    print(f"{len(rows)} test questions, {len(features)} windows")
    print(f"gold answers as predictions: {json.dumps(gold)}")
    print(f"gold spans as logits (tokenisation, windows, post-processing): {json.dumps(oracle)}")


# ---- the settings -------------------------------------------------------------------------------------------------
def lit_args(opts: argparse.Namespace, backbone: Path, train: Path, root: Path, trace_file: Path) -> list[str]:
    """The shipped QA recipe with this job's data and hyperparameters; everything else is lit_ft's default."""
    from step_trace import lit_trace_args  # bench/step_trace.py (this folder is first on sys.path)

    args = ["fit", "--config", str(REPO / "configs/qa_squad.yaml"), "--seed_everything", str(opts.seed),
            "--model.backbone", str(backbone), "--model.learning_rate", str(LR), "--model.warmup", str(WARMUP),
            "--model.weight_decay", str(WEIGHT_DECAY), "--data.init_args.source.hub", "null",
            "--data.init_args.source.train", str(train), "--data.init_args.source.validation", "null",
            "--data.init_args.source.test", "null", "--data.init_args.source.predict", "null",
            "--data.init_args.batch_size", str(BATCH), "--data.init_args.max_length", str(MAX_LENGTH),
            "--data.init_args.stride", str(STRIDE), "--trainer.max_epochs", str(opts.epochs),
            "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            *lit_trace_args(trace_file)]
    if opts.worker == "lit_ft no clipping":
        args += ["--trainer.gradient_clip_val", "null"]
    if opts.worker == "lit_ft clip 1.0":  # lit_ft's default for other tasks, and this task's before its own
        args += ["--trainer.gradient_clip_val", "1.0"]
    if opts.worker == "lit_ft random batches":
        args += ["--data.init_args.group_batches", "1"]
    return args


def run_lit_ft(opts: argparse.Namespace, backbone: Path, train: Path, root: Path, trace_file: Path) -> str:
    from lit_ft.commands.cli import run

    run(lit_args(opts, backbone, train, root, trace_file))
    return str(root / "export")  # the best checkpoint by validation F1, as a Hugging Face directory


def run_hf(opts: argparse.Namespace, backbone: Path, rows: list[Row], root: Path, trace_file: Path) -> str:
    """The HF Trainer as run_qa.py uses it: all train rows, padded windows, its defaults (clipping 1.0, random
    batches), the final model."""
    from datasets import Dataset
    from step_trace import HFTrace
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    data = Dataset.from_list(rows).map(lambda b: prepare_train_features(tokenizer, b), batched=True,
                                       remove_columns=list(rows[0]))
    args = TrainingArguments(
        output_dir=str(root / "hf"), per_device_train_batch_size=BATCH, learning_rate=LR, weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP, num_train_epochs=opts.epochs, lr_scheduler_type="linear", save_strategy="no",
        report_to=[], use_cpu=True, dataloader_num_workers=0, seed=opts.seed, disable_tqdm=True, logging_steps=1)
    model = AutoModelForQuestionAnswering.from_pretrained(backbone)
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      data_collator=default_data_collator, callbacks=[HFTrace(trace_file)])
    trainer.train()
    trainer.save_model(str(root / "export"))
    return str(root / "export")


def worker(opts: argparse.Namespace) -> None:
    """One setting and seed in this fresh process; prints `RESULT {json}` last."""
    import torch
    from step_trace import summary

    torch.set_num_threads(opts.threads)
    root = Path(tempfile.mkdtemp(prefix="lit_ft_qa_"))
    data = splits(opts)
    train = write_squad(data["train"], root / "train.json")
    write_squad(data["test"], root / "test.json")
    rows = {name: flat_rows(articles) for name, articles in data.items()}
    backbone = initial_model(opts.seed, root / "init")
    trace_file = root / "trace.json"
    start = time.perf_counter()
    if opts.worker == "HF Trainer":
        model_dir = run_hf(opts, backbone, rows["train"], root, trace_file)
    else:
        model_dir = run_lit_ft(opts, backbone, train, root, trace_file)
    seconds = time.perf_counter() - start
    scores = evaluate(model_dir, rows["test"])
    clip = CLIP.get(opts.worker)
    print("RESULT " + json.dumps({"setting": opts.worker, "seed": opts.seed, "seconds": seconds,
                                  "train_questions": len(rows["train"]), "test_questions": len(rows["test"]),
                                  "test_em": scores["exact_match"], "test_f1": scores["f1"],
                                  "trace": summary(trace_file, clip), "root": str(root)}), flush=True)


# ---- the full run -------------------------------------------------------------------------------------------------
def spawn(opts: argparse.Namespace, setting: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--seed", str(seed),
           "--epochs", str(opts.epochs), "--threads", str(opts.threads), "--data", str(opts.data)]
    if opts.train_articles is not None:
        cmd += ["--train-articles", str(opts.train_articles)]
    if opts.max_train_questions is not None:
        cmd += ["--max-train-questions", str(opts.max_train_questions)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{setting} seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def summarise(results: list[dict[str, Any]], settings: list[str]) -> bool:
    print("\ntest EM / F1 per seed (mean, spread of F1)")
    f1 = {s: [r["test_f1"] for r in results if r["setting"] == s] for s in settings}
    for setting in settings:
        runs = [r for r in results if r["setting"] == setting]
        secs = statistics.mean(r["seconds"] for r in runs)
        steps = statistics.mean(r["trace"]["steps"] for r in runs)
        per_seed = ", ".join(f"{r['test_em']:.1f}/{r['test_f1']:.1f}" for r in runs)
        print(f"  {setting:<22} {per_seed}  "
              f"mean F1 {statistics.mean(f1[setting]):.2f} spread {max(f1[setting]) - min(f1[setting]):.2f}  "
              f"({secs:.0f} s per run, {steps:.0f} optimizer steps)")
    if "lit_ft defaults" not in settings or "HF Trainer" not in settings:
        return True
    checks = {"mean F1, lit_ft defaults - HF Trainer (pt)":
              statistics.mean(f1["lit_ft defaults"]) - statistics.mean(f1["HF Trainer"]),
              "worst seed F1, lit_ft defaults - HF Trainer (pt)": min(f1["lit_ft defaults"]) - min(f1["HF Trainer"])}
    ok = True
    for name, value in checks.items():
        passed = value >= TARGETS[name]
        ok &= passed
        print(f"  {name}: {value:+.2f} (target >= {TARGETS[name]:+.1f})  {'PASS' if passed else 'FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS[:3]))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--train-articles", type=int, help="first N train articles only (smoke runs)")
    parser.add_argument("--max-train-questions", type=int, help="first N train questions only (smoke runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(DATA), help="XQuAD English first half, SQuAD v1.1 JSON")
    parser.add_argument("--check-eval", action="store_true", help="score gold answers with the shared evaluation")
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if not Path(opts.data).is_file() or not SAMPLE.is_file():
        sys.exit(f"data not found: pass --data FILE (SQuAD v1.1 JSON); the sample is read from {SAMPLE}")
    if opts.worker:
        return worker(opts)
    if opts.check_eval:
        return check_eval(opts)
    print(f"machine: {os.cpu_count()} CPUs ({machine()}); fp32, {opts.threads} threads")
    results = []
    for seed in opts.seeds:
        for setting in opts.settings:  # interleaved, so load on the machine hits every setting alike
            results.append(spawn(opts, setting, seed))
            print(f"  {json.dumps(results[-1])}", flush=True)
    sys.exit(0 if summarise(results, opts.settings) else 1)


if __name__ == "__main__":
    main()
