"""The question-answering task's report sections (`QuestionAnsweringTask.report_sections`), from prediction
records with gold answers (`test_predictions.jsonl` of `lit_ft test`, or a labelled predict split): exact match
and F1 (official SQuAD scoring) by gold answer length and for answerable / unanswerable questions, and the
worst-scored answers."""

from __future__ import annotations

from typing import Any

from lit_ft.report.charts import bar_chart
from lit_ft.report.run import RunFiles
from lit_ft.report.section import Section, Table
from lit_ft.tasks.question_answering.squad_metric import score_example

ERRORS_SHOWN = 10
TITLE = "Question answering analysis"
# (label, shortest, longest) gold answer length in words
LENGTHS = [("no answer", 0, 0), ("1 word", 1, 1), ("2 words", 2, 2), ("3-4 words", 3, 4), ("5-8 words", 5, 8),
           ("9+ words", 9, 10**9)]


def question_answering_sections(run: RunFiles) -> list[Section]:
    found = run.predictions("gold_answers", "answer")
    if found is None:
        return [Section(TITLE, "No prediction records with gold answers: run `lit_ft test --ckpt_path "
                               "best` (it writes test_predictions.jsonl), or predict on a split with answers.")]
    source, records = found
    options = (run.config.get("model") or {}).get("task_options") or {}
    version_2 = bool(options.get("version_2_with_negative")) or any(not r["gold_answers"] for r in records)
    scored = [(r, *score_example(r["gold_answers"], r["answer"], version_2)) for r in records]
    by_length = groups(scored, answer_length)
    by_kind = groups(scored, lambda r: "has answer" if r["gold_answers"] else "no answer")
    chart = bar_chart("scores_by_answer_length", "exact match / F1 by gold answer length", list(by_length),
                      {"exact match": [g[1] for g in by_length.values()], "f1": [g[2] for g in by_length.values()]},
                      ylim=(0.0, 100.0))
    rules = "SQuAD v2.0" if version_2 else "SQuAD v1.1"
    text = (f"From `{source}`: {len(records)} questions, scored by the {rules} rules "
            "(percentages; each prediction scores its best gold answer).")
    tables = [_group_table("by_answer_length", "gold answer length", by_length),
              _group_table("by_has_answer", "question", by_kind), worst_answers(scored)]
    return [Section(TITLE, text, [chart], tables)]


def answer_length(record: dict[str, Any]) -> str:
    """The length bucket of the question's first gold answer, in words; `no answer` when it has none."""
    golds = record["gold_answers"]
    words = max(len(golds[0].split()), 1) if golds else 0
    return next(label for label, low, high in LENGTHS if low <= words <= high)


def groups(scored: list[tuple[dict[str, Any], float, float]], key: Any) -> dict[str, tuple[int, float, float]]:
    """Per group (in LENGTHS order where it applies): (questions, mean exact match, mean F1), in percent."""
    found: dict[str, list[tuple[float, float]]] = {}
    for record, exact, f1 in scored:
        found.setdefault(key(record), []).append((exact, f1))
    order = [label for label, _, _ in LENGTHS] + ["has answer"]
    return {g: (len(v), 100 * sum(e for e, _ in v) / len(v), 100 * sum(f for _, f in v) / len(v))
            for g, v in sorted(found.items(), key=lambda item: order.index(item[0]))}


def _group_table(name: str, what: str, found: dict[str, tuple[int, float, float]]) -> Table:
    return Table(name, [what, "questions", "exact match", "f1"], [[g, *v] for g, v in found.items()])


def worst_answers(scored: list[tuple[dict[str, Any], float, float]]) -> Table:
    wrong = sorted((s for s in scored if s[1] < 1), key=lambda s: s[2])
    rows = [[r["id"], r.get("question", ""), " | ".join(r["gold_answers"]) or "(no answer)",
             r["answer"] or "(no answer)", 100 * f1] for r, _, f1 in wrong[:ERRORS_SHOWN]]
    return Table("errors", ["id", "question", "gold answers", "predicted", "f1"], rows,
                 f"{len(rows)} of the {len(wrong)} answers that are not an exact match, lowest F1 first")
