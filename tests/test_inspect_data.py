"""`lit_ft inspect-data` on every built-in task and the example plugin, each through its shipped recipe with a tiny
backbone and small files written here; counts are checked against independent computations on those files."""

from __future__ import annotations

import collections
import csv
import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from builders import SHARED_DATA, shared_data, write_sentiment_csvs
from sft_fixtures import write_jsonl
from stand_ins import RECIPES, overlays
from test_question_answering import row as qa_row
from test_seq2seq import make_tiny_t5, write_summaries
from test_token_classification import write_conll
from transformers import AutoTokenizer

from lit_ft.commands.cli import OVERLAY_ENV, main
from lit_ft.commands.text_histogram import length_histogram

pytestmark = pytest.mark.usefixtures("single_thread")
PLUGIN_RECIPE = "plugins/lit_ft_multiple_choice/configs/swag.yaml"


def inspect(capsys: pytest.CaptureFixture[str], *args: Any) -> str:
    capsys.readouterr()
    main(["inspect-data", *map(str, args)])
    return capsys.readouterr().out


def section(out: str, title: str) -> list[str]:
    """The lines of one report section (from its title line to the next blank line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def parse_counts(text: str) -> dict[str, int]:
    """`negative 41, positive 39` -> {"negative": 41, "positive": 39}."""
    return {name: int(n) for name, n in (part.rsplit(" ", 1) for part in text.split(", "))}


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def files_args(files: dict[str, str]) -> list[str]:
    args = ["--data.init_args.source.hub", "null"]
    for split in ("train", "validation", "test", "predict"):
        args += [f"--data.init_args.source.{split}", files.get(split, "null")]
    return args


def test_classification_counts_lengths_duplicates_and_leakage(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                              tmp_path: Path) -> None:
    files = write_sentiment_csvs(tmp_path, n_train=80, n_eval=40)
    with open(files["validation"], "a", newline="") as f:  # three training rows leak into validation
        csv.writer(f).writerows([r["text"], r["label"]] for r in read_csv(files["train"])[5:8])
    out = inspect(capsys, "--config", "configs/quickstart.yaml", "--model.backbone", tiny_bert, *files_args(files),
                  "--data.init_args.max_length", 9, "--n", 2)
    rows = {s: read_csv(files[s]) for s in ("train", "validation", "test")}
    assert "rows: train 80, validation 43, test 40" in out
    shown = {line.split()[0]: parse_counts(line.split(None, 1)[1]) for line in section(out, "labels:")[1:]}
    assert shown == {s: dict(collections.Counter(r["label"] for r in rows[s])) for s in rows}
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    full = [len(tok(r["text"])["input_ids"]) for r in rows["train"]]
    cut = [min(n, 9) for n in full]
    lengths = section(out, "token lengths")
    assert lengths[1] == (f"  train: 80 inputs, min {min(cut)}, median {statistics.median(cut):g}, max {max(cut)}; "
                          f"{sum(n >= 9 for n in full)} truncated (data.max_length 9)")
    assert lengths[2:2 + len(length_histogram(cut, 9))] == [f"    {h}" for h in length_histogram(cut, 9)]
    texts = {s: [r["text"] for r in rows[s]] for s in rows}
    dupes = section(out, "duplicates")
    assert f"  train: {80 - len(set(texts['train']))} of 80 rows repeat an earlier row of the split" in dupes
    shared = [str(i) for i, t in enumerate(texts["validation"]) if t in set(texts["train"])]
    assert len(shared) >= 3
    more = ", ..." if len(shared) > 5 else ""
    assert f"  validation rows also in train: {len(shared)} of 43 (ids {', '.join(shared[:5])}{more})" in dupes
    examples = section(out, "examples")
    first = rows["train"][0]
    assert examples[1].startswith("  id 0 (")
    assert examples[2] == f"    input: {tok.decode(tok(first['text'], truncation=True, max_length=9)['input_ids'])}"
    assert examples[3] == f"    label: {first['label']}"


def test_labels_only_in_validation_are_reported(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                tmp_path: Path) -> None:
    files = write_sentiment_csvs(tmp_path, n_train=24, n_eval=8)
    with open(files["validation"], "a", newline="") as f:
        csv.writer(f).writerow(["the plot was so so", "neutral"])
    out = inspect(capsys, "--config", "configs/quickstart.yaml", "--model.backbone", tiny_bert, *files_args(files),
                  "--n", 0)
    assert "  in validation but not in train: neutral (the model never learns them)" in out
    assert "cannot encode validation: label ['neutral'] of row '8'" in out
    assert "examples (" not in out


def test_token_classification_shows_each_words_tag(capsys: pytest.CaptureFixture[str], tagger_bert: Path,
                                                   tmp_path: Path) -> None:
    train, dev = write_conll(tmp_path / "train.conll", 30, 0), write_conll(tmp_path / "dev.conll", 10, 1)
    out = inspect(capsys, "--config", "configs/ner_conll2003.yaml", "--model.backbone", tagger_bert,
                  *files_args({"train": train, "validation": dev}), "--data.init_args.tag_scheme", "IOB1",
                  "--data.init_args.max_length", 6, "--n", 3)
    sentences = [[line.split() for line in block.splitlines()] for block in
                 Path(train).read_text().split("\n\n")[1:] if block.strip()]
    from lit_ft.tasks.token_classification.schemes import convert

    words = [[w[0] for w in s] for s in sentences]
    tags = [convert([w[-1] for w in s], "IOB2") for s in sentences]
    counts = collections.Counter(t for row in tags for t in row)
    assert parse_counts(section(out, "labels:")[1].split(None, 1)[1]) == dict(counts)
    examples = section(out, "examples")
    shown = [line for line in examples if line.startswith("    words/tags: ")]
    for i, line in enumerate(shown):
        kept = min(len(words[i]), 4)  # 6 sub-tokens: [CLS], 4 one-piece words, [SEP]
        assert line == "    words/tags: " + " ".join(f"{w}/{t}" for w, t in zip(words[i][:kept], tags[i], strict=False))
    cut = sum(len(w) > 4 for w in words)
    assert f"; {cut} truncated (data.max_length 6)" in section(out, "token lengths")[1]


def test_question_answering_marks_the_answer_span(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                  tmp_path: Path) -> None:
    context = "john visited paris and london in the story of the film"
    rows = [qa_row(0, context, "london"), qa_row(1, "the cat sat on the mat", None), qa_row(2, context, "the film")]
    path = write_jsonl(rows, tmp_path / "qa.jsonl")
    out = inspect(capsys, "--config", "configs/qa_squad.yaml", "--model.backbone", tiny_bert,
                  *files_args({"train": path, "validation": path}), "--data.init_args.max_length", 16,
                  "--data.init_args.stride", 4, "--n", 10)
    windows = [line for line in section(out, "examples") if line.startswith("    window")]
    assert len(windows) > 3  # long contexts are cut into several windows
    marked = [w.split("): ", 1)[1].split("[[", 1)[1].split("]]")[0] for w in windows if "answer tokens" in w]
    assert sorted(set(marked)) == ["london", "the film"]
    assert any("no answer in this window" in w for w in windows)
    assert "; 0 truncated (data.max_length 16)" in section(out, "token lengths")[1]  # windows fill it, nothing is cut
    assert " 16 (" in section(out, "examples")[1] or any(" (16 tokens)" in line for line in section(out, "examples"))
    assert "validation rows also in train: 3 of 3" in out


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from builders import WORDS

    return make_tiny_t5(tmp_path_factory.mktemp("t5"), WORDS)


def test_seq2seq_shows_source_and_trained_target(capsys: pytest.CaptureFixture[str], tiny_t5: Path,
                                                 tmp_path: Path) -> None:
    path = write_summaries(tmp_path / "dialogs.jsonl", 12)
    out = inspect(capsys, "--config", "configs/summarization_dialogsum.yaml", "--model.backbone", tiny_t5,
                  *files_args({"train": path, "validation": path}), "--data.init_args.id_column", "fname",
                  "--data.init_args.max_target_length", 5, "--n", 1)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    first = rows[0]
    tok = AutoTokenizer.from_pretrained(tiny_t5)
    target = tok(text_target=first["summary"], truncation=True, max_length=5)["input_ids"]
    # a summary of 4 words or more (plus EOS) reaches max_target_length 5; no dialogue reaches max_length 512
    cut = sum(len(tok(text_target=r["summary"])["input_ids"]) >= 5 for r in rows)
    assert 0 < cut < len(rows)
    assert f"; {cut} truncated (data.max_length 512, data.max_target_length 5)" in section(out, "token lengths")[1]
    examples = section(out, "examples")
    assert examples[1].startswith("  id d0 (")
    source = tok("summarize: " + first["dialogue"])["input_ids"]
    assert examples[2] == f"    source (encoder input): {tok.decode(source)}"
    assert examples[3] == f"    target (decoder labels, {len(target)} tokens with a loss): {tok.decode(target)}"


def test_sft_marks_the_tokens_with_a_loss(capsys: pytest.CaptureFixture[str], llama: Path, tmp_path: Path) -> None:
    rows = [{"instruction": f"name color {i}", "input": "", "output": f"red {i}"} for i in range(10)]
    path = write_jsonl(rows, tmp_path / "alpaca.jsonl")
    out = inspect(capsys, "--config", "configs/sft_alpaca.yaml", "--model.backbone", llama,
                  "--data.init_args.source.train", path, "--data.init_args.source.validation_fraction", 0.2, "--n", 3)
    tok = AutoTokenizer.from_pretrained(llama)
    examples = "\n".join(section(out, "examples"))
    headers = re.findall(r"input \((\d+) of (\d+) tokens with a loss in \[\[\]\]\)", examples)
    trained = re.findall(r"\[\[(.+?)\]\]", examples.replace("[[]]", ""))
    assert len(headers) == len(trained) == 3
    for (n, total), text, row_id in zip(headers, trained, re.findall(r"  id (\d+) \(", examples), strict=True):
        assert text == f"red {row_id}{tok.eos_token}"  # the response and the EOS that ends it, nothing else
        assert int(n) == len(tok(f"red {row_id}", add_special_tokens=False)["input_ids"]) + 1 < int(total)
    assert "validation rows also in train: 0 of 2" in out


def test_example_plugin_gets_the_report_from_the_defaults(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                          tmp_path: Path) -> None:
    rows = [{"sent1": "the man", "sent2": "he", "ending0": "walks", "ending1": "sits", "ending2": "runs",
             "label": i % 3} for i in range(9)]
    path = write_jsonl(rows, tmp_path / "swag.jsonl")
    out = inspect(capsys, "--config", PLUGIN_RECIPE, "--model.backbone", tiny_bert,
                  *files_args({"train": path, "validation": path}), "--n", 2)
    assert parse_counts(section(out, "labels:")[1].split(None, 1)[1]) == {"0": 3, "1": 3, "2": 3}
    assert "  train: 6 of 9 rows repeat an earlier row of the split" in out  # the default key: the whole row
    examples = section(out, "examples")
    assert examples[2:5] == ["    choice 0 (label): [CLS] the man [SEP] he walks [SEP]",
                             "    choice 1: [CLS] the man [SEP] he sits [SEP]",
                             "    choice 2: [CLS] the man [SEP] he runs [SEP]"]


# one shipped recipe per task on its real (offline) data; `fit` runs the fatal rules on every recipe already
# (tests/test_recipes_run.py), so a fatal finding in any shipped recipe fails there too
PER_TASK = ["sentiment_sst2", "ner_conll2003", "qa_squad", "summarization_dialogsum", "sft_chat", "swag"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.stem in PER_TASK], ids=lambda r: r.stem)
def test_shipped_recipes_check_and_inspect_offline(recipe: Path, stand_in_models: dict[str, Path],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Each recipe as the user runs it (stand-ins for hub data and backbone only): `check` finds nothing fatal,
    `inspect-data` reports every configured split and shows an encoded example."""
    shared_data(".")
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv(OVERLAY_ENV, os.pathsep.join(map(str, overlays(recipe, stand_in_models, tmp_path / "o"))))
    main(["check", "--config", str(recipe)])  # a fatal finding exits 1
    assert capsys.readouterr().out.startswith("check: ")
    out = inspect(capsys, "--config", recipe, "--n", 1)
    assert "cannot encode" not in out and "\nexamples (train, the first 1 inputs" in out
    assert "rows: train " in out and "token lengths" in out and "duplicates" in out


def test_near_duplicates_and_one_text_with_two_labels(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                      tmp_path: Path) -> None:
    """The tiny BERT is uncased: `Great film` and ` great film ` are the same input to it, and so is a row that
    repeats one with the other label."""
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], ["great film", "positive"], ["dull plot", "negative"],
                                 ["Great film", "positive"], [" great film ", "positive"], ["fun story", "positive"],
                                 ["DULL PLOT", "positive"], ["fun story", "positive"], ["bad acting", "negative"]])
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    assert tok("Great film")["input_ids"] == tok(" great film ")["input_ids"] == tok("great film")["input_ids"]
    out = inspect(capsys, "--config", "configs/quickstart.yaml", "--model.backbone", tiny_bert,
                  *files_args({"train": str(train), "validation": str(train)}), "--n", 0)
    dupes = section(out, "duplicates")
    assert ("  train: 1 of 8 rows repeat an earlier row of the split; 3 more once normalised as the tokenizer reads "
            "them (case for an uncased model, surrounding whitespace)") in dupes
    assert "  train: 1 input appears with different labels, in 2 rows (ids 1, 5): fix or drop them" in dupes
