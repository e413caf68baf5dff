"""Every classification metric lit_ft reports equals scikit-learn / scipy on the same predictions."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, tiny_args
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, precision_score, recall_score

from lit_ft.io import read_jsonl

QUICKSTART = "configs/quickstart.yaml"


def _write(path: Path, header: list[str], rows: list[tuple]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _test_then_predict(tmp_path: Path, args: list[str], train: bool = False) -> tuple[dict[str, float], list[dict]]:
    if train:  # a briefly trained tiny model makes varied, imperfect class predictions
        cli("fit", "--config", QUICKSTART, *args, "--trainer.max_epochs", "12", "--model.learning_rate", "5e-3",
            "--export.enabled", "false")
        args = [*args, "--ckpt_path", "best"]
    tested = cli("test", "--config", QUICKSTART, *args)
    metrics = {k: float(v) for k, v in tested.trainer.callback_metrics.items()}
    cli("predict", "--config", QUICKSTART, *args)
    return metrics, read_jsonl(tmp_path / "run" / "predictions.jsonl")


def test_single_label_metrics_equal_sklearn(tmp_path: Path, tiny_bert: Path) -> None:
    rng = random.Random(3)
    cue = {"good": "a", "bad": "b", "dull": "c"}
    rows = []
    for _ in range(90):
        word = rng.choice(list(cue))
        noisy = cue[word] if rng.random() < 0.7 else rng.choice("abc")  # learnable, but not perfectly
        rows.append((" ".join(rng.choices(["film", "plot", "the", "music"], k=rng.randint(1, 5)) + [word]), noisy))
    data = _write(tmp_path / "eval.csv", ["text", "label"], rows)
    files = {"train": data, "validation": data, "test": data, "predict": data}
    args = tiny_args(tmp_path / "run", tiny_bert, files) + ["--data.init_args.eval_batch_size", "7"]
    metrics, predictions = _test_then_predict(tmp_path, args, train=True)
    gold = [label for _, label in rows]
    pred = [p["label"] for p in predictions]
    assert len(set(pred)) > 1, "degenerate predictions make a weak test"
    names = ["a", "b", "c"]
    assert metrics["test/accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=1e-6)
    for ours, theirs in [("precision", precision_score), ("recall", recall_score), ("f1", f1_score)]:
        expected = theirs(gold, pred, labels=names, average="macro", zero_division=0)
        assert metrics[f"test/{ours}"] == pytest.approx(expected, abs=1e-6)
    per_class = f1_score(gold, pred, labels=names, average=None, zero_division=0)
    for name, value in zip(names, per_class, strict=True):
        assert metrics[f"test/f1/{name}"] == pytest.approx(value, abs=1e-6)


def test_multi_label_metrics_equal_sklearn(tmp_path: Path, tiny_bert: Path) -> None:
    rng = random.Random(4)
    names = ["action", "comedy", "drama"]
    rows = []
    for _ in range(60):
        labels = [n for n in names if rng.random() < 0.5] or [rng.choice(names)]
        rows.append((" ".join(rng.choices(["fun", "sad", "fast", "the", "plot"], k=4)), json.dumps(labels)))
    data = _write(tmp_path / "ml.csv", ["text", "label"], [(t, ",".join(json.loads(lab))) for t, lab in rows])
    files = {"train": data, "validation": data, "test": data, "predict": data}
    args = tiny_args(tmp_path / "run", tiny_bert, files) + [
        "--data.init_args.problem_type", "multi_label", "--model.task_options", '{"threshold": 0.5}']
    metrics, predictions = _test_then_predict(tmp_path, args)
    gold = np.array([[n in json.loads(lab) for n in names] for _, lab in rows], dtype=int)
    pred = np.array([[n in p["labels"] for n in names] for p in predictions], dtype=int)
    assert metrics["test/f1"] == pytest.approx(f1_score(gold, pred, average="micro", zero_division=0), abs=1e-6)
    assert metrics["test/f1_macro"] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0), abs=1e-6)
    assert metrics["test/exact_match"] == pytest.approx(accuracy_score(gold, pred), abs=1e-6)


def test_regression_metrics_equal_scipy(tmp_path: Path, tiny_bert: Path) -> None:
    rng = random.Random(5)
    words = ["cat", "dog", "sat", "mat", "red"]
    rows = [(" ".join(rng.choices(words, k=rng.randint(1, 6))), round(rng.uniform(0, 5), 2)) for _ in range(50)]
    data = _write(tmp_path / "reg.csv", ["text", "label"], rows)
    files = {"train": data, "validation": data, "test": data, "predict": data}
    args = tiny_args(tmp_path / "run", tiny_bert, files) + ["--data.init_args.problem_type", "regression"]
    metrics, predictions = _test_then_predict(tmp_path, args)
    gold = np.array([y for _, y in rows])
    pred = np.array([p["score"] for p in predictions])
    assert metrics["test/mse"] == pytest.approx(mean_squared_error(gold, pred), rel=1e-4)
    assert metrics["test/pearson"] == pytest.approx(pearsonr(gold, pred)[0], abs=1e-4)
    assert metrics["test/spearman"] == pytest.approx(spearmanr(gold, pred)[0], abs=1e-4)
