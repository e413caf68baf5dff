"""Extractive question answering: windows, decoding, SQuAD metrics against the official scripts, CLI, export."""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import shared_data
from transformers import AutoModelForQuestionAnswering

from lit_ft.commands.cli import run
from lit_ft.errors import UserError
from lit_ft.io import read_jsonl
from lit_ft.rows import ROW
from lit_ft.source import DataSource
from lit_ft.tasks.question_answering import QuestionAnsweringData
from lit_ft.tasks.question_answering.decode import choose_answers, merge_windows, window_spans
from lit_ft.tasks.question_answering.squad_json import is_squad_json, load_squad_json
from lit_ft.tasks.question_answering.squad_metric import SquadMetric

RECIPE = str(Path(__file__).resolve().parents[1] / "configs" / "qa_squad.yaml")


# ---- a faithful copy of the official SQuAD evaluation logic (evaluate-v1.1.py and evaluate-v2.0.py) --------
def official_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def official_v1_f1(prediction: str, ground_truth: str) -> float:
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def official_v1_evaluate(dataset: list[dict[str, Any]], predictions: dict[str, str]) -> dict[str, float]:
    f1 = exact_match = total = 0.0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                ground_truths = [x["text"] for x in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += max(
                    official_normalize_answer(prediction) == official_normalize_answer(gt) for gt in ground_truths
                )
                f1 += max(official_v1_f1(prediction, gt) for gt in ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def official_v2_compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = official_normalize_answer(a_gold).split() if a_gold else []
    pred_toks = official_normalize_answer(a_pred).split() if a_pred else []
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def official_v2_evaluate(dataset: list[dict[str, Any]], preds: dict[str, str]) -> dict[str, float]:
    qid_to_has_ans = {qa["id"]: bool(qa["answers"]) for a in dataset for p in a["paragraphs"] for qa in p["qas"]}
    exact_scores, f1_scores = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                gold_answers = [a["text"] for a in qa["answers"] if official_normalize_answer(a["text"])] or [""]
                a_pred = preds[qa["id"]]
                exact_scores[qa["id"]] = max(
                    int(official_normalize_answer(a) == official_normalize_answer(a_pred)) for a in gold_answers)
                f1_scores[qa["id"]] = max(official_v2_compute_f1(a, a_pred) for a in gold_answers)
    # na_probs are all 0 without a --na-prob-file, so the no-answer threshold (1.0) changes nothing

    def make_eval(qids: list[str]) -> dict[str, float]:
        return {"exact": 100.0 * sum(exact_scores[k] for k in qids) / len(qids),
                "f1": 100.0 * sum(f1_scores[k] for k in qids) / len(qids)}

    out = make_eval(list(exact_scores))
    for prefix, want in (("HasAns", True), ("NoAns", False)):
        qids = [k for k, v in qid_to_has_ans.items() if v == want]
        if qids:
            out.update({f"{prefix}_{k}": v for k, v in make_eval(qids).items()})
    return out


# ---- helpers --------------------------------------------------------------------------------------------
def nested(rows: list[dict[str, Any]], version_2: bool = False) -> dict[str, Any]:
    """Official SQuAD JSON, one paragraph per row."""
    paragraphs = []
    for r in rows:
        qa = {"id": r["id"], "question": r["question"],
              "answers": [{"text": t, "answer_start": s}
                          for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"], strict=True)]}
        if version_2:
            qa["is_impossible"] = not r["answers"]["text"]
        paragraphs.append({"context": r["context"], "qas": [qa]})
    return {"version": "v2.0" if version_2 else "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}


def row(i: int, context: str, answer: str | None, question: str = "what is it") -> dict[str, Any]:
    if answer is None:
        return {"id": f"q{i}", "question": question, "context": context, "answers": {"text": [], "answer_start": []}}
    return {"id": f"q{i}", "question": question, "context": context,
            "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def qa_data(tiny_bert: Path, tmp_path: Path, rows: list[dict[str, Any]], **kwargs: Any) -> QuestionAnsweringData:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    defaults: dict[str, Any] = {"max_length": 24, "stride": 8}
    return QuestionAnsweringData(source=DataSource(train=str(path), validation=str(path)), tokenizer=str(tiny_bert),
                                 **{**defaults, **kwargs})


def window_texts(dm: QuestionAnsweringData, split: str = "train") -> list[tuple[str, str]]:
    """(id, labelled answer text cut from the context by the window's offsets; "" when CLS) per window."""
    feats, rows = dm.features(split), dm.rows(split)
    out = []
    for f in feats:
        s, e = f["start_positions"], f["end_positions"]
        text = "" if s == 0 else rows.contexts[f[ROW]][f["offset_start"][s] : f["offset_end"][e]]
        out.append((f["id"], text))
    return out


SENTENCES = [
    "john visited paris in one story and london in two", "the cat sat on the mat and the dog was very fun",
    "berlin was good but the music was dull", "a red film and a blue movie", "seven eight nine ten",
]


# ---- windows ---------------------------------------------------------------------------------------------
def test_answer_at_window_boundary_and_cut_by_truncation(tiny_bert: Path, tmp_path: Path) -> None:
    # "what is it" + [CLS] [SEP] [SEP] leaves 24 - 6 = 18 context tokens per window; stride 8 -> next window at 10
    vocab_words = "the a film movie plot acting was good great bad awful wonderful dull boring fun loved hated".split()
    words = [vocab_words[i % len(vocab_words)] for i in range(40)]
    context = " ".join(words)
    start_of = [len(" ".join(words[:i])) + (1 if i else 0) for i in range(40)]

    def span_row(i: int, first: int, last: int) -> dict[str, Any]:
        text = " ".join(words[first : last + 1])
        return {"id": f"q{i}", "question": "what is it", "context": context,
                "answers": {"text": [text], "answer_start": [start_of[first]]}}

    rows = [span_row(0, 16, 17), span_row(1, 17, 18), span_row(2, 0, 0)]
    dm = qa_data(tiny_bert, tmp_path, rows)
    texts = window_texts(dm)
    by_id = collections.defaultdict(list)
    for row_id, text in texts:
        by_id[row_id].append(text)
    assert len(by_id["q0"]) >= 3, "a 40-token context needs several windows"
    assert by_id["q0"][:2] == ["hated the"] * 2  # ends on window 1's last token (17); inside window 2 (10-27)
    assert by_id["q1"][:2] == ["", "the a"]  # tokens 17-18, cut by window 1's truncation -> CLS; whole in window 2
    assert by_id["q2"][0] == "the" and set(by_id["q2"][1:]) == {""}
    assert all(f["id"] in {"q0", "q1", "q2"} and f["split"] == "train" for f in dm.features("train"))


def test_unicode_and_whitespace_offsets(tiny_bert: Path, tmp_path: Path) -> None:
    context = "  Café  crème\tat\u00a0Zürich —  naïve 東京 answer   here\n ok"
    rows = [
        row(0, context, "Zürich"),
        {"id": "q1", "question": "  where", "context": context,  # gold with spaces around: trimmed
         "answers": {"text": [" naïve 東京 "], "answer_start": [context.index(" naïve 東京 ")]}},
        row(2, context, "crème"),
    ]
    dm = qa_data(tiny_bert, tmp_path, rows, max_length=64)
    assert window_texts(dm) == [("q0", "Zürich"), ("q1", "naïve 東京"), ("q2", "crème")]
    # decoding with logits peaked at the labels cuts the same text from the context
    batch = dm.collate([dict(f) for f in dm.features("train")])
    starts, ends = batch["inputs"]["start_positions"], batch["inputs"]["end_positions"]
    seq = batch["offsets"].shape[1]
    spans = window_spans(torch.nn.functional.one_hot(starts, seq).float() * 5,
                         torch.nn.functional.one_hot(ends, seq).float() * 5, batch["offsets"], 30)
    got = [context[s:e] for s, e in zip(spans.char_start[:, 0].tolist(), spans.char_end[:, 0].tolist(), strict=True)]
    assert got == ["Zürich", "naïve 東京", "crème"]


def test_misplaced_answer_start_is_repaired_or_reported(tiny_bert: Path, tmp_path: Path) -> None:
    context = "the cat sat on the mat"
    moved = {"id": "q0", "question": "what", "context": context, "answers": {"text": ["mat"], "answer_start": [3]}}
    assert window_texts(qa_data(tiny_bert, tmp_path, [moved], max_length=32)) == [("q0", "mat")]
    bad = {**moved, "answers": {"text": ["dog"], "answer_start": [3]}}
    with pytest.raises(ValueError, match=r"answer 'dog' of row 0 \(id 'q0'\).*not in its context"):
        qa_data(tiny_bert, tmp_path / "b", [bad], max_length=32).features("train")
    with pytest.raises(UserError, match="question_column 'query' not found.*set data.question_column"):
        qa_data(tiny_bert, tmp_path / "c", [moved], max_length=32, question_column="query").features("train")


# ---- readers --------------------------------------------------------------------------------------------
def test_a_long_question_is_refused_only_where_its_context_must_be_cut(tiny_bert: Path, tmp_path: Path) -> None:
    """max_length 24, stride 8, 3 special tokens: a question of more than 12 tokens leaves a window no more than
    `stride` context tokens. Beside a context that fits whole it is fine; beside a longer one it is refused naming
    the row, before the fast tokenizer would panic."""
    question = "where did john go " * 3  # 15 tokens
    short = qa_data(tiny_bert, tmp_path / "short", [row(0, "john visited paris", "paris", question)])
    assert short.features("train")["start_positions"] == [19]  # type: ignore[index]
    long = qa_data(tiny_bert, tmp_path / "long", [row(0, "john visited paris in may " * 4, "paris", question)])
    with pytest.raises(UserError, match=r"row 'q0' of file .*: the question is 15 tokens, .* room for 12 question"):
        long.features("train")


def test_squad_json_nested_and_wrapped_flat(tmp_path: Path) -> None:
    rows = [row(0, "john visited paris", "paris"), row(1, "the cat sat", None)]
    (tmp_path / "v2.json").write_text(json.dumps(nested(rows, version_2=True)))
    (tmp_path / "flat.json").write_text(json.dumps({"version": 2.0, "data": rows}))
    (tmp_path / "rows.json").write_text("".join(json.dumps(r) + "\n" for r in rows))  # JSON Lines named .json
    assert is_squad_json(tmp_path / "v2.json") and is_squad_json(tmp_path / "flat.json")
    assert not is_squad_json(tmp_path / "rows.json")
    for name in ("v2.json", "flat.json"):
        ds = load_squad_json(tmp_path / name, "data.source.train")
        assert ds["id"] == ["q0", "q1"] and ds["context"] == [r["context"] for r in rows]
        assert [a["text"] for a in ds["answers"]] == [["paris"], []]
        assert [a["answer_start"] for a in ds["answers"]] == [[13], []]


def test_shared_squad_samples_load(tiny_bert: Path) -> None:
    folder = shared_data("hf_tests_samples/SQUAD")
    for name in ("dev-v2.0.json", "sample.json"):
        dm = QuestionAnsweringData(source=DataSource(test=str(folder / name)), tokenizer=str(tiny_bert), max_length=128,
                                   stride=8)  # the tiny vocabulary spells most words by characters
        rows = dm.rows("test")
        assert len(rows.ids) == 14 and sum(not a for a in rows.answers) == 6
        assert rows.answers[0] == ["France"] * (1 if name == "dev-v2.0.json" else 4)
        assert len(dm.features("test")) > 14  # long contexts make several windows


# ---- decoding -------------------------------------------------------------------------------------------
def _logits(seq: int, **peaks: float) -> torch.Tensor:
    out = torch.zeros(1, seq)
    for key, value in peaks.items():
        out[0, int(key[1:])] = value
    return out


def test_decoding_edge_cases() -> None:
    # tokens 0 = CLS, 1-2 = question, 3 = SEP, 4-9 context (char offsets 0,2,4,...), 10 = SEP
    offsets = torch.full((1, 11, 2), -1)
    offsets[0, 4:10, 0] = torch.arange(0, 12, 2)
    offsets[0, 4:10, 1] = torch.arange(1, 13, 2)
    # the best raw pair is on question tokens: only context tokens may answer
    spans = window_spans(_logits(11, t1=9.0, t5=1.0), _logits(11, t2=9.0, t6=1.0), offsets, 30)
    assert (spans.char_start[0, 0].item(), spans.char_end[0, 0].item()) == (2, 5)
    # an end before the start is never taken; the longest allowed answer is max_answer_length tokens
    spans = window_spans(_logits(11, t4=5.0), _logits(11, t9=5.0, t5=1.0), offsets, 2, k=3)
    assert (spans.char_start[0, 0].item(), spans.char_end[0, 0].item()) == (0, 3)  # tokens 4..5, not 4..9
    assert bool((spans.char_end[0] - spans.char_start[0] <= 3).all())
    spans = window_spans(_logits(11, t4=5.0), _logits(11, t9=5.0), offsets, 6)
    assert (spans.char_start[0, 0].item(), spans.char_end[0, 0].item()) == (0, 11)
    # no context tokens at all: no span; the answer is ""
    none = window_spans(_logits(11), _logits(11), torch.full((1, 11, 2), -1), 30, k=2)
    assert torch.isinf(none.score).all() and (none.char_start == -1).all()


def test_no_answer_option_and_windows_merged_by_row() -> None:
    records = [  # row 0 has two windows (in different batches); the second holds its best span
        {ROW: 0, "id": "q0", "null_score": 1.0, "candidates": [{"text": "a", "score": 2.0, "start": 0, "end": 1}]},
        {ROW: 1, "id": "q1", "null_score": 9.0, "candidates": [{"text": "b", "score": 3.0, "start": 0, "end": 1}]},
        {ROW: 0, "id": "q0", "null_score": 0.5, "candidates": [{"text": "c", "score": 4.0, "start": 5, "end": 6},
                                                               {"text": "a", "score": 2.5, "start": 0, "end": 1}]},
        {ROW: 2, "id": "q2", "null_score": 0.0, "candidates": []},
        {ROW: 3, "id": "q1", "null_score": 0.0, "candidates": []},  # a repeated id is another row: not merged
    ]
    merged = merge_windows(records, n_best=5)
    assert merged[0]["null_score"] == 0.5
    assert [(c["text"], c["score"]) for c in merged[0]["n_best"]] == [("c", 4.0), ("a", 2.5)]
    v1 = [(a[ROW], a["id"], a["answer"]) for a in choose_answers(merged, False, 0.0)]
    assert v1 == [(0, "q0", "c"), (1, "q1", "b"), (2, "q2", ""), (3, "q1", "")]
    v2 = [a["answer"] for a in choose_answers(merged, True, 0.0)]
    assert v2 == ["c", "", "", ""]  # row 1: null 9 - span 3 > 0
    assert choose_answers(merged, True, 6.5)[1]["answer"] == "b"  # threshold 6.5 > 6


def test_metric_aggregates_windows_across_updates() -> None:
    class Rows:
        ids, questions = ["a", "b"], ["?", "?"]
        contexts = ["the cat sat on the mat", "paris and london"]
        answers = [["the mat"], ["london"]]

    metric = SquadMetric()
    t = torch.tensor
    metric.update(t([0, 1]), t([1.0, 5.0]), t([0, 10]), t([7, 16]), t([0.0, 0.0]), references=Rows())
    metric.update(t([0]), t([3.0]), t([15]), t([22]), t([0.0]), references=Rows())  # a's better window later
    assert metric.predictions() == {0: "the mat", 1: "london"}
    assert metric.compute()["exact_match"].item() == 100.0


# ---- metric equality with the official scripts ------------------------------------------------------------
def _predictions_for(rows: list[dict[str, Any]], seed: int) -> dict[str, str]:
    """Varied answers: exact, articles/punctuation/case changes, partial, wrong, empty."""
    gen = torch.Generator().manual_seed(seed)
    preds = {}
    for r in rows:
        words = r["context"].split()
        gold = r["answers"]["text"][0] if r["answers"]["text"] else ""
        choice = int(torch.randint(0, 6, (1,), generator=gen))
        options = [gold, f"The {gold.upper()}!", " ".join(words[:2]), words[-1], "", gold[: len(gold) // 2]]
        preds[r["id"]] = options[choice]
    return preds


def _metric_on(preds: dict[str, str], rows: list[dict[str, Any]], version_2: bool) -> dict[str, float]:
    class Rows:
        ids = [r["id"] for r in rows]
        questions = [r["question"] for r in rows]
        contexts = [r["context"] + " || " + preds[r["id"]] for r in rows]  # the prediction as a char span
        answers = [r["answers"]["text"] for r in rows]

    metric = SquadMetric(version_2_with_negative=version_2)
    n = len(rows)
    starts = torch.tensor([len(r["context"]) + 4 for r in rows])
    ends = starts + torch.tensor([len(preds[r["id"]]) for r in rows])
    null = torch.tensor([10.0 if preds[r["id"]] == "" else -10.0 for r in rows])
    metric.update(torch.arange(n), torch.zeros(n), starts, ends, null, references=Rows())
    return {k: v.item() for k, v in metric.compute().items()}


def _synthetic_rows(answerable_only: bool) -> list[dict[str, Any]]:
    out = []
    for i, ctx in enumerate(SENTENCES * 4):
        words = ctx.split()
        answer = None if (i % 3 == 0 and not answerable_only) else " ".join(words[i % 3 : i % 3 + 1 + i % 4])
        r = row(i, ctx, answer)
        if answer is not None and i % 2:
            r["answers"]["text"].append(f"the {answer}.")  # a second gold answer
            r["answers"]["answer_start"].append(0)
        out.append(r)
    return out


def test_metric_equals_official_v1_and_v2() -> None:
    rows = _synthetic_rows(answerable_only=True)
    preds = _predictions_for(rows, seed=1)
    ours = _metric_on(preds, rows, version_2=False)
    official = official_v1_evaluate(nested(rows)["data"], preds)
    assert ours == pytest.approx(official, abs=1e-4) and 0 < ours["f1"] < 100
    rows = _synthetic_rows(answerable_only=False)
    preds = _predictions_for(rows, seed=2)
    ours = _metric_on(preds, rows, version_2=True)
    official = official_v2_evaluate(nested(rows, version_2=True)["data"], preds)
    renamed = {"exact_match": "exact", "f1": "f1", "has_ans_exact_match": "HasAns_exact", "has_ans_f1": "HasAns_f1",
               "no_ans_exact_match": "NoAns_exact", "no_ans_f1": "NoAns_f1"}
    assert {renamed[k]: v for k, v in ours.items()} == pytest.approx(official, abs=1e-4)
    assert 0 < ours["no_ans_f1"] < 100 and 0 < ours["has_ans_f1"] < 100


def test_metric_equals_official_on_real_squad_v2(tmp_path: Path) -> None:
    path = shared_data("hf_tests_samples/SQUAD") / "dev-v2.0.json"
    dataset = json.loads(path.read_text())["data"]
    rows = list(load_squad_json(path, "test"))
    preds = _predictions_for(rows, seed=3)
    ours = _metric_on(preds, rows, version_2=True)
    official = official_v2_evaluate(dataset, preds)
    assert ours["f1"] == pytest.approx(official["f1"]) and ours["no_ans_f1"] == pytest.approx(official["NoAns_f1"])
    assert ours["exact_match"] == pytest.approx(official["exact"])


# ---- through the CLI: recipe, predict files equal to the metric, export ------------------------------------
def _cli(sub: str, tiny: Path, root: Path, *extra: str) -> Any:
    return run([sub, "--config", RECIPE, "--model.backbone", str(tiny), "--data.init_args.source.hub", "null",
                "--data.init_args.max_length", "48", "--data.init_args.stride", "16",
                "--data.init_args.batch_size", "4",
                "--trainer.logger", "false", "--trainer.default_root_dir", str(root),
                "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", *extra])


def test_recipe_fit_validate_predict_export(tiny_bert: Path, tmp_path: Path) -> None:
    rows = [row(i, f"{s} and {SENTENCES[(i + 1) % 5]}", s.split()[i % 3], "who was it")
            for i, s in enumerate(SENTENCES * 3)]
    rows += [row(100 + i, s, None, "where did it go") for i, s in enumerate(SENTENCES)]
    squad = nested(rows, version_2=True)
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    data = str(tmp_path / "squad.json")
    v2 = ("--model.task_options.version_2_with_negative", "true", "--model.task_options.null_threshold", "0.1")
    cli = _cli("fit", tiny_bert, tmp_path / "run", "--data.init_args.source.train", data,
               "--data.init_args.source.validation", data, "--trainer.max_steps", "2", *v2)
    assert cli.trainer.global_step == 2 and "val/f1" in cli.trainer.callback_metrics
    run_dir = tmp_path / "run"
    none = ("--data.init_args.source.train", "null", "--data.init_args.source.validation", "null")
    test = _cli("test", tiny_bert, run_dir, "--ckpt_path", "best", "--data.init_args.source.test", data, *none, *v2)
    logged = {k: float(v) for k, v in test.trainer.callback_metrics.items()}
    _cli("predict", tiny_bert, run_dir, "--ckpt_path", "best", "--data.init_args.source.predict", data, *none, *v2)
    preds = json.loads((run_dir / "predictions.json").read_text())
    assert list(preds) == [r["id"] for r in rows]
    official = official_v2_evaluate(squad["data"], preds)
    assert logged["test/f1"] == pytest.approx(official["f1"], abs=1e-3)
    assert logged["test/exact_match"] == pytest.approx(official["exact"], abs=1e-3)
    assert logged["test/no_ans_f1"] == pytest.approx(official["NoAns_f1"], abs=1e-3)
    records = read_jsonl(run_dir / "predictions.jsonl")
    assert [r["id"] for r in records] == list(preds) and all(len(r["n_best"]) <= 20 for r in records)
    assert all(r["answer"] in ("", r["n_best"][0]["text"]) for r in records)
    # the export loads as a plain Transformers QA model with the trained weights
    model = AutoModelForQuestionAnswering.from_pretrained(run_dir / "export").eval()
    batch = next(iter(test.datamodule.test_dataloader()))
    test.model.model.eval()
    with torch.no_grad():
        expected = test.model.model(**{k: v for k, v in batch["inputs"].items() if "positions" not in k})
        got = model(**{k: v for k, v in batch["inputs"].items() if "positions" not in k})
    torch.testing.assert_close(got.start_logits, expected.start_logits)
    _pipeline_answers(run_dir / "export")


def test_v2_scoring_and_decoding_options_apply_at_test_time(tiny_bert: Path, tmp_path: Path) -> None:
    """The documented command: a v1.1 model tested on v2.0 data with --model.task_options.version_2_with_negative."""
    answerable = [row(i, s, s.split()[i % 3]) for i, s in enumerate(SENTENCES * 2)]
    (tmp_path / "v1.json").write_text(json.dumps(nested(answerable)))
    v2 = nested(answerable + [row(100 + i, s, None, "where did it go") for i, s in enumerate(SENTENCES)], True)
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    run_dir = tmp_path / "run"
    _cli("fit", tiny_bert, run_dir, "--data.init_args.source.train", str(tmp_path / "v1.json"),
         "--data.init_args.source.validation", str(tmp_path / "v1.json"), "--trainer.max_steps", "1",
         "--export.enabled", "false")
    none = ("--data.init_args.source.train", "null", "--data.init_args.source.validation", "null")
    test = _cli("test", tiny_bert, run_dir, "--ckpt_path", "best", "--data.init_args.source.test",
                str(tmp_path / "v2.json"), *none, "--model.task_options.version_2_with_negative", "true",
                "--model.task_options.null_threshold", "-1000")
    assert test.model.plugin.version_2 and test.model.hparams["task_options"]["max_answer_length"] == 30
    logged = {k: float(v) for k, v in test.trainer.callback_metrics.items()}
    # a threshold far below any margin answers "" everywhere, scored by the v2.0 rules
    everyone = [qa["id"] for article in v2["data"] for para in article["paragraphs"] for qa in para["qas"]]
    official = official_v2_evaluate(v2["data"], dict.fromkeys(everyone, ""))
    assert logged["test/no_ans_f1"] == 100.0 == official["NoAns_f1"]
    assert logged["test/has_ans_f1"] == pytest.approx(official["HasAns_f1"]) and official["HasAns_f1"] < 50
    _cli("predict", tiny_bert, run_dir, "--ckpt_path", "best", "--data.init_args.source.predict",
         str(tmp_path / "v2.json"), *none, "--model.task_options.n_best", "2")
    records = read_jsonl(run_dir / "predictions.jsonl")
    assert len(records) == 15 and all(1 <= len(r["n_best"]) <= 2 for r in records)


def _pipeline_answers(export: Path) -> None:
    """`pipeline("question-answering")` where this Transformers has it (v5 removed it: see docs/tasks)."""
    from transformers.pipelines import SUPPORTED_TASKS, pipeline

    if "question-answering" not in SUPPORTED_TASKS:
        return
    qa = pipeline("question-answering", model=str(export))
    out = qa(question="who was it", context="john visited paris")
    assert isinstance(out["answer"], str)


# ---- slow: the packaged MiniLM learns XQuAD (SQuAD v1.1 dev questions) --------------------------------------
