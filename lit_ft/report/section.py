"""What a report is made of: sections holding charts (PNG plus the numbers they were drawn from) and tables.

Task plugins build these in `Task.report_sections`; `lit_ft.report.page` renders them. The numbers of every chart
(`Chart.data`) go into the HTML as JSON and into `data.json` next to the PNGs, so what a picture shows can be
checked against an independent computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Chart:
    """One PNG image.

    Args:
        name: File stem, unique within its section's run (`confusion_matrix`).
        png: The encoded image.
        data: The numbers the image was drawn from (JSON-ready).
        caption: One line under the image.
    """

    name: str
    png: bytes
    data: dict[str, Any]
    caption: str = ""


@dataclass
class Table:
    """A table of values; `name` identifies it in the HTML (`data-table` attribute). `keep_whitespace` shows its
    texts as written (line breaks, indentation, runs of spaces: generated code), in a fixed-width font."""

    name: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    keep_whitespace: bool = False


@dataclass
class Section:
    """A titled part of the report: a short plain text (escaped; `backticks` show as code), then its charts,
    then its tables."""

    title: str
    text: str = ""
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
