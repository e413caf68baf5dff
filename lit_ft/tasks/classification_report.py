"""The classification task's report sections (`ClassificationTask.report_sections`), from prediction records with
gold labels (`test_predictions.jsonl` of `lit_ft test`, or `predictions.jsonl` of a labelled predict split):
single-label: the confusion matrix (counts and normalised by gold class), per-class precision / recall / F1 and
the most confident errors; multi-label: per-class scores; regression: the largest errors."""

from __future__ import annotations

from typing import Any

from lit_ft.report.charts import bar_chart, heatmap
from lit_ft.report.run import RunFiles
from lit_ft.report.section import Section, Table

ERRORS_SHOWN = 10
TITLE = "Classification analysis"


def classification_sections(run: RunFiles) -> list[Section]:
    single = run.predictions("gold_label", "label", "probabilities")
    if single is not None:
        return [single_label_section(*single)]
    multi = run.predictions("gold_labels", "labels", "probabilities")
    if multi is not None:
        return [multi_label_section(*multi)]
    regression = run.predictions("gold_score", "score")
    if regression is not None:
        return [regression_section(*regression)]
    return [Section(TITLE, "No prediction records with gold labels: run `lit_ft test --ckpt_path best` "
                           "(it writes test_predictions.jsonl), or predict on a split that has labels.")]


def confusion(records: list[dict[str, Any]], labels: list[str]) -> list[list[int]]:
    """counts[gold][predicted] over the records."""
    index = {name: i for i, name in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for r in records:
        counts[index[r["gold_label"]]][index[r["label"]]] += 1
    return counts


def scores(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """precision, recall, F1 (0 where undefined, as scikit-learn's zero_division=0)."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def single_label_section(source: str, records: list[dict[str, Any]]) -> Section:
    labels = list(records[0]["probabilities"])
    labels += sorted({r["gold_label"] for r in records} - set(labels))  # gold names the model lacks (none normally)
    counts = confusion(records, labels)
    normalised = [[c / sum(row) if sum(row) else 0.0 for c in row] for row in counts]
    per_class = [scores(counts[i][i], sum(row[i] for row in counts), sum(counts[i])) for i in range(len(labels))]
    correct = sum(counts[i][i] for i in range(len(labels)))
    text = (f"From `{source}`: {len(records)} examples, accuracy {correct / len(records):.4f} "
            f"({correct} correct). Rows: gold class; columns: predicted class.")
    charts = [
        heatmap("confusion_matrix", "confusion matrix (counts)", counts, labels, "{:d}"),
        heatmap("confusion_matrix_normalised", "confusion matrix (share of each gold class)", normalised, labels,
                "{:.2f}"),
        bar_chart("per_class_scores", "per-class precision / recall / F1", labels,
                  {name: [s[k] for s in per_class] for k, name in enumerate(("precision", "recall", "f1"))}),
    ]
    tables = [
        Table("confusion_matrix", ["gold \\ predicted", *labels], [[g, *row] for g, row in zip(labels, counts,
                                                                                              strict=True)]),
        Table("per_class", ["class", "precision", "recall", "f1", "support"],
              [[n, *s, sum(row)] for n, s, row in zip(labels, per_class, counts, strict=True)]),
        confident_errors(records),
    ]
    return Section(TITLE, text, charts, tables)


def confident_errors(records: list[dict[str, Any]]) -> Table:
    """The wrong predictions the model was surest of."""
    wrong = [r for r in records if r["label"] != r["gold_label"]]
    wrong.sort(key=lambda r: -r["probabilities"][r["label"]])
    pair = any("text_pair" in r for r in wrong)
    columns = ["id", "text", *(["text_pair"] if pair else []), "gold", "predicted", "p(predicted)", "p(gold)"]
    rows = [[r["id"], r.get("text", ""), *([r.get("text_pair", "")] if pair else []), r["gold_label"], r["label"],
             r["probabilities"][r["label"]], r["probabilities"].get(r["gold_label"], 0.0)]
            for r in wrong[:ERRORS_SHOWN]]
    return Table("confident_errors", columns, rows, f"the {len(rows)} most confident of {len(wrong)} errors")


def multi_label_section(source: str, records: list[dict[str, Any]]) -> Section:
    labels = list(records[0]["probabilities"])
    per_class, support = [], []
    for name in labels:
        gold = [name in r["gold_labels"] for r in records]
        pred = [name in r["labels"] for r in records]
        tp = sum(g and p for g, p in zip(gold, pred, strict=True))
        per_class.append(scores(tp, sum(pred), sum(gold)))
        support.append(sum(gold))
    exact = sum(set(r["labels"]) == set(r["gold_labels"]) for r in records)
    text = f"From `{source}`: {len(records)} examples, {exact} with exactly the gold label set."
    chart = bar_chart("per_class_scores", "per-class precision / recall / F1", labels,
                      {name: [s[k] for s in per_class] for k, name in enumerate(("precision", "recall", "f1"))})
    wrong = [r for r in records if set(r["labels"]) != set(r["gold_labels"])][:ERRORS_SHOWN]
    tables = [
        Table("per_class", ["class", "precision", "recall", "f1", "support"],
              [[n, *s, k] for n, s, k in zip(labels, per_class, support, strict=True)]),
        Table("errors", ["id", "text", "gold", "predicted"],
              [[r["id"], r.get("text", ""), ", ".join(r["gold_labels"]), ", ".join(r["labels"])] for r in wrong],
              "examples whose predicted label set is not the gold one"),
    ]
    return Section(TITLE, text, [chart], tables)


def regression_section(source: str, records: list[dict[str, Any]]) -> Section:
    ranked = sorted(records, key=lambda r: -abs(r["score"] - r["gold_score"]))
    mse = sum((r["score"] - r["gold_score"]) ** 2 for r in records) / len(records)
    rows = [[r["id"], r.get("text", ""), r["gold_score"], r["score"], r["score"] - r["gold_score"]]
            for r in ranked[:ERRORS_SHOWN]]
    return Section(TITLE, f"From `{source}`: {len(records)} examples, mse {mse:.4g}.", tables=[
        Table("largest_errors", ["id", "text", "gold", "predicted", "error"], rows, "the largest errors")])
