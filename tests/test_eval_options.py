"""Task options at validate/test/predict, monitor direction from the metrics, and fits that always end validated."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, tiny_args

from lit_ft.commands.cli import main
from lit_ft.errors import UserError
from lit_ft.generation.text_metrics import GenerationMetrics, text_metrics
from lit_ft.monitor import monitorable
from lit_ft.registry import register_task
from lit_ft.task import restored_options
from lit_ft.tasks.classification import ClassificationData, ClassificationTask
from lit_ft.tasks.question_answering import QuestionAnsweringTask
from lit_ft.tasks.seq2seq import Seq2SeqTask
from lit_ft.tasks.sft import SFTTask
from lit_ft.tasks.token_classification import TokenClassificationTask

QUICKSTART = "configs/quickstart.yaml"
STSB = "configs/regression_stsb.yaml"
EARLY_STOPPING = "configs/callbacks/early_stopping.yaml"


class HeadData(ClassificationData):
    task_name = "headed_classification"


class HeadTask(ClassificationTask):
    """Classification with a task option that (as far as the contract goes) shapes the model."""

    name = "headed_classification"
    datamodule = HeadData
    model_options = frozenset({"head_size"})

    def __init__(self, info: dict[str, Any], head_size: int = 4, **options: Any) -> None:
        super().__init__(info, **options)
        self.head_size = head_size


# ---- task options given at validate / test / predict ----------------------------------------------------
def test_restored_options_merge_key_by_key_and_guard_model_options() -> None:
    saved = {"threshold": 0.5, "monitor": "f1", "head_size": 8}
    assert restored_options(HeadTask, saved, {"threshold": 0.2}) == {"threshold": 0.2, "monitor": "f1", "head_size": 8}
    assert restored_options(HeadTask, saved, {"head_size": 8}) == saved  # the trained value is fine
    assert restored_options(HeadTask, None, None) == {}
    with pytest.raises(UserError, match=r"model.task_options.head_size is 16 but the checkpoint was trained with 8"):
        restored_options(HeadTask, saved, {"head_size": 16})
    # not saved: trained with the default (4)
    assert restored_options(HeadTask, {}, {"head_size": 4}) == {"head_size": 4}
    with pytest.raises(UserError, match="head_size"):
        restored_options(HeadTask, {}, {"head_size": 5})
    # the built-in tasks declare no shape-defining options: every one of theirs may change after training
    for task in (ClassificationTask, TokenClassificationTask, QuestionAnsweringTask, Seq2SeqTask, SFTTask):
        assert task.model_options == frozenset()


def _multi_label_files(tmp: Path) -> dict[str, str]:
    path = tmp / "tags.csv"
    rows = [("good fun film", "good,fun"), ("bad dull plot", "bad"), ("good music", "good"), ("dull fun", "fun")] * 6
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return {"train": str(path), "validation": str(path), "test": str(path), "predict": str(path)}


def test_options_given_with_ckpt_path_apply_and_model_options_must_match(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_task(HeadTask, "test module")
    args = [*tiny_args(tmp_path / "run", tiny_bert, _multi_label_files(tmp_path)),
            "--model.task", "headed_classification", "--data.class_path", f"{__name__}.HeadData",
            "--data.init_args.problem_type", "multi_label", "--data.init_args.batch_size", "8"]
    recipe = ["--config", QUICKSTART]
    fitted = cli("fit", *recipe, *args, "--trainer.max_epochs", "1", "--model.task_options",
                 '{"threshold": 0.5, "head_size": 8, "monitor": "f1_macro"}')
    assert fitted.model.hparams["task_options"] == {"threshold": 0.5, "head_size": 8, "monitor": "f1_macro"}
    # one key on the command line: it applies (scoring and prediction), the other saved options stay
    tested = cli("test", *recipe, *args, "--ckpt_path", "best", "--model.task_options.threshold", "0.2")
    assert tested.model.hparams["task_options"] == {"threshold": 0.2, "head_size": 8, "monitor": "f1_macro"}
    assert tested.model.plugin.threshold == 0.2 and tested.model.plugin.head_size == 8
    assert tested.model.metrics["test"]["f1"].threshold == 0.2
    cli("predict", *recipe, *args, "--ckpt_path", "best", "--model.task_options.threshold", "0.0")
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert records and all(sorted(r["labels"]) == sorted(r["probabilities"]) for r in records)  # every p > 0
    # a shape-defining option that differs from the checkpoint's: one line naming it, exit 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["validate", *recipe, *args, "--ckpt_path", "best", "--model.task_options.head_size", "16"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lit_ft: error: model.task_options.head_size is 16 but the checkpoint was trained")


# ---- monitor direction: the metric's own ------------------------------------------------------------------
def test_monitor_direction_comes_from_each_metric() -> None:
    classes = {"problem_type": "single_label", "label_names": ["a", "b"]}
    cases: list[tuple[Any, dict[str, str]]] = [
        (ClassificationTask(classes), {"accuracy": "max", "f1": "max", "precision": "max", "f1/a": "max"}),
        (ClassificationTask({**classes, "problem_type": "multi_label"}), {"f1": "max", "exact_match": "max"}),
        (ClassificationTask({"problem_type": "regression", "label_names": ["score"]}),
         {"mse": "min", "pearson": "max", "spearman": "max"}),
        (TokenClassificationTask({"label_names": ["O", "B-PER", "I-PER"], "tag_scheme": "IOB2"}),
         {"f1": "max", "token_accuracy": "max", "precision": "max", "f1/PER": "max"}),
        (QuestionAnsweringTask({}), {"f1": "max", "exact_match": "max"}),
        (Seq2SeqTask({}, metrics=["rougeL", "bleu", "exact_match"]), {"rougeL": "max", "bleu": "max"}),
        (SFTTask({}, metrics=["rougeL", "pass@1"]), {"perplexity": "min", "pass@1": "max", "rougeL": "max"}),
    ]
    for task, expected in cases:
        found = monitorable(task.metrics())
        assert found["loss"] == "min"
        assert {k: found[k] for k in expected} == expected, type(task).__name__
        assert task.monitor() in found


def _regression_files(tmp: Path) -> dict[str, str]:
    path = tmp / "sts.csv"
    pairs = [("good fun film", 4.5), ("bad dull plot", 0.5), ("good music", 3.5), ("dull boring", 1.0)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(pairs * 6)
    return {"train": str(path), "validation": str(path), "test": str(path)}


def test_regression_recipe_keeps_the_highest_pearson(tmp_path: Path, tiny_bert: Path) -> None:
    args = [*tiny_args(tmp_path / "run", tiny_bert, _regression_files(tmp_path)),
            "--data.init_args.text_pair_column", "null", "--data.init_args.batch_size", "4"]
    result = cli("fit", "--config", STSB, "--config", EARLY_STOPPING, *args, "--trainer.max_steps", "3",
                 "--trainer.val_check_interval", "1", "--export.enabled", "false")
    ckpt = result.trainer.checkpoint_callback
    stopper = result.trainer.early_stopping_callback
    assert (ckpt.monitor, ckpt.mode) == ("val/pearson", "max")
    assert (stopper.monitor, stopper.mode) == ("val/pearson", "max") and stopper.min_delta >= 0
    pointer = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert pointer["monitor"] == "val/pearson" and pointer["mode"] == "max"


def test_unknown_monitor_lists_the_valid_names(tmp_path: Path, tiny_bert: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = [*tiny_args(tmp_path / "run", tiny_bert, _regression_files(tmp_path)),
            "--data.init_args.text_pair_column", "null"]
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", STSB, *args, "--model.task_options.monitor", "pearsonr", "--trainer.max_steps", "1"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "lit_ft: error: monitor 'pearsonr' is not a metric of task 'classification'; choose from "
        "['loss', 'mse', 'pearson', 'spearman'] (set model.task_options.monitor, or checkpoint.monitor as val/<name>)"
    )


def test_explicit_checkpoint_monitor_gets_the_metric_direction(tmp_path: Path, tiny_bert: Path,
                                                               sentiment_files: dict[str, str]) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    result = cli("fit", "--config", QUICKSTART, *args, "--trainer.max_steps", "1", "--checkpoint.monitor", "val/f1",
                 "--export.enabled", "false")
    assert (result.trainer.checkpoint_callback.monitor, result.trainer.checkpoint_callback.mode) == ("val/f1", "max")


# ---- every fit ends validated, with a scored best checkpoint ----------------------------------------------
@pytest.mark.parametrize("schedule", [
    ["--trainer.max_steps", "3"],  # shorter than one epoch: validation at the epoch end never comes
    ["--trainer.max_steps", "3", "--trainer.val_check_interval", "2"],  # the last validation is before the end
    ["--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "2", "--trainer.limit_train_batches", "2"],
], ids=["max_steps", "val_check_interval", "check_val_every_n_epoch"])
def test_fit_ends_validated_with_a_best_checkpoint(schedule: list[str], tmp_path: Path, tiny_bert: Path,
                                                   sentiment_files: dict[str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    result = cli("fit", "--config", QUICKSTART, *args, *schedule, "--data.init_args.batch_size", "4",
                 "--trainer.num_sanity_val_steps", "0")
    trainer = result.trainer
    ckpt = trainer.checkpoint_callback
    assert trainer.global_step in (3, 6)
    assert ckpt.last_validated_step == trainer.global_step
    assert "val/accuracy" in trainer.callback_metrics and ckpt.best_model_score is not None
    pointer = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert (tmp_path / "run" / "checkpoints" / pointer["best"]).is_file()  # relative to best.json
    assert pointer["score"] == pytest.approx(float(ckpt.best_model_score))
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if line.startswith("lit_ft: validating the final model")]
    assert said == [said[0]] and f"at step {trainer.global_step}" in said[0]
    tested = cli("test", "--config", QUICKSTART, *args, "--ckpt_path", "best")
    assert "test/accuracy" in tested.trainer.callback_metrics


def test_fit_that_validated_last_says_nothing_more(tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    result = cli("fit", "--config", QUICKSTART, *args, "--trainer.max_epochs", "1",
                 "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2", "--export.enabled", "false")
    assert result.trainer.checkpoint_callback.last_validated_step == result.trainer.global_step == 2
    assert "validating the final model" not in capsys.readouterr().out


# ---- generation samples belong to their epoch --------------------------------------------------------------
def test_generation_samples_are_cleared_with_the_metrics() -> None:
    metrics = text_metrics(["exact_match"])
    assert isinstance(metrics, GenerationMetrics)
    metrics.keep([{"prediction": str(i)} for i in range(3)], limit=2)
    metrics.keep([{"prediction": "late"}], limit=2)
    assert [r["prediction"] for r in metrics.samples] == ["0", "1"]
    metrics.reset()
    assert metrics.samples == []
