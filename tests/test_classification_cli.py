"""Classification end to end through the CLI: fit, validate, test, predict, best-checkpoint lookup, export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import QUIET, cli, tiny_args
from transformers import pipeline

from lit_ft.errors import UserError
from lit_ft.io import read_jsonl

QUICKSTART = "configs/quickstart.yaml"


@pytest.fixture
def trained(tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str]) -> tuple[Path, list[str]]:
    files = {**sentiment_files, "predict": sentiment_files["test"]}
    args = tiny_args(tmp_path / "run", tiny_bert, files)
    result = cli("fit", "--config", QUICKSTART, *args, "--trainer.max_epochs", "2", "--model.learning_rate", "1e-3")
    assert result.trainer.checkpoint_callback.best_model_path
    return tmp_path / "run", args


def test_fit_writes_checkpoint_pointer_and_export(trained: tuple[Path, list[str]]) -> None:
    root, _ = trained
    pointer = json.loads((root / "checkpoints" / "best.json").read_text())
    assert (root / "checkpoints" / pointer["best"]).is_file() and pointer["monitor"] == "val/accuracy"  # relative
    assert (root / "export" / "config.json").is_file() and (root / "export" / "lit_ft.json").is_file()
    config = json.loads((root / "export" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_test_and_predict_from_best_in_a_new_process(trained: tuple[Path, list[str]], sentiment_files: dict) -> None:
    root, args = trained
    tested = cli("test", "--config", QUICKSTART, *args, "--ckpt_path", "best")
    metrics = tested.trainer.callback_metrics
    assert {"test/accuracy", "test/f1", "test/precision", "test/recall", "test/f1/positive"} <= set(metrics)
    cli("predict", "--config", QUICKSTART, *args, "--ckpt_path", "best")
    predictions = read_jsonl(root / "predictions.jsonl")
    n_rows = len(Path(sentiment_files["test"]).read_text().splitlines()) - 1
    assert [p["id"] for p in predictions] == [str(i) for i in range(n_rows)]  # every input, in input order
    for p in predictions:
        assert p["label"] in ("negative", "positive")
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-5
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)


def test_export_pipeline_predicts_what_lit_ft_predicts(trained: tuple[Path, list[str]], sentiment_files: dict) -> None:
    root, args = trained
    cli("predict", "--config", QUICKSTART, *args, "--ckpt_path", "best")
    predictions = read_jsonl(root / "predictions.jsonl")
    texts = [line.rsplit(",", 1)[0] for line in Path(sentiment_files["test"]).read_text().splitlines()[1:]]
    classifier = pipeline("text-classification", model=str(root / "export"), device=-1)
    outputs = classifier(texts, top_k=None)
    for text_out, mine in zip(outputs, predictions, strict=True):
        scores = {o["label"]: o["score"] for o in text_out}
        assert max(scores, key=scores.get) == mine["label"]
        for name, prob in mine["probabilities"].items():
            assert scores[name] == pytest.approx(prob, abs=1e-4)


def test_validate_matches_fit_best_score(trained: tuple[Path, list[str]]) -> None:
    root, args = trained
    pointer = json.loads((root / "checkpoints" / "best.json").read_text())
    validated = cli("validate", "--config", QUICKSTART, *args, "--ckpt_path", "best")
    assert float(validated.trainer.callback_metrics["val/accuracy"]) == pytest.approx(pointer["score"], abs=1e-6)


# `lit_ft export RUN_DIR` loading in Transformers with the best weights: tests/test_conformance.py (the kit)


def test_print_config_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli("fit", "--config", QUICKSTART, "--print_config")
    printed = capsys.readouterr().out
    assert "lit_ft.tasks.classification.ClassificationData" in printed and "learning_rate: 0.0001" in printed
    with pytest.raises(SystemExit):
        cli("fit", "--help")
    shown = capsys.readouterr().out
    assert "Peak learning rate" in shown and "--model.freeze_layers" in shown


def test_tasks_verb_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    from lit_ft.commands.cli import run

    run(["tasks"])
    out = capsys.readouterr().out
    assert "classification" in out and "built-in" in out


def test_real_subprocess_fit(tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str]) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    cmd = [sys.executable, "-m", "lit_ft", "fit", "--config", QUICKSTART, *args, "--trainer.max_steps", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lit_ft: training finished" in done.stdout
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()


def test_missing_column_names_file_column_and_fix(tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    with pytest.raises(UserError, match=r"text_column .sentence. not found in file .*train.csv.*set data.text_column"):
        cli("fit", "--config", QUICKSTART, *args, "--data.init_args.text_column", "sentence")


def test_unknown_label_is_reported_with_row_and_fix(tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    with pytest.raises(ValueError, match=r"label \['negative'\] of row '\d+' .* add it to data.label_names"):
        cli("fit", "--config", QUICKSTART, *args, "--data.init_args.label_names", "[positive]")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_file_is_named(tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    files = {**sentiment_files, "train": str(tmp_path / "nope.csv")}
    with pytest.raises(UserError, match=r"data.source.train: '.*nope.csv' does not exist"):
        cli("fit", "--config", QUICKSTART, *tiny_args(tmp_path / "run", tiny_bert, files), *QUIET)


def test_predict_needs_only_the_checkpoint_and_the_inputs(trained: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, args = trained
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"text": "the film was good", "id": "a"}\n{"text": "awful plot", "id": "b"}\n')
    no_labels = [*args, "--data.init_args.source.train", "null", "--data.init_args.source.validation", "null",
                 "--data.init_args.source.test", "null", "--data.init_args.source.predict", str(inputs)]
    cli("predict", "--config", QUICKSTART, *no_labels, "--ckpt_path", "best")
    predictions = read_jsonl(root / "predictions.jsonl")
    assert [p["id"] for p in predictions] == ["a", "b"]
    assert set(predictions[0]["probabilities"]) == {"negative", "positive"}
    lines = tmp_path / "inputs.txt"  # plain text: one input per line, numbered from 0; blank lines skipped
    lines.write_text("the film was good\n\nawful plot\nthe music was fun\n")
    cli("predict", "--config", QUICKSTART, *no_labels, "--data.init_args.source.predict", str(lines),
        "--ckpt_path", "best")
    from_text = read_jsonl(root / "predictions.jsonl")
    assert [p["id"] for p in from_text] == ["0", "1", "2"]
    assert from_text[0]["probabilities"] == pytest.approx(predictions[0]["probabilities"], abs=1e-5)
