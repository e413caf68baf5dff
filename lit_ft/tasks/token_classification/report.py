"""The token-classification task's report sections (`TokenClassificationTask.report_sections`), from prediction
records with gold tags (`test_predictions.jsonl` of `lit_ft test`, or a labelled predict split): precision,
recall and F1 per entity type (exact spans, as seqeval's default mode) or per tag for plain tags (POS), and
sentences the model got wrong with their missed and spurious entities."""

from __future__ import annotations

import collections
from typing import Any

from lit_ft.report.charts import bar_chart
from lit_ft.report.run import RunFiles
from lit_ft.report.section import Section, Table
from lit_ft.tasks.classification_report import scores
from lit_ft.tasks.token_classification.schemes import Entity, get_entities

ERRORS_SHOWN = 10
TITLE = "Token classification analysis"


def token_classification_sections(run: RunFiles) -> list[Section]:
    found = run.predictions("gold_tags", "tags", "tokens")
    if found is None:
        return [Section(TITLE, "No prediction records with gold tags: run `lit_ft test --ckpt_path best` "
                               "(it writes test_predictions.jsonl), or predict on a split that has tags.")]
    source, records = found
    entity_level = "entities" in records[0]
    counts = entity_counts(records) if entity_level else tag_counts(records)
    names = sorted(counts)
    per_type = {n: scores(*counts[n]) for n in names}
    what = "entity type" if entity_level else "tag"
    chart = bar_chart("per_type_scores", f"precision / recall / F1 per {what}", names,
                      {m: [per_type[n][k] for n in names] for k, m in enumerate(("precision", "recall", "f1"))})
    table = Table("per_type", [what, "precision", "recall", "f1", "support"],
                  [[n, *per_type[n], counts[n][2]] for n in names])
    text = f"From `{source}`: {len(records)} sentences; " + (
        "entities count as found only with the exact span and type." if entity_level else "scores per word tag.")
    tables = [table, error_examples(records)] if entity_level else [table]
    return [Section(TITLE, text, [chart], tables)]


def _gold_tags(record: dict[str, Any]) -> list[str]:
    return [t or "O" for t in record["gold_tags"]]


def entity_counts(records: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """Per entity type: (true positives, predicted, gold)."""
    tp: collections.Counter[str] = collections.Counter()
    pred: collections.Counter[str] = collections.Counter()
    gold: collections.Counter[str] = collections.Counter()
    for r in records:
        g, p = set(get_entities(_gold_tags(r))), set(get_entities([t or "O" for t in r["tags"]]))
        for counter, found in ((tp, g & p), (pred, p), (gold, g)):
            counter.update(e.type for e in found)
    return {t: (tp[t], pred[t], gold[t]) for t in set(gold) | set(pred)}


def tag_counts(records: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """Per plain tag: (words tagged right, words predicted with it, gold words with it)."""
    tp: collections.Counter[str] = collections.Counter()
    pred: collections.Counter[str] = collections.Counter()
    gold: collections.Counter[str] = collections.Counter()
    for r in records:
        for g, p in zip(r["gold_tags"], r["tags"], strict=True):
            gold[g] += 1
            pred[p] += 1
            tp[g] += g == p
    return {t: (tp[t], pred[t], gold[t]) for t in set(gold) | set(pred) if t is not None}


def error_examples(records: list[dict[str, Any]]) -> Table:
    """The first sentences whose predicted entities differ from the gold ones."""
    rows: list[list[Any]] = []
    wrong = 0
    for r in records:
        gold, pred = set(get_entities(_gold_tags(r))), set(get_entities([t or "O" for t in r["tags"]]))
        if gold == pred:
            continue
        wrong += 1
        if len(rows) < ERRORS_SHOWN:
            rows.append([r["id"], " ".join(r["tokens"]), _show(gold, r["tokens"]), _show(pred, r["tokens"]),
                         _show(gold - pred, r["tokens"]), _show(pred - gold, r["tokens"])])
    return Table("errors", ["id", "sentence", "gold", "predicted", "missed", "spurious"], rows,
                 f"{len(rows)} of the {wrong} sentences with an entity error")


def _show(entities: set[Entity], tokens: list[str]) -> str:
    return "; ".join(f"{e.type}: {' '.join(tokens[e.start:e.end])}" for e in sorted(entities, key=lambda e: e.start))
