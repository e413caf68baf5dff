"""Charts as PNG bytes, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

matplotlib is imported here only, when a chart is drawn, so importing lit_ft stays light. Each function returns
a `Chart` whose `data` holds the numbers drawn, the image's size in pixels and what was drawn around them
(`drawn`: the tick labels of each axis, the offset texts, the plot area and the legend's box in pixels).

Every tick label carries its whole value (`9.0261`, `3e-05`), never an offset or a multiplier written in a corner
of the axis (`+9.026`, `1e-5`) that a reader misses; legends sit beside the plot, where they cover no bar or line.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lit_ft.report.section import Chart

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
LINE_SIZE = (5.6, 3.2)  # inches: 560 x 320 pixels, two side by side on a wide screen
MAX_INCHES = 14.0
LEGEND_ROWS = 14  # legend entries (font size 8) that fit beside a plot of LINE_SIZE's height
LEGEND_COLUMN_INCHES = 1.6  # the figure widens by this for each further legend column


def _figure(size: tuple[float, float], legend: bool = True) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # the constrained layout makes room for a legend beside the plot; tight_layout keeps a heatmap's labels in
    fig = Figure(figsize=size, dpi=DPI, layout="constrained" if legend else "tight")
    FigureCanvasAgg(fig)
    return fig


def _chart(fig: Figure, name: str, data: dict[str, Any], caption: str) -> Chart:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    width, height = fig.get_size_inches() * DPI
    return Chart(name, buf.getvalue(), {**data, "pixels": [round(width), round(height)], "drawn": _drawn(fig)},
                 caption)


def _drawn(fig: Figure) -> dict[str, Any]:
    """What the saved image shows around the data, read back from the drawn figure (boxes in pixels from the
    image's bottom-left corner: [x0, y0, x1, y1])."""
    ax = fig.axes[0]

    def box(artist: Any) -> list[float]:
        return [round(float(v), 1) for v in artist.get_window_extent().extents]

    return {
        "ticks": {"x": _shown(ax.xaxis, ax.get_xlim()), "y": _shown(ax.yaxis, ax.get_ylim())},
        "offsets": [a.get_offset_text().get_text() for axes in fig.axes for a in (axes.xaxis, axes.yaxis)],
        "plot_area": box(ax),
        "legend": box(ax.get_legend()) if ax.get_legend() is not None else None,
    }


def _shown(axis: Any, limits: tuple[float, float]) -> list[str]:
    low, high = sorted(limits)
    return [t.get_text() for t in axis.get_ticklabels() if low <= t.get_position()[axis.axis_name == "y"] <= high]


def _whole_values(*axes: Any) -> None:
    from matplotlib.ticker import Formatter

    class WholeValues(Formatter):
        """Each tick's value in full, with the fewest significant digits that tell the ticks apart."""

        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:.6g}"

        def format_ticks(self, values: Any) -> list[str]:
            return whole_labels([float(v) for v in values])

    for axis in axes:
        axis.set_major_formatter(WholeValues())


def whole_labels(values: list[float]) -> list[str]:
    """Tick labels: `%g` with the fewest significant digits (never fewer than the integer part has) that write each
    tick's value (`1.75e-05`, not `1.7e-05`) and keep them distinct; a tick within rounding noise of 0 reads `0`."""
    scale = max((abs(v) for v in values), default=0.0)
    values = [0.0 if abs(v) <= scale * 1e-9 else v for v in values]
    ordered = sorted(values)
    spacing = min((b - a for a, b in zip(ordered, ordered[1:], strict=False) if b > a), default=scale or 1.0)
    whole = max((len(str(int(abs(v)))) for v in values), default=1)  # 120000, not 1.2e+05
    for digits in range(whole, 18):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels) and all(abs(float(t) - v) <= spacing * 1e-6 for t, v in zip(
                labels, values, strict=True)):
            return labels
    return [repr(v) for v in values]


def _legend_beside(ax: Any) -> None:
    entries = len(ax.get_legend_handles_labels()[1])
    columns = math.ceil(entries / LEGEND_ROWS) or 1  # a column of more rows would run past the image's foot
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False,
              ncols=columns)
    fig = ax.get_figure()
    fig.set_figwidth(min(MAX_INCHES, fig.get_figwidth() + LEGEND_COLUMN_INCHES * (columns - 1)))  # the plot keeps room


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
    _whole_values(ax.xaxis, ax.yaxis)
    _legend_beside(ax)
    data = {"lines": {k: [list(p) for p in v] for k, v in lines.items()}, "mark_step": mark_step}
    return _chart(fig, name, data, caption)


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
    fig = _figure((side, side * 0.85), legend=False)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    _whole_values(bar.ax.yaxis)
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
    # + 1 inch for the legend beside the bars
    width = min(MAX_INCHES, max(LINE_SIZE[0], 0.25 * len(categories) * max(len(groups), 1) + 3))
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
    _whole_values(ax.yaxis)
    _legend_beside(ax)
    return _chart(fig, name, {"categories": categories, "values": groups}, caption)
