"""Data base: file formats, held-out validation, label order, tokenization cache, length-grouped sampling."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lit_ft.errors import UserError
from lit_ft.sampler import LengthGroupedBatchSampler, ShardedEvalBatchSampler
from lit_ft.source import DataSource
from lit_ft.tasks.classification import ClassificationData

ROWS = [{"text": f"the film was {w}", "label": lab} for w, lab in
        [("good", "pos"), ("bad", "neg"), ("great", "pos"), ("dull", "neg"), ("fun", "pos"), ("awful", "neg")]] * 5


def _write_all_formats(tmp_path: Path) -> dict[str, Path]:
    df = pd.DataFrame(ROWS)
    paths = {s: tmp_path / f"rows.{s}" for s in ("csv", "tsv", "json", "jsonl", "parquet")}
    df.to_csv(paths["csv"], index=False)
    df.to_csv(paths["tsv"], index=False, sep="\t")
    paths["json"].write_text(json.dumps(ROWS))
    df.to_json(paths["jsonl"], orient="records", lines=True)
    df.to_parquet(paths["parquet"])
    return paths


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_every_file_format_gives_the_same_rows(tmp_path: Path, tiny_bert: Path, fmt: str) -> None:
    path = _write_all_formats(tmp_path)[fmt]
    dm = ClassificationData(source=DataSource(train=str(path), validation=str(path)), tokenizer=str(tiny_bert))
    raw = dm.raw("train")
    assert raw is not None and raw["text"] == [r["text"] for r in ROWS] and raw["id"][:3] == ["0", "1", "2"]
    assert dm.info == {"problem_type": "single_label", "label_names": ["neg", "pos"]}


def test_validation_is_carved_from_train_reproducibly(tmp_path: Path, tiny_bert: Path) -> None:
    path = _write_all_formats(tmp_path)["csv"]

    def split_ids() -> tuple[list[str], list[str]]:
        dm = ClassificationData(source=DataSource(train=str(path), validation_fraction=0.2, seed=7),
                                tokenizer=str(tiny_bert))
        return dm.raw("train")["id"], dm.raw("validation")["id"]  # type: ignore[index]

    (train, val), again = split_ids(), split_ids()
    assert (train, val) == again
    assert len(val) == 6 and not set(train) & set(val) and len(train) + len(val) == len(ROWS)


def test_numeric_labels_sort_numerically_and_label_map_renames(tmp_path: Path, tiny_bert: Path) -> None:
    path = tmp_path / "n.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [10, 2, 1, 2]}).to_csv(path, index=False)
    dm = ClassificationData(source=DataSource(train=str(path), validation=str(path)), tokenizer=str(tiny_bert))
    assert dm.info["label_names"] == ["1", "2", "10"]
    mapped = ClassificationData(source=DataSource(train=str(path), validation=str(path)), tokenizer=str(tiny_bert),
                                label_map={"1": "one", "2": "two", "10": "ten"})
    assert mapped.info["label_names"] == ["one", "two", "ten"]
    assert mapped.features("train")["labels"] == [2, 1, 0, 1]  # type: ignore[index]


def test_headerless_latin1_csv(tmp_path: Path, tiny_bert: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("1,caf\xe9 was great\n0,na\xefve and dull\n".encode("latin-1"))
    source = DataSource(train=str(path), validation=str(path), encoding="latin-1", column_names=["label", "text"])
    dm = ClassificationData(source=source, tokenizer=str(tiny_bert))
    assert dm.raw("train")["text"] == ["café was great", "naïve and dull"]  # type: ignore[index]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])  # JSON Lines are parsed by lit_ft (json_rows), then cached too
def test_second_run_reuses_the_tokenized_cache(
    fmt: str, tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_all_formats(tmp_path)[fmt]
    source = DataSource(train=str(path), validation=str(path))
    first = ClassificationData(source=source, tokenizer=str(tiny_bert), max_length=17)
    features = first.features("train")
    calls = Counter()
    original = ClassificationData.encode

    def counting(self: ClassificationData, rows: dict, split: str) -> dict:
        calls[split] += 1
        return original(self, rows, split)

    monkeypatch.setattr(ClassificationData, "encode", counting)
    second = ClassificationData(source=source, tokenizer=str(tiny_bert), max_length=17, batch_size=3)
    assert second.features("train")["input_ids"] == features["input_ids"]  # type: ignore[index]
    assert calls["train"] == 0, "the second run tokenized again instead of loading the cache"
    ClassificationData(source=source, tokenizer=str(tiny_bert), max_length=5).features("train")
    assert calls["train"] > 0, "a changed max_length must not reuse the old cache"


def _padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_length_grouping_covers_every_example_once_and_saves_padding() -> None:
    import random

    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(2000)]
    grouped = list(LengthGroupedBatchSampler(lengths, 32, seed=1, group_batches=50))
    shuffled = list(LengthGroupedBatchSampler(lengths, 32, seed=1, group_batches=1))
    for batches in (grouped, shuffled):
        assert sorted(i for b in batches for i in b) == list(range(2000))
    assert _padding(grouped, lengths) < 0.2 * _padding(shuffled, lengths)
    # batch order is shuffled: no long-to-short cycle through the epoch
    maxima = [max(lengths[i] for i in b) for b in grouped]
    descending_runs = sum(a > b for a, b in zip(maxima, maxima[1:], strict=False))
    assert 0.3 < descending_runs / len(maxima) < 0.7


def test_epochs_differ_and_are_reproducible() -> None:
    lengths = list(range(100))
    sampler = LengthGroupedBatchSampler(lengths, 8, seed=3)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0 and epoch1 != epoch0


def test_ranks_split_each_global_batch() -> None:
    lengths = [i % 37 for i in range(203)]
    single = list(LengthGroupedBatchSampler(lengths, 8, seed=5, world_size=1))
    ranks = [list(LengthGroupedBatchSampler(lengths, 4, seed=5, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for whole, a, b in zip(single, *ranks, strict=True):
        assert sorted(a + b) == sorted(whole)


def test_eval_shards_see_every_example_exactly_once() -> None:
    lengths = [i % 13 for i in range(101)]
    shards = [list(ShardedEvalBatchSampler(lengths, 8, rank=r, world_size=3)) for r in range(3)]
    seen = sorted(i for shard in shards for b in shard for i in b)
    assert seen == list(range(101)) and all(shards)


# ---- data formats a user meets: nested JSON, any suffix with source.format, plain text lines -------------------
def test_nested_json_rows_under_a_field(tmp_path: Path, tiny_bert: Path) -> None:
    path = tmp_path / "nested.json"
    path.write_text(json.dumps({"version": 2, "data": ROWS}))
    dm = ClassificationData(source=DataSource(train=str(path), validation=str(path), field="data"),
                            tokenizer=str(tiny_bert))
    assert dm.raw("train")["text"] == [r["text"] for r in ROWS]  # type: ignore[index]
    assert dm.info["label_names"] == ["neg", "pos"]
    unset = ClassificationData(source=DataSource(train=str(path), validation=str(path)), tokenizer=str(tiny_bert))
    with pytest.raises(UserError, match=r"'.*nested.json' holds one JSON object .* set data.source.field data$"):
        unset.raw("train")


@pytest.mark.parametrize(("fmt", "written_as", "name"), [
    ("csv", "csv", "rows.data"), ("tsv", "tsv", "rows.tab"), ("jsonl", "jsonl", "rows.log"),
    ("json", "json", "rows.txt"), ("parquet", "parquet", "rows.bin"),
])
def test_any_suffix_reads_with_an_explicit_format(tmp_path: Path, tiny_bert: Path, fmt: str, written_as: str,
                                                  name: str) -> None:
    path = tmp_path / name
    _write_all_formats(tmp_path)[written_as].rename(path)
    dm = ClassificationData(source=DataSource(train=str(path), validation=str(path), format=fmt),  # type: ignore[arg-type]
                            tokenizer=str(tiny_bert))
    assert dm.raw("train")["text"] == [r["text"] for r in ROWS]  # type: ignore[index]
    auto = ClassificationData(source=DataSource(train=str(path), validation=str(path)), tokenizer=str(tiny_bert))
    if fmt != "json":  # .txt is a known suffix (plain text lines): only json-in-.txt is read, wrongly, without format
        with pytest.raises(UserError, match=rf"'.*{name}' has an unknown suffix.*data.source.format"):
            auto.raw("train")


def test_semicolon_delimiter(tmp_path: Path, tiny_bert: Path) -> None:
    path = tmp_path / "semi.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False, sep=";")
    dm = ClassificationData(source=DataSource(train=str(path), validation=str(path), delimiter=";"),
                            tokenizer=str(tiny_bert))
    assert dm.raw("train")["label"] == [r["label"] for r in ROWS]  # type: ignore[index]


LINES = "the film was good\n\nawful plot, really\n  \nthe cat sat on the mat\n"  # blank lines are skipped
TEXTS = ["the film was good", "awful plot, really", "the cat sat on the mat"]


def test_plain_text_lines_are_predict_inputs_of_each_task(tmp_path: Path, tiny_bert: Path, llama: Path) -> None:
    from lit_ft.tasks.question_answering import QuestionAnsweringData
    from lit_ft.tasks.seq2seq import Seq2SeqData
    from lit_ft.tasks.sft import SFTData

    path = tmp_path / "inputs.txt"
    path.write_text(LINES)
    lines = tmp_path / "inputs.lines"  # any suffix with format: text
    lines.write_text(LINES)
    classify = ClassificationData(source=DataSource(predict=str(path)), tokenizer=str(tiny_bert),
                                  label_names=["neg", "pos"])
    features = classify.features("predict")
    assert classify.raw("predict")["text"] == TEXTS and features["id"] == ["0", "1", "2"]  # type: ignore[index]
    assert features["input_ids"] == classify.tokenizer(TEXTS)["input_ids"]  # type: ignore[index]
    seq2seq = Seq2SeqData(source=DataSource(predict=str(lines), format="text"), tokenizer=str(tiny_bert),
                          source_column="document")
    assert seq2seq.features("predict")["prompt"] == TEXTS  # type: ignore[index]
    sft = SFTData(source=DataSource(predict=str(path)), tokenizer=str(llama))
    assert sft.features("predict")["prompt"] == TEXTS  # type: ignore[index]
    qa = QuestionAnsweringData(source=DataSource(predict=str(path)), tokenizer=str(tiny_bert), max_length=32,
                               stride=8)
    with pytest.raises(UserError, match=r"read as plain text .* which task 'question_answering' cannot use"):
        qa.raw("predict")


def test_byte_order_marks_and_carriage_returns_are_read_as_text(tmp_path: Path) -> None:
    """Files saved by Windows editors (a UTF-8 byte-order mark, \\r\\n or \\r line ends) give the same rows as plain
    UTF-8: no BOM glued to the first token, key or prompt, every reader of the task data."""
    from lit_ft.tasks.question_answering import QuestionAnsweringData
    from lit_ft.tasks.seq2seq import load_parallel_text
    from lit_ft.tasks.sft import SFTData
    from lit_ft.tasks.token_classification.conll import read_sentences

    bom = "\ufeff"
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "john visited paris", "qas": [
        {"id": "a", "question": "where", "answers": [{"text": "paris", "answer_start": 13}]}]}]}]}
    files = {"squad.json": bom + json.dumps(squad, indent=1).replace("\n", "\r\n"),
             "ner.conll": bom + "John B-PER\r\nvisited O\r\n\r\nParis B-LOC\r\n",
             "prompts.txt": bom + "say cat\rsay dog\r", "rows.csv": bom + "prompt,completion\r\nsay,cat\r\n",
             "par.en": bom + "a cat\r\nthe mat\r\n", "par.de": bom + "eine katze\rdie matte\r"}
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode("utf-8"))
    qa = QuestionAnsweringData(source=DataSource(train=str(tmp_path / "squad.json"), validation=None))
    assert qa.load_split("train")[:]["answers"] == [{"text": ["paris"], "answer_start": [13]}]  # type: ignore[index]
    assert list(read_sentences(tmp_path / "ner.conll", 0, -1)) == [(["John", "visited"], ["B-PER", "O"]),
                                                                   (["Paris"], ["B-LOC"])]
    sft = SFTData(source=DataSource(predict=str(tmp_path / "prompts.txt"), test=str(tmp_path / "rows.csv")))
    assert sft.raw("predict")["prompt"] == ["say cat", "say dog"]  # type: ignore[index]
    assert sft.raw("test")["prompt"] == ["say"]  # type: ignore[index]
    assert load_parallel_text(str(tmp_path / "par"), "en", "de")["translation"] == [
        {"en": "a cat", "de": "eine katze"}, {"en": "the mat", "de": "die matte"}]
