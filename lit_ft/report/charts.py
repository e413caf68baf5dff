"""Charts as PNG bytes, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

matplotlib is imported here only, when a chart is drawn, so importing lit_ft stays light. Each function returns
a `Chart` whose `data` holds the numbers drawn and the image's size in pixels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lit_ft.report.section import Chart

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
LINE_SIZE = (5.6, 3.2)  # inches: 560 x 320 pixels, two side by side on a wide screen
MAX_INCHES = 14.0


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _chart(fig: Figure, name: str, data: dict[str, Any], caption: str, tight: bool = True) -> Chart:
    if tight:  # fits long tick labels; costs as much as drawing the chart again
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    width, height = fig.get_size_inches() * DPI
    return Chart(name, buf.getvalue(), {**data, "pixels": [round(width), round(height)]}, caption)


def line_chart(name: str, title: str, lines: dict[str, list[tuple[int, float]]], mark_step: int | None = None,
               mark_label: str = "best checkpoint", caption: str = "") -> Chart:
    """One line per label over optimizer steps; a dashed vertical line at `mark_step` (the best checkpoint)."""
    fig = _figure(LINE_SIZE)
    ax = fig.add_subplot()
    for label, points in lines.items():
        steps, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3, label=label)
    if mark_step is not None:
        ax.axvline(mark_step, color="tab:red", linestyle="--", linewidth=1, label=mark_label)
    marked = set() if mark_step is None else {mark_step}
    _step_axis(ax, {p[0] for points in lines.values() for p in points} | marked)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.subplots_adjust(left=0.15, right=0.97, top=0.9, bottom=0.15)  # short tick labels: fixed margins
    data = {"lines": {k: [list(p) for p in v] for k, v in lines.items()}, "mark_step": mark_step}
    return _chart(fig, name, data, caption, tight=False)


def _step_axis(ax: Any, steps: set[int]) -> None:
    """Whole-number ticks of optimizer steps; a single step gets a window around it (not +-4% of nothing)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    if len(steps) == 1:
        ax.set_xlim(min(steps) - 1, min(steps) + 1)


def heatmap(name: str, title: str, matrix: Sequence[Sequence[float]], labels: list[str], value_format: str = "{:g}",
            caption: str = "") -> Chart:
    """A square matrix (rows: gold, columns: predicted) with each cell's value written in it."""
    n = len(labels)
    side = min(MAX_INCHES, max(4.8, 0.5 * n + 2.5))
    fig = _figure((side, side * 0.85))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    top = max((v for row in matrix for v in row), default=0)
    if n <= 25:
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                color = "white" if top and value > top / 2 else "black"
                ax.text(j, i, value_format.format(value), ha="center", va="center", fontsize=7, color=color)
    return _chart(fig, name, {"labels": labels, "matrix": [list(row) for row in matrix]}, caption)


def bar_chart(name: str, title: str, categories: list[str], groups: dict[str, list[float]], caption: str = "",
              ylim: tuple[float, float] | None = (0.0, 1.0)) -> Chart:
    """Grouped bars: one group of bars per category, one bar per entry of `groups` (say precision, recall, f1)."""
    width = min(MAX_INCHES, max(LINE_SIZE[0], 0.25 * len(categories) * max(len(groups), 1) + 2))
    fig = _figure((width, LINE_SIZE[1]))
    ax = fig.add_subplot()
    bar = 0.8 / max(len(groups), 1)
    for k, (label, values) in enumerate(groups.items()):
        ax.bar([i + (k - (len(groups) - 1) / 2) * bar for i in range(len(categories))], values, bar, label=label)
    ax.set_xticks(range(len(categories)), categories, rotation=45 if len(categories) > 8 else 0, ha="right"
                  if len(categories) > 8 else "center", fontsize=8)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _chart(fig, name, {"categories": categories, "values": groups}, caption)
