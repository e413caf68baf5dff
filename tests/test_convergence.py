"""Convergence at the settings users run: the packaged MiniLM on real held-out data, lit_ft's shipped defaults.

Each test runs a shipped recipe on real files with the settings named (what a user types), then `lit_ft test` on
data no training or validation row shares, and checks the score against a threshold set between what the defaults
reach and what a default that cost accuracy reached: gradient clipping at 1.0 on these tasks (docs/training.md,
bench/README.md). The final validation loss carries the threshold: it says how far training got and varies little
from seed to seed, where held-out accuracy varies by several points. Running this file as a script repeats a
measurement: `python tests/test_convergence.py intent|qa [fit arguments, such as --trainer.gradient_clip_val 1.0]`.
Both tests are slow (about 3 minutes each on 2 CPU cores) and skip without ../shared/data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from builders import shared_data
from test_question_answering import official_v1_evaluate

from lit_ft.commands.cli import run

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--export.enabled", "false", "--trainer.accelerator", "cpu"]


def _write_csv(rows: list[list[str]], path: Path) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def fit_and_test(common: list[str], lr: str, extra: tuple[str, ...], metric: str) -> tuple[float, float]:
    """`lit_ft fit` for 3 epochs at `lr` with weight decay 0.01, warmup 6% and seed 0, then `lit_ft test` of its best
    checkpoint: the validation loss at the end of training, and the test `metric`."""
    fitted = run(["fit", *common, "--seed_everything", "0", "--model.learning_rate", lr, "--model.warmup", "0.06",
                  "--model.weight_decay", "0.01", "--trainer.max_epochs", "3", *extra])
    tested = run(["test", *common, "--ckpt_path", "best"])
    assert fitted is not None and tested is not None
    return float(fitted.trainer.callback_metrics["val/loss"]), float(tested.trainer.callback_metrics[metric])


def intent_run(tmp_path: Path, extra: tuple[str, ...] = ()) -> tuple[float, float]:
    """CLINC150's 150 in-scope intents (7,500 train / 3,000 val / 4,500 test), 3 epochs at lr 5e-5, batch 32,
    max_length 128, weight decay 0.01, warmup 6%, seed 0: the validation loss at the end of training, and the test
    accuracy of the best checkpoint."""
    raw = json.loads((shared_data("clinc150") / "data_small.json").read_text())
    files = {split: _write_csv(raw[key], tmp_path / f"{split}.csv")
             for split, key in (("train", "train"), ("validation", "val"), ("test", "test"))}
    common = ["--config", str(ROOT / "configs/quickstart.yaml"), "--trainer.default_root_dir", str(tmp_path / "run"),
              "--data.init_args.source.train", files["train"], "--data.init_args.source.validation",
              files["validation"], "--data.init_args.source.test", files["test"],
              "--data.init_args.source.predict", "null", "--data.init_args.batch_size", "32",
              "--data.init_args.max_length", "128", *QUIET]
    return fit_and_test(common, "5e-5", extra, "test/accuracy")


def qa_run(tmp_path: Path, extra: tuple[str, ...] = ()) -> tuple[float, float]:
    """XQuAD-en first half split by article (test: every 4th article; no context shared), the rest trained with
    lit_ft's default 10% validation hold-out, 3 epochs at lr 1e-4, batch 16, max_length 384, stride 128, weight
    decay 0.01, warmup 6%, seed 0: the validation loss at the end of training, and the test F1 of the best
    checkpoint."""
    squad = json.loads((shared_data("xquad_en_first_half") / "xquad.en.first_half.json").read_text())
    parts = {"train": [a for i, a in enumerate(squad["data"]) if i % 4 != 3],
             "test": [a for i, a in enumerate(squad["data"]) if i % 4 == 3]}
    for split, articles in parts.items():
        (tmp_path / f"{split}.json").write_text(json.dumps({"version": "1.1", "data": articles}))
    common = ["--config", str(ROOT / "configs/qa_squad.yaml"), "--trainer.default_root_dir", str(tmp_path / "run"),
              "--data.init_args.source.hub", "null", "--data.init_args.source.train", str(tmp_path / "train.json"),
              "--data.init_args.source.validation", "null", "--data.init_args.source.test",
              str(tmp_path / "test.json"), "--data.init_args.max_length", "384", "--data.init_args.stride", "128",
              "--data.init_args.batch_size", "16", *QUIET]
    return fit_and_test(common, "1e-4", extra, "test/f1")


@pytest.mark.slow
def test_minilm_learns_150_intents_at_the_defaults(tmp_path: Path) -> None:
    val_loss, accuracy = intent_run(tmp_path)
    assert val_loss < INTENT_VAL_LOSS, val_loss
    assert accuracy > INTENT_ACCURACY, accuracy


def first_words_f1(articles: list[dict[str, Any]], n_words: int) -> float:
    """Test F1 of answering every question with the first `n_words` words of its context (official v1.1 logic)."""
    preds = {qa["id"]: " ".join(p["context"].split()[:n_words])
             for a in articles for p in a["paragraphs"] for qa in p["qas"]}
    return official_v1_evaluate(articles, preds)["f1"]


@pytest.mark.slow
def test_minilm_learns_xquad_at_the_defaults(tmp_path: Path) -> None:
    val_loss, f1 = qa_run(tmp_path)
    test_articles = json.loads((tmp_path / "test.json").read_text())["data"]
    assert val_loss < QA_VAL_LOSS, val_loss
    # the best checkpoint is picked on 48 validation questions and can be an early one (docs/training.md): the held-out
    # bound only says the model learned something; the loss above says how far training got
    assert f1 > first_words_f1(test_articles, 3), f1


# Measured on a 2-core CPU (fp32, 2 threads), 2026-12-06. The final validation loss says how far training got and
# varies little across seeds: CLINC150 with the defaults (no clipping) 3.210-3.227 over 4 runs (this test's 3.226,
# the bench's seeds 0-2), with `--trainer.gradient_clip_val 1.0` (the default before classification declared its
# own) 3.421-3.437 (this test's 3.437); 3.374-3.385 with clipping and random batches. Held-out accuracy varies more
# with the seed (defaults 0.674-0.727, this test 0.692; clipping 0.648-0.692, this test 0.659), so its bound is
# loose: it catches a broken run, the loss catches slower learning.
INTENT_VAL_LOSS = 3.32
INTENT_ACCURACY = 0.64
# XQuAD (81 optimizer steps): this test's run ends at validation loss 3.83 (3.82 with clipping at 1.0: this small
# job does not tell the two apart, the intent test does), from 5.20 after 6 steps; it passed 3.95 a third of the
# way through training. Test F1 8.65 (best checkpoint), against 3.08 for answering with a context's first 3 words.
QA_VAL_LOSS = 3.95


if __name__ == "__main__":  # the measurements: python tests/test_convergence.py intent|qa [extra fit args...]
    import sys
    import tempfile

    measure = {"intent": intent_run, "qa": qa_run}[sys.argv[1]]
    print("RESULT", sys.argv[1:], measure(Path(tempfile.mkdtemp()), tuple(sys.argv[2:])))
