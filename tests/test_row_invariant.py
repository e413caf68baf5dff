"""One prediction record per input row, in input order, joined to its row by position: ids are data.

Every file below repeats an id and leaves one out. `lit_ft predict` and `lit_ft test` (no training: the tiny models'
random heads; `data.label_names` where the task needs them) must still write one record per row, each with its own
row's text and gold labels, in file order; the data line and the log line count 4 inputs for 4 rows and name the
repeated ids. Extractive QA gives two questions one id and contexts long enough for several windows each, which must
be merged per row (never across the rows sharing an id).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lit_ft.commands.cli import run
from lit_ft.errors import InternalError
from lit_ft.io import read_jsonl
from lit_ft.rows import ROW, check_records, in_row_order

DATA = {
    "classification": "lit_ft.tasks.classification.ClassificationData",
    "token_classification": "lit_ft.tasks.token_classification.TokenClassificationData",
    "question_answering": "lit_ft.tasks.question_answering.QuestionAnsweringData",
    "sft": "lit_ft.tasks.sft.SFTData",
}
IDS = ["a", "a", None, "b"]  # a repeated id and a missing one
NOTE = "id 'a' repeat; 1 row has no id"
Out = pytest.CaptureFixture[str]
Log = pytest.LogCaptureFixture


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def lit_ft(verb: str, task: str, backbone: Path, root: Path, split: str, file: str, *extra: str) -> None:
    """`lit_ft test|predict` on `file` with an untrained tiny model, the shipped progress display (it prints the
    data line), 2 inputs per eval batch (batches come in length order, not file order)."""
    run([verb, "--model.task", task, "--model.backbone", str(backbone), "--data.class_path", DATA[task],
         "--trainer.default_root_dir", str(root), "--trainer.logger", "false", "--trainer.accelerator", "cpu",
         "--data.init_args.eval_batch_size", "2", f"--data.init_args.source.{split}", file, *extra])


def assert_logged(capfd: Out, caplog: Log, split: str, what: str) -> None:
    """The data line (printed) counts the split's 4 rows and names the ids; the writer's line (logged) counts 4
    inputs and names them too."""
    out = capfd.readouterr().out
    assert f"data: {split} 4 ({NOTE}) rows" in out, out
    assert re.search(rf"wrote {what} for 4 inputs \({re.escape(NOTE)}\) to", caplog.text), caplog.text
    caplog.clear()


@pytest.mark.parametrize("verb", ["predict", "test"])
def test_classification_records_follow_rows(verb: str, tiny_bert: Path, tmp_path: Path,
                                            capfd: Out, caplog: Log) -> None:
    texts = ["the film was very very good and fun", "dull", "the plot was awful", "loved it so much"]
    labels = ["positive", "negative", "negative", "positive"]
    lines = ["id,text,label", *(f"{i or ''},{t},{label}" for i, t, label in zip(IDS, texts, labels, strict=True))]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    split = "predict" if verb == "predict" else "test"
    lit_ft(verb, "classification", tiny_bert, tmp_path / "run", split, str(tmp_path / "rows.csv"),
           "--data.init_args.label_names", "[negative,positive]")
    name = "predictions.jsonl" if verb == "predict" else "test_predictions.jsonl"
    records = read_jsonl(tmp_path / "run" / name)
    assert [(r["id"], r["text"], r["gold_label"]) for r in records] == list(zip(IDS, texts, labels, strict=True))
    assert all(r["label"] in ("negative", "positive") for r in records)
    assert_logged(capfd, caplog, split, "predictions" if verb == "predict" else "test predictions")


@pytest.mark.parametrize("verb", ["predict", "test"])
def test_a_limited_run_keeps_its_rows_in_order_with_their_own_inputs(verb: str, tiny_bert: Path, tmp_path: Path,
                                                                     caplog: Log) -> None:
    """`limit_*_batches` evaluates some rows only (one length-ordered batch of 2 here): the file holds those rows,
    in file order, each with its own text and label, and the log line says how many of how many."""
    texts = ["the film was very very good and fun", "dull", "the plot was awful", "loved it so much"]
    labels = ["positive", "negative", "negative", "positive"]
    (tmp_path / "rows.csv").write_text("\n".join(["text,label", *(f"{t},{lb}" for t, lb in zip(texts, labels,
                                                                                                 strict=True))]))
    split = "predict" if verb == "predict" else "test"
    lit_ft(verb, "classification", tiny_bert, tmp_path / "run", split, str(tmp_path / "rows.csv"),
           "--data.init_args.label_names", "[negative,positive]", f"--trainer.limit_{split}_batches", "1")
    records = read_jsonl(tmp_path / "run" / ("predictions.jsonl" if verb == "predict" else "test_predictions.jsonl"))
    assert len(records) == 2
    pairs = [(r["text"], r["gold_label"]) for r in records]
    assert pairs == [p for p in zip(texts, labels, strict=True) if p in pairs]  # file order, own labels
    assert f"for 2 of 4 inputs (trainer.limit_{split}_batches 1)" in caplog.text


@pytest.mark.parametrize("verb", ["predict", "test"])
def test_token_classification_records_follow_rows(verb: str, tagger_bert: Path, tmp_path: Path,
                                                  capfd: Out, caplog: Log) -> None:
    sentences = [["john", "visited", "paris", "and", "london", "in", "one", "story"], ["the", "cat"],
                 ["berlin"], ["john", "sat", "on", "the", "mat"]]
    tags = [["B-PER", "O", "B-LOC", "O", "B-LOC", "O", "O", "O"], ["O", "O"], ["B-LOC"],
            ["B-PER", "O", "O", "O", "O"]]
    rows = [{"id": i, "tokens": s, "tags": t} for i, s, t in zip(IDS, sentences, tags, strict=True)]
    split = "predict" if verb == "predict" else "test"
    file = write_jsonl(tmp_path / "rows.jsonl", rows)
    lit_ft(verb, "token_classification", tagger_bert, tmp_path / "run", split, file,
           "--data.init_args.label_names", "[O,B-PER,I-PER,B-LOC,I-LOC]")
    name = "predictions.jsonl" if verb == "predict" else "test_predictions.jsonl"
    records = read_jsonl(tmp_path / "run" / name)
    assert [(r["id"], r["tokens"], r["gold_tags"]) for r in records] == [
        (r["id"], r["tokens"], r["tags"]) for r in rows]
    assert [len(r["tags"]) for r in records] == [len(s) for s in sentences]
    assert_logged(capfd, caplog, split, "predictions" if verb == "predict" else "test predictions")


@pytest.mark.parametrize("verb", ["predict", "test"])
def test_question_answering_windows_merge_per_row(verb: str, tiny_bert: Path, tmp_path: Path,
                                                  capfd: Out, caplog: Log) -> None:
    long_a = " ".join(["the cat sat on the mat"] * 12) + " in paris"
    long_b = " ".join(["one two three four five six"] * 12) + " in berlin"
    contexts = [long_a, long_b, "john visited london", "the dog is red"]
    answers = ["paris", "berlin", "london", "red"]
    rows = [{"id": i, "question": f"where {n}", "context": c, "answers": {"text": [a], "answer_start": [c.index(a)]}}
            for n, (i, c, a) in enumerate(zip(IDS, contexts, answers, strict=True))]
    split = "predict" if verb == "predict" else "test"
    lit_ft(verb, "question_answering", tiny_bert, tmp_path / "run", split, write_jsonl(tmp_path / "rows.jsonl", rows),
           "--data.init_args.max_length", "48", "--data.init_args.stride", "16")
    name = "predictions.jsonl" if verb == "predict" else "test_predictions.jsonl"
    records = read_jsonl(tmp_path / "run" / name)
    assert [(r["id"], r["question"], r["context"], r["gold_answers"]) for r in records] == [
        (r["id"], r["question"], r["context"], r["answers"]["text"]) for r in rows]
    for record in records:  # each answer is cut from its own row's context, from that row's windows only
        assert all(c["text"] == record["context"][c["start"]:c["end"]] for c in record["n_best"])
        assert record["answer"] in record["context"]
    assert_logged(capfd, caplog, split, "predictions" if verb == "predict" else "test predictions")


def test_sft_records_and_samples_follow_rows(llama: Path, tmp_path: Path, capfd: Out, caplog: Log) -> None:
    prompts = ["what is the capital of france? tell me more about it", "hi", "the cat sat", "hello world, how"]
    rows = [{"id": i, "prompt": p, "completion": f" answer {n}"} for n, (i, p) in enumerate(zip(IDS, prompts,
                                                                                               strict=True))]
    file = write_jsonl(tmp_path / "rows.jsonl", rows)
    options = ("--model.task_options.max_new_tokens", "2", "--model.task_options.metrics", "[exact_match]",
               "--model.task_options.sample_rows", "3")
    lit_ft("predict", "sft", llama, tmp_path / "run", "predict", file, *options)
    records = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    assert [(r["id"], r["prompt"], r["reference"]) for r in records] == [
        (r["id"], r["prompt"], r["completion"]) for r in rows]
    assert_logged(capfd, caplog, "predict", "predictions")
    # the test split's sample table: its first rows, in file order, each with its own reference
    lit_ft("test", "sft", llama, tmp_path / "run", "test", file, *options)
    table = read_jsonl(next((tmp_path / "run" / "samples").glob("test_samples_step*.jsonl")))
    assert [(s["prompt"], s["reference"]) for s in table] == [(r["prompt"], r["completion"]) for r in rows[:3]]
    assert "test 4 (id 'a' repeat; 1 row has no id) rows" in capfd.readouterr().out


def test_writer_refuses_records_that_break_the_invariant() -> None:
    """The last line of defence: a missing, repeated or misplaced row is an internal error, not a file."""
    good = [{ROW: i, "id": "x"} for i in range(3)]
    check_records(good, 3, "predictions")
    for bad, rows in (good[:2], 3), ([good[0], good[2], good[1]], 3), ([*good, good[2]], 3), (good, 4):
        with pytest.raises(InternalError, match="not writing a file"):
            check_records(bad, rows, "predictions")
    # a run limited to some batches may leave rows out, but not repeat, reorder or invent one
    check_records([good[0], good[2]], 3, "predictions", complete=False)
    for bad in [good[2], good[0]], [good[0], good[0]], [*good, {ROW: 3}], [{ROW: None}]:
        with pytest.raises(InternalError, match="not writing a file"):
            check_records(bad, 3, "predictions", complete=False)
    # records gathered from several processes: a padded repeat of an input is dropped by row and feature index,
    # while rows that share an id (and a row's several windows) stay
    gathered = [{ROW: 1, "_feature": 1, "id": "a"}, {ROW: 0, "_feature": 0, "id": "a"},
                {ROW: 1, "_feature": 2, "id": "a"}, {ROW: 0, "_feature": 0, "id": "a"}]
    kept = in_row_order(gathered, repeats_allowed=True)
    assert [(r[ROW], r["_feature"]) for r in kept] == [(0, 0), (1, 1), (1, 2)]
