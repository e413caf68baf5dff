"""Property-based tests of every data reader (Hypothesis): generated files, read and predicted on.

Each case writes a file of generated rows (random unicode, empty and null cells, repeated and missing ids, numbers
where text is expected, odd separators and line endings) for one reader: classification CSV / TSV / JSON / JSONL /
plain text, CoNLL, SQuAD JSON, SFT chat and Alpaca rows, seq2seq source/target rows. Reading it as a predict split
must give either a one-line `UserError` naming the file (and the row or line, for a bad row) or every row, in file
order, through the prediction-record path: a tiny model's forward pass (generation for SFT and seq2seq, 1 token) on
the data module's batches, the task's records, and `row_records` (ordering, merging, joining inputs by position),
each record carrying its own row's text. No other exception, ever.

The normal suite runs a fixed, small number of examples per reader (derandomized); `-m slow` runs more
(`LIT_FT_PROPERTY_EXAMPLES=300` for a longer hunt).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lit_ft.datamodule import TaskDataModule
from lit_ft.errors import UserError
from lit_ft.loading import LoadOptions
from lit_ft.registry import get_task
from lit_ft.rows import with_rows
from lit_ft.source import DataSource
from lit_ft.task import Task
from lit_ft.tasks.classification import ClassificationData
from lit_ft.tasks.question_answering import QuestionAnsweringData
from lit_ft.tasks.seq2seq import Seq2SeqData
from lit_ft.tasks.sft import SFTData
from lit_ft.tasks.token_classification import TokenClassificationData
from lit_ft.tasks.token_classification.schemes import convert, invalid_tag
from lit_ft.training.predictions import row_records

# A fixed seed and no shrinking in the normal suite: each example reads a file and runs a model, so shrinking a
# failure takes minutes (the failing file is printed whole). The slow run takes more examples (LIT_FT_PROPERTY_EXAMPLES
# per reader, default 35: about a minute in all on 2 CPU cores) and shrinks.
FAST = settings(max_examples=20, derandomize=True, deadline=None, database=None, print_blob=True,
                phases=(Phase.explicit, Phase.generate),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=int(os.environ.get("LIT_FT_PROPERTY_EXAMPLES", "35")), phases=tuple(Phase))
datasets.disable_progress_bars()

# ---- cells ---------------------------------------------------------------------------------------------------
UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
ODD = st.sampled_from(["", " ", "\t", "\r\n", "\r", "a\rb", "a\r\nb", 'say "hi"', "x,y", "x;y", "x|y", "NA", "null",
                       "None", "nan", "007", "1.50", "1e3", "-0", "True", "é東京", "a\u2028b", "a\x85b", "a\x1cb",
                       "\ufeffbom", "#hash", "\\", "[1, 2]", '{"a": 1}'])
TEXT = st.one_of(UNICODE, ODD)
ID = st.one_of(st.none(), st.sampled_from(["a", "b", "", "7"]), st.integers(0, 3))  # repeats, gaps, mixed types
ENDING = st.sampled_from(["\n", "\r\n", "\r"])
NO_BREAK = st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc"))  # nothing a line reader may split at
LINE = st.text(NO_BREAK, min_size=1, max_size=10)
WORD = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=6).filter(
    lambda w: w.split() == [w] and w != "-DOCSTART-")  # a CoNLL token: no whitespace of any kind


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass
class Case:
    """A generated file and what reading it must give.

    Attributes:
        name: File name (its suffix picks the reader).
        content: The file's bytes.
        expected: Per row, in order, the record fields a correct reading gives (`None`: the file may fail).
        source: Extra `DataSource` settings (format, delimiter).
        bad: The rows include one the task must refuse (an empty text, an invalid tag): a UserError is allowed.
    """

    name: str
    content: bytes
    expected: list[dict[str, Any]]
    source: dict[str, Any] = field(default_factory=dict)
    bad: bool = False


# ---- generated files, one strategy per reader ----------------------------------------------------------------
@st.composite
def classification_table(draw: st.DrawFn, fmt: str) -> Case:
    tsv = fmt == "tsv"
    text = TEXT.map(lambda t: t.replace("\t", " ").replace("\r", " ").replace("\n", " ")) if tsv else TEXT
    rows = draw(st.lists(st.fixed_dictionaries({"id": ID, "text": st.one_of(text, st.none(), st.integers()),
                                                "label": st.sampled_from(["neg", "pos"])}), min_size=1, max_size=5))
    cells = [["" if r[k] is None else str(r[k]) for k in ("id", "text", "label")] for r in rows]
    if fmt in ("csv", "tsv"):
        sep = "\t" if tsv else draw(st.sampled_from([",", ";", "|"]))
        ending = draw(ENDING)
        if tsv:  # GLUE-style TSV: no quoting at all, quotes are text
            content = "".join("\t".join(line) + ending for line in [["id", "text", "label"], *cells])
        else:
            out = io.StringIO()
            # a bare \r or \n inside an unquoted cell ends the line for any csv reader: such files quote every cell
            breaks = any("\r" in c[1] or "\n" in c[1] for c in cells)
            writer = csv.writer(out, delimiter=sep, lineterminator=ending,
                                quoting=csv.QUOTE_ALL if breaks else csv.QUOTE_MINIMAL)
            writer.writerows([["id", "text", "label"], *cells])
            content = out.getvalue()
        source = {"delimiter": sep} if sep not in (",", "\t") else {}
        expected = [{"text": "" if r["text"] is None else str(r["text"]), "gold_label": r["label"]} for r in rows]
        bad = any(blank(e["text"]) for e in expected)
        return Case(f"rows.{fmt}", content.encode(), expected, source, bad)
    if fmt == "text":
        lines = draw(st.lists(LINE, min_size=1, max_size=5))
        content = draw(ENDING).join(lines) + draw(st.sampled_from(["", "\n"]))
        expected = [{"text": t} for t in lines if t.strip()]
        return Case("rows.txt", content.encode(), expected, {}, not expected)
    ending = draw(ENDING)
    body = json.dumps(rows) if fmt == "json" else ending.join(json.dumps(r) for r in rows) + ending
    expected = [{"text": r["text"] if r["text"] is None else str(r["text"]), "gold_label": r["label"]} for r in rows]
    return Case(f"rows.{fmt}", body.encode(), expected, {}, any(blank(e["text"]) for e in expected))


@st.composite
def conll_file(draw: st.DrawFn) -> Case:
    sentences = draw(st.lists(st.lists(st.tuples(WORD, st.sampled_from(["O", "B-PER", "I-PER", "B-LOC"])),
                                       min_size=1, max_size=4), min_size=1, max_size=4))
    ending, parts = draw(ENDING), []
    for sentence in sentences:
        parts.append(ending.join(f"{w}{draw(st.sampled_from([' ', chr(9), '  ']))}{t}" for w, t in sentence))
    gap = ending + draw(st.sampled_from(["", " ", "-DOCSTART- -X- O", f"{ending}"])) + ending
    content = gap.join(parts) + draw(st.sampled_from(["", ending]))
    # gold tags in the model's scheme (IOB2: an `I-X` that starts an entity becomes `B-X`)
    expected = [{"tokens": [w for w, _ in s], "gold_tags": convert([t for _, t in s], "IOB2")} for s in sentences]
    bad = any(invalid_tag(e["gold_tags"], "IOB2") is not None for e in expected)
    return Case("rows.conll", content.encode(), expected, {}, bad)


@st.composite
def squad_file(draw: st.DrawFn) -> Case:
    qas, expected = [], []
    for _ in range(draw(st.integers(1, 4))):
        context = draw(st.text(NO_BREAK, min_size=1, max_size=60))
        start = draw(st.integers(0, len(context) - 1))
        answer = context[start : start + draw(st.integers(1, 8))]
        answers = draw(st.sampled_from([[{"text": answer, "answer_start": start}], []]))
        qa = {"question": draw(TEXT), "answers": answers}
        qa_id = draw(ID)
        if qa_id is not None or draw(st.booleans()):
            qa["id"] = qa_id
        qas.append({"context": context, "qas": [qa]})
        expected.append({"question": qa["question"], "context": context, "gold_answers": [a["text"] for a in answers]})
    content = json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": qas}]})
    bad = any(blank(e["question"]) or blank(e["context"]) for e in expected)
    return Case("squad.json", content.encode(), expected, {}, bad)


@st.composite
def sft_rows(draw: st.DrawFn, shape: str) -> Case:
    rows, expected = [], []
    for _ in range(draw(st.integers(1, 4))):
        prompt, answer = draw(st.one_of(TEXT, st.none())), draw(st.one_of(TEXT, st.none()))
        if shape == "chat":
            messages = [{"role": "user", "content": prompt}, *([{"role": "assistant", "content": answer}]
                                                              if answer is not None else [])]
            row: dict[str, Any] = {"id": draw(ID), "messages": messages}
        else:
            row = {"id": draw(ID), "instruction": prompt, "input": draw(st.sampled_from(["", None, "ctx"])),
                   "output": answer}
        rows.append(row)
        expected.append({"prompt_part": prompt, "reference": answer})
    ending = draw(ENDING)
    content = ending.join(json.dumps(r) for r in rows) + ending
    return Case("rows.jsonl", content.encode(), expected, {}, any(e["prompt_part"] is None for e in expected))


@st.composite
def seq2seq_rows(draw: st.DrawFn, fmt: str) -> Case:
    rows = draw(st.lists(st.fixed_dictionaries({"id": ID, "source": st.one_of(TEXT, st.none()),
                                                "target": st.one_of(TEXT, st.none())}), min_size=1, max_size=4))
    if fmt == "csv":
        out = io.StringIO()
        breaks = any("\r" in str(r[k]) or "\n" in str(r[k]) for r in rows for k in ("source", "target"))
        writer = csv.writer(out, lineterminator=draw(ENDING), quoting=csv.QUOTE_ALL if breaks else csv.QUOTE_MINIMAL)
        writer.writerow(["id", "source", "target"])
        writer.writerows([["" if r[k] is None else r[k] for k in ("id", "source", "target")] for r in rows])
        content = out.getvalue()
    else:
        ending = draw(ENDING)
        content = ending.join(json.dumps(r) for r in rows) + ending
    expected = [{"source": "" if r["source"] is None else r["source"],
                 "reference": "" if r["target"] is None else r["target"]} for r in rows]
    bad = any(blank(e["source"]) or blank(e["reference"]) for e in expected)
    return Case(f"rows.{fmt}", content.encode(), expected, {}, bad)


# ---- the tiny models the round trip predicts with (built once) -----------------------------------------------
@functools.cache
def _model(task: type[Task], info: str, backbone: str) -> tuple[Task, torch.nn.Module]:
    plugin = task(json.loads(info), **({"max_new_tokens": 1} if task.name in ("sft", "seq2seq") else {}))
    return plugin, plugin.build_model(backbone, LoadOptions()).eval()


def predict_records(dm: TaskDataModule, backbone: Path) -> list[dict[str, Any]]:
    """The prediction-record path of `lit_ft predict` without a Trainer: batches -> forward -> task records ->
    `row_records` (order, merge, inputs by position)."""
    task_class = get_task(dm.task_name)
    plugin, model = _model(task_class, json.dumps(dm.info, sort_keys=True), str(backbone))
    plugin.bind_data(dm)
    records: list[dict[str, Any]] = []
    with torch.no_grad():
        for batch in dm.predict_dataloader():
            outputs = plugin.forward(model, batch)
            records += with_rows(plugin.predictions(model, batch, outputs), batch, plugin.name)
    return row_records(records, plugin, dm, "predict")


def read_case(case: Case, make: Callable[[DataSource], TaskDataModule], backbone: Path,
              check: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]) -> None:
    """Write the case's file, read it as a predict split and predict: a one-line UserError naming the file, or
    every row in order (`check(records, expected)`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / case.name
        path.write_bytes(case.content)
        dm = make(DataSource(predict=str(path), **case.source))
        try:
            records = predict_records(dm, backbone)
        except UserError as err:
            message = str(err)
            assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
            assert case.name in message, f"the error does not name the file: {message}"
            assert case.bad or "no rows" in message or "is empty" in message, f"refused good rows: {message}"
            return
        assert len(records) == len(case.expected), (records, case.expected)
        check(records, case.expected)


def same_fields(records: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    got = [{k: r.get(k) for k in e} for r, e in zip(records, expected, strict=True)]
    assert got == expected


def generated_prompts(records: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    for record, want in zip(records, expected, strict=True):
        assert str(want["prompt_part"]) in record["prompt"], (record, want)
        assert record.get("reference") == (want["reference"] or None), (record, want)


# ---- the readers -----------------------------------------------------------------------------------------------
def classification(backbone: Path) -> Callable[[DataSource], TaskDataModule]:
    return lambda source: ClassificationData(source=source, tokenizer=str(backbone), label_names=["neg", "pos"],
                                             eval_batch_size=2, max_length=24)


def token_classification(backbone: Path) -> Callable[[DataSource], TaskDataModule]:
    return lambda source: TokenClassificationData(source=source, tokenizer=str(backbone), eval_batch_size=2,
                                                  label_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], max_length=24)


def question_answering(backbone: Path) -> Callable[[DataSource], TaskDataModule]:
    return lambda source: QuestionAnsweringData(source=source, tokenizer=str(backbone), eval_batch_size=3,
                                                max_length=32, stride=8)


def sft(backbone: Path, shape: str) -> Callable[[DataSource], TaskDataModule]:
    return lambda source: SFTData(source=source, tokenizer=str(backbone), format=shape, eval_batch_size=2,
                                  max_length=64)


def seq2seq(backbone: Path) -> Callable[[DataSource], TaskDataModule]:
    return lambda source: Seq2SeqData(source=source, tokenizer=str(backbone), eval_batch_size=2, max_length=24)


READERS = ["classification_csv", "classification_tsv", "classification_json", "classification_jsonl",
           "classification_text", "conll", "squad_json", "sft_chat", "sft_alpaca", "seq2seq_jsonl", "seq2seq_csv"]


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_seq2seq import make_tiny_t5

    return make_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), ["the", "cat", "a"])


