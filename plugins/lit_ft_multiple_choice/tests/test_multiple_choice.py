"""The multiple-choice plugin end to end: registration, batching, metrics, fit/test/predict, local-module use."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lit_ft import UserError, available_tasks, monitorable
from lit_ft.testing import run
from sklearn.metrics import accuracy_score
from transformers import AutoModelForMultipleChoice, AutoTokenizer

from lit_ft_multiple_choice import MultipleChoiceData, MultipleChoiceTask

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "swag.yaml")
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
         "false", "--trainer.accelerator", "cpu"]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def cli_args(sub: str, backbone: Path, files: dict[str, str], root: Path, *extra: str) -> list[str]:
    """CLI arguments running the SWAG recipe on local `files` (splits not given are set to null)."""
    splits = ("train", "validation", "test", "predict")
    sources = [a for split in splits for a in (f"--data.init_args.source.{split}", files.get(split, "null"))]
    return [sub, "--config", CONFIG, "--model.backbone", str(backbone), "--data.init_args.source.hub", "null",
            *sources, "--data.init_args.batch_size", "8", "--trainer.default_root_dir", str(root), *QUIET, *extra]


# ---- registration ----------------------------------------------------------------------------------
def test_installed_package_registers_the_task() -> None:
    entry = available_tasks()["multiple_choice"]
    assert entry.task is MultipleChoiceTask
    assert entry.task.datamodule is MultipleChoiceData
    assert entry.source == "package lit-ft-multiple-choice"


def test_lit_ft_tasks_command_lists_it() -> None:
    script = shutil.which("lit_ft", path=str(Path(sys.executable).parent))
    cmd = [script, "tasks"] if script else [sys.executable, "-m", "lit_ft", "tasks"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("multiple_choice "))
    assert "package lit-ft-multiple-choice" in line
    assert line.split()[-1] == "lit_ft_multiple_choice:MultipleChoiceTask"  # the entry point, listed without import


# ---- data ------------------------------------------------------------------------------------------
def test_collate_pads_every_choice_to_batch_shape(tiny_bert_dir: Path, swag_files: dict[str, str]) -> None:
    from lit_ft import DataSource

    data = MultipleChoiceData(source=DataSource(train=swag_files["train"], validation=swag_files["validation"]),
                              tokenizer=str(tiny_bert_dir), batch_size=4)
    data.setup("fit")
    assert data.info == {"num_choices": 4}
    batch = next(iter(data.train_dataloader()))
    inputs = batch["inputs"]
    b, k, seq = inputs["input_ids"].shape
    assert (b, k) == (4, 4) and inputs["attention_mask"].shape == (b, k, seq)
    assert inputs["attention_mask"].sum(-1).max() == seq  # padded to the longest choice of the batch, no more
    assert (inputs["input_ids"][inputs["attention_mask"] == 0] == data.tokenizer.pad_token_id).all()
    rows = {r["id"]: r for r in data.raw("train")}
    row = rows[batch["id"][0]]
    assert inputs["labels"][0].item() == row["label"]
    assert batch["endings"][0] == [row[f"ending{c}"] for c in range(4)]
    text = data.tokenizer.decode(inputs["input_ids"][0, 2][inputs["attention_mask"][0, 2].bool()])
    assert text == data.tokenizer.decode(data.tokenizer(row["sent1"], f"{row['sent2']} {row['ending2']}")["input_ids"])


def test_column_and_label_errors_name_the_fix(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from lit_ft import DataSource

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sent1": "a man.", "sent2": "he", "ending0": "runs.", "ending1": "sits.", "label": 5}))

    def setup(**columns: Any) -> None:
        source = DataSource(train=str(bad), validation=str(bad))
        MultipleChoiceData(source=source, tokenizer=str(tiny_bert_dir), **columns).setup("fit")

    with pytest.raises(ValueError, match=r"label 5 of row '0' in file '.*bad.jsonl'.*not an ending index 0..1"):
        setup()
    with pytest.raises(UserError, match=r"context_column 'ctx' not found.*set data.context_column"):
        setup(context_column="ctx")
    with pytest.raises(UserError, match=r"no ending columns 'end_0', 'end_1'.*set data.ending_prefix"):
        setup(ending_prefix="end_")
    with pytest.raises(UserError, match=r"ending_columns 'ending2' not found.*set data.ending_columns"):
        setup(ending_columns=["ending0", "ending2"])


# ---- metrics ---------------------------------------------------------------------------------------
def test_accuracy_equals_sklearn_over_several_batches() -> None:
    task = MultipleChoiceTask({"num_choices": 4})
    metrics = task.metrics()
    gen = torch.Generator().manual_seed(0)
    all_logits, all_labels = [], []
    for size in (5, 3, 8):
        logits, labels = torch.randn(size, 4, generator=gen), torch.randint(0, 4, (size,), generator=gen)
        outputs = type("Out", (), {"logits": logits})()
        task.update_metrics(metrics, torch.nn.Identity(), {"inputs": {"labels": labels}, "id": []}, outputs)
        all_logits.append(logits.numpy())
        all_labels.append(labels.numpy())
    expected = accuracy_score(np.concatenate(all_labels), np.concatenate(all_logits).argmax(-1))
    assert metrics.compute()["accuracy"].item() == pytest.approx(expected, abs=1e-7)
    assert task.monitor() == "accuracy"
    assert monitorable(metrics) == {"accuracy": "max", "loss": "min"}


# ---- the recipe end to end -------------------------------------------------------------------------
def test_swag_recipe_fit_test_predict(tiny_bert_dir: Path, swag_files: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "run"
    cli = run(cli_args("fit", tiny_bert_dir, swag_files, root, "--trainer.max_steps", "2"))
    assert cli is not None and cli.trainer.global_step == 2
    assert cli.model.hparams.info == {"num_choices": 4} and "val/accuracy" in cli.trainer.callback_metrics
    export = root / "export"
    assert json.loads((export / "lit_ft.json").read_text())["task"] == "multiple_choice"

    # test and predict on the same labelled file, from the best checkpoint: the logged accuracy must equal
    # sklearn's on the written predictions
    same = {"test": swag_files["test"], "predict": swag_files["test"]}
    test = run(cli_args("test", tiny_bert_dir, same, root, "--ckpt_path", "best"))
    assert test is not None
    logged = test.trainer.callback_metrics["test/accuracy"].item()
    pred = run(cli_args("predict", tiny_bert_dir, same, root, "--ckpt_path", "best"))
    assert pred is not None
    records, rows = read_jsonl(root / "predictions.jsonl"), read_jsonl(swag_files["test"])
    assert [r["id"] for r in records] == [str(i) for i in range(len(rows))]
    assert logged == pytest.approx(accuracy_score([r["label"] for r in rows], [p["label"] for p in records]))
    for rec, row in zip(records, rows, strict=True):
        assert rec["ending"] == row[f"ending{rec['label']}"]
        assert len(rec["probabilities"]) == 4 and sum(rec["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert int(np.argmax(rec["probabilities"])) == rec["label"]
    # the export (same best weights) scores the choices exactly like the predictions, with plain transformers
    tokenizer, model = AutoTokenizer.from_pretrained(export), AutoModelForMultipleChoice.from_pretrained(export)
    row = rows[0]
    enc = tokenizer([row["sent1"]] * 4, [f"{row['sent2']} {row[f'ending{c}']}" for c in range(4)],
                    padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model.eval()(**{k: v.unsqueeze(0) for k, v in enc.items()}).logits.softmax(-1)[0]
    assert probs.tolist() == pytest.approx(records[0]["probabilities"], abs=1e-5)

    # predict on a file without labels
    run(cli_args("predict", tiny_bert_dir, {"predict": swag_files["predict"]}, root, "--ckpt_path", "best"))
    assert len(read_jsonl(root / "predictions.jsonl")) == len(read_jsonl(swag_files["predict"]))


# ---- the same plugin as a local module -------------------------------------------------------------
LOCAL_PLUGIN = '''
from lit_ft_multiple_choice import MultipleChoiceData, MultipleChoiceTask


class QuizData(MultipleChoiceData):
    task_name = "quiz"


class QuizTask(MultipleChoiceTask):
    name = "quiz"
    datamodule = QuizData
'''


def test_local_module_plugin(tiny_bert_dir: Path, swag_files: dict[str, str], tmp_path: Path) -> None:
    plugin = tmp_path / "quiz_plugin.py"
    plugin.write_text(LOCAL_PLUGIN)
    files = {}
    for split in ("train", "validation"):  # another layout: a question and a list column of choices
        rows = [{"question": r["sent1"], "choices": [r[f"ending{c}"] for c in range(4)], "answer": r["label"]}
                for r in read_jsonl(swag_files[split])]
        files[split] = str(tmp_path / f"quiz_{split}.json")
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = cli_args("fit", tiny_bert_dir, files, tmp_path / "run", "--plugins", str(plugin), "--model.task", "quiz",
                    "--data.class_path", "lit_ft_plugin_quiz_plugin.QuizData", "--data.init_args.context_column",
                    "null", "--data.init_args.question_column", "question", "--data.init_args.endings_column",
                    "choices", "--data.init_args.label_column", "answer", "--trainer.max_steps", "2")
    cli = run(args)
    assert cli is not None and cli.trainer.global_step == 2
    assert type(cli.model.plugin).__name__ == "QuizTask"
    assert available_tasks()["quiz"].source == f"local module {plugin}"
    assert cli.datamodule.info == {"num_choices": 4}
    first = cli.datamodule.features("train")[0]
    assert len(first["input_ids"]) == 4 and first["input_ids"][0][0] == cli.datamodule.tokenizer.cls_token_id


# ---- real data (slow) ------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_swag_sample_with_minilm(shared_sample: Path, tmp_path: Path) -> None:
    root = tmp_path / "run"
    files = {"train": str(shared_sample), "validation": str(shared_sample), "predict": str(shared_sample)}
    backbone = Path("sentence-transformers/all-MiniLM-L6-v2")
    cli = run(cli_args("fit", backbone, files, root, "--trainer.max_steps", "2", "--export.enabled", "false",
                   "--data.init_args.max_length", "64"))
    assert cli is not None and cli.trainer.global_step == 2
    assert 0.0 <= cli.trainer.callback_metrics["val/accuracy"].item() <= 1.0
    run(cli_args("predict", backbone, files, root, "--ckpt_path", "best"))
    records, rows = read_jsonl(root / "predictions.jsonl"), read_jsonl(shared_sample)
    assert len(records) == len(rows) == 10
    for rec, row in zip(records, rows, strict=True):
        assert rec["ending"] == row[f"ending{rec['label']}"]
