"""The sections every run gets, whatever its task: the summary with the best checkpoint and the final / best value
of every metric, the curves (losses, each metric, learning rate, throughput) with the best checkpoint marked, and
the sample tables of each evaluation (`samples/`)."""

from __future__ import annotations

import json
from typing import Any

from lit_ft.report.charts import line_chart
from lit_ft.report.history import Points
from lit_ft.report.run import BestCheckpoint, RunFiles
from lit_ft.report.section import Chart, Section, Table

LOWER_IS_BETTER = {"loss", "mse", "mae", "rmse", "perplexity", "ter", "wer", "cer"}
SAMPLE_ROWS = 16  # rows shown per sample table
CELL_CHARS = 600  # longer texts are cut in sample tables


def group_of(key: str) -> str:
    """The chart a logged key is drawn in: `loss` (train and val together), one per metric, one for the metric's
    per-class (or per-type) values, `learning rate`, `throughput`."""
    if key == "train/lr" or key.startswith("lr-"):
        return "learning rate"
    if key.endswith(("_per_sec", "_per_second")):
        return "throughput"
    _, _, rest = key.partition("/")
    name, _, label = (rest or key).partition("/")
    return f"{name} by label" if label else name


def curve_groups(keys: list[str]) -> dict[str, list[str]]:
    """Keys by chart, in report order: loss first, then metrics, per-label metrics, learning rate, throughput."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(group_of(key), []).append(key)
    rank = {"loss": 0, "learning rate": 3, "throughput": 4}
    return dict(sorted(groups.items(), key=lambda g: (rank.get(g[0], 2 if g[0].endswith(" by label") else 1), g[0])))


def lower_is_better(key: str, best: BestCheckpoint | None) -> bool:
    if best is not None and key == best.monitor and best.mode in ("min", "max"):
        return best.mode == "min"
    parts = key.split("/")
    return (parts[1] if len(parts) > 1 else parts[0]) in LOWER_IS_BETTER


def best_value(key: str, points: Points, best: BestCheckpoint | None) -> float | None:
    values = [v for _, v in points]
    if not values:
        return None
    return min(values) if lower_is_better(key, best) else max(values)


def value_at(points: Points, step: int | None) -> float | None:
    """The value logged at `step`, else the last one logged before it."""
    if step is None:
        return None
    before = [v for s, v in points if s <= step]
    return before[-1] if before else None


def metric_keys(run: RunFiles) -> list[str]:
    """Keys of the metrics table: train/loss and every validation scalar."""
    return [k for k in run.history.series if k == "train/loss" or k.startswith("val/")]


def summary_section(run: RunFiles) -> Section:
    best, series = run.best, run.history.series
    text = (f"Run directory `{run.root}`; task `{run.task or 'unknown'}`; curves from "
            f"`{run.history.source or 'nothing logged'}`.")
    tables = []
    if best is not None:
        tables.append(Table("best_checkpoint", ["checkpoint", "monitor", "mode", "score", "step", "chosen by"],
                            [[best.path, best.monitor, best.mode, best.score, best.step, best.chosen_by()]],
                            "the best checkpoint"))
    rows = [[k, points[-1][1], best_value(k, points, best), value_at(points, best.logged_step if best else None)]
            for k, points in ((k, series[k]) for k in metric_keys(run))]
    tables.append(Table("metrics", ["metric", "final", "best", "at best checkpoint"], rows,
                        "best: the minimum of losses, mse, perplexity; the maximum of other metrics"))
    if "test" in run.metric_files:
        tables.append(Table("test_metrics", ["metric", "value"], [[k, v] for k, v in run.metric_files["test"].items()],
                            "metrics/test.json (lit_ft test)"))
    return Section("Summary", text, tables=tables)


def curves_section(run: RunFiles) -> Section:
    best = run.best
    step = best.logged_step if best is not None else None
    charts: list[Chart] = []
    for group, keys in curve_groups(list(run.history.series)).items():
        lines = {k: run.history.series[k] for k in keys}
        marked = best is not None and best.monitor in keys
        score = f"{best.score:.4g}" if best is not None and best.score is not None else "?"
        caption = f"best checkpoint {best.path}: {best.monitor} = {score}" if marked and best else ""
        charts.append(line_chart(f"curve_{slug(group)}", group, lines, step, caption=caption))
    text = "" if charts else "No logged curves (no CSV, TensorBoard or W&B log, no metrics/*.json)."
    return Section("Curves", text, charts=charts)


def samples_section(run: RunFiles) -> Section | None:
    """Each evaluation's sample table (generated text, decoded answers), by step."""
    tables = []
    for key, tables_by_step in run.samples.items():
        for step, rows in tables_by_step:
            columns = list(dict.fromkeys(c for row in rows for c in row))
            shown = [[_cut(row.get(c, "")) for c in columns] for row in rows[:SAMPLE_ROWS]]
            tables.append(Table(f"{key}_step{step}", columns, shown, f"{key} at step {step} ({len(rows)} rows)",
                                keep_whitespace=True))
    return Section("Samples per evaluation", tables=tables) if tables else None


def _cut(value: Any) -> Any:
    """A sample cell: numbers as they are, lists and dicts as JSON, long texts cut."""
    if isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:CELL_CHARS] + " …" if len(text) > CELL_CHARS else text


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower() or "chart"