@pytest.fixture(scope="module")
def models(tiny_bert: Path, tagger_bert: Path, llama: Path, tiny_t5: Path) -> dict[str, Path]:
    return {"bert": tiny_bert, "tagger": tagger_bert, "llama": llama, "t5": tiny_t5}


def check_reader(reader: str, data: st.DataObject, models: dict[str, Path]) -> None:
    kind, _, fmt = reader.partition("_")
    if kind == "classification":
        read_case(data.draw(classification_table(fmt)), classification(models["bert"]), models["bert"], same_fields)
    elif kind == "conll":
        read_case(data.draw(conll_file()), token_classification(models["tagger"]), models["tagger"], same_fields)
    elif kind == "squad":
        read_case(data.draw(squad_file()), question_answering(models["bert"]), models["bert"], same_fields)
    elif kind == "sft":
        read_case(data.draw(sft_rows(fmt)), sft(models["llama"], fmt), models["llama"], generated_prompts)
    else:
        read_case(data.draw(seq2seq_rows(fmt)), seq2seq(models["t5"]), models["t5"], same_fields)


@pytest.mark.parametrize("reader", READERS)
@FAST
@given(data=st.data())
def test_reader_keeps_every_row_or_names_the_bad_one(reader: str, data: st.DataObject,
                                                     models: dict[str, Path]) -> None:
    check_reader(reader, data, models)


@pytest.mark.slow
@pytest.mark.parametrize("reader", READERS)
@SLOW
@given(data=st.data())
def test_reader_keeps_every_row_many_examples(reader: str, data: st.DataObject, models: dict[str, Path]) -> None:
    check_reader(reader, data, models)
