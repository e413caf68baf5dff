"""Several runs side by side: every curve overlaid, a table of each metric's final and best value per run, and
the config keys whose values differ between the runs."""

from __future__ import annotations

from typing import Any

from lit_ft.report.charts import line_chart
from lit_ft.report.generic import best_value, curve_groups, metric_keys, slug
from lit_ft.report.run import RunFiles
from lit_ft.report.section import Section, Table

# keys that differ between any two runs and say nothing about them
IGNORED_KEYS = ("trainer.default_root_dir", "save_dir", "dirpath")


def compare_section(runs: list[RunFiles]) -> Section:
    return Section(
        "Curves, metrics and configs",
        "Curves of every run overlaid; the runs' final and best values; the config keys that differ.",
        charts=overlaid_curves(runs),
        tables=[metrics_table(runs), config_table(runs)],
    )


def overlaid_curves(runs: list[RunFiles]) -> list[Any]:
    keys = list(dict.fromkeys(k for run in runs for k in run.history.series))
    charts = []
    for group, members in curve_groups(keys).items():
        if group.endswith(" by label"):
            continue  # one line per class and run is unreadable; each run's own curves show them
        lines = {f"{run.name}: {k}": run.history.series[k] for run in runs for k in members
                 if k in run.history.series}
        charts.append(line_chart(f"compare_{slug(group)}", group, lines))
    return charts


def metrics_table(runs: list[RunFiles]) -> Table:
    keys = list(dict.fromkeys(k for run in runs for k in metric_keys(run)))
    columns = ["metric", *(f"{run.name} {what}" for run in runs for what in ("final", "best"))]
    rows = []
    for key in keys:
        row: list[Any] = [key]
        for run in runs:
            points = run.history.series.get(key, [])
            row += [points[-1][1] if points else None, best_value(key, points, run.best)]
        rows.append(row)
    return Table("compare_metrics", columns, rows, "final: the last value logged; best: min of losses, else max")


def config_table(runs: list[RunFiles]) -> Table:
    flat = [flatten(run.config) for run in runs]
    keys = sorted({k for f in flat for k in f})
    differing = [k for k in keys if not k.endswith(IGNORED_KEYS) and len({repr(f.get(k)) for f in flat}) > 1]
    rows = [[k, *(_show(f.get(k)) for f in flat)] for k in differing]
    return Table("config_differences", ["config key", *(run.name for run in runs)], rows,
                 "config.yaml keys whose values differ between the runs")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (`model.learning_rate`); lists are values."""
    if not isinstance(value, dict):
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _show(value: Any) -> Any:
    return "(not set)" if value is None else value if isinstance(value, (int, float, str)) else repr(value)
