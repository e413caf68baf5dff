"""The report as one self-contained HTML file (charts inline as base64 PNG, no scripts or styles from the
network), with each chart also written as a PNG and every chart's numbers in `data.json`, in a folder next to it."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from lit_ft.io import write_bytes, write_text
from lit_ft.owned_dir import write_owned_dir
from lit_ft.report.section import Chart, Section, Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; max-width: 40em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f0f0f0; }
nav a { margin-right: 1em; }
table.keep-whitespace td { white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace; }
"""
GENERATOR = '<meta name="generator" content="lit_ft report">'  # marks a report lit_ft may replace
LEGACY_MARK = 'id="chart-data"'  # the data block every earlier report carries
# counts the images the browser decoded, so a headless browser's DOM dump shows that they render
LOADED = ("window.addEventListener('load', function () { document.body.setAttribute('data-images-decoded', "
          "Array.prototype.filter.call(document.images, function (i) { return i.naturalWidth > 0; }).length); });")


def files_folder(output: Path) -> Path:
    """The folder of a report's PNGs and data.json, next to its HTML file."""
    return output.with_name(f"{output.stem}_files")


def is_report(path: Path) -> bool:
    """Whether the file at `path` is a report lit_ft wrote (which a new report may replace)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return GENERATOR in text or LEGACY_MARK in text


def write_report(parts: list[tuple[str, list[Section]]], output: Path, title: str,
                 overwrite: bool = False) -> list[Path]:
    """Write `output` (HTML) and `<stem>_files/` (PNGs, data.json: an output directory lit_ft owns, see
    `lit_ft.owned_dir`); `parts` are (heading, sections) pairs, one per run plus the comparison. Returns the
    files written."""
    folder = files_folder(output)
    data: dict[str, Any] = {}
    body: list[str] = []
    nav: list[str] = []
    written: list[Path] = []

    def write(tmp: Path) -> None:
        for index, (heading, sections) in enumerate(parts):
            anchor = f"part{index}"
            nav.append(f'<a href="#{anchor}">{_e(heading)}</a>')
            body.append(f'<h1 id="{anchor}">{_e(heading)}</h1>')
            for section in sections:
                body.append(_section(section, anchor, tmp, data, written))
        write_text(json.dumps(data, indent=1, default=_json_safe), tmp / "data.json")

    write_owned_dir(folder, "report", write, overwrite, label="--output's folder",
                    fix="give another --output, or add --overwrite to write beside them (lit_ft never removes files "
                        "it did not write)")
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR}<title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n<nav>{''.join(nav)}</nav>\n{''.join(body)}\n"
        f'<script type="application/json" id="chart-data">{_script_json(data)}</script>\n'
        f"<script>{LOADED}</script>\n</body></html>\n"
    )
    write_text(page, output)
    return [output, folder / "data.json", *(folder / path.name for path in written)]


def _section(section: Section, anchor: str, folder: Path, data: dict[str, Any], written: list[Path]) -> str:
    out = [f"<section><h2>{_e(section.title)}</h2>"]
    if section.text:
        out.append(f"<p>{_text(section.text)}</p>")
    for chart in section.charts:
        name = f"{anchor}-{chart.name}"
        while name in data:
            name += "_"
        data[name] = chart.data
        path = folder / f"{name}.png"
        write_bytes(chart.png, path)
        written.append(path)
        out.append(_figure(chart, name))
    out.extend(_table(table, anchor) for table in section.tables)
    out.append("</section>")
    return "\n".join(out)


def _figure(chart: Chart, name: str) -> str:
    width, height = chart.data["pixels"]
    encoded = base64.b64encode(chart.png).decode("ascii")
    caption = f"<figcaption>{_e(chart.caption)}</figcaption>" if chart.caption else ""
    return (f'<figure><img data-chart="{_e(name)}" width="{width}" height="{height}" alt="{_e(chart.name)}" '
            f'src="data:image/png;base64,{encoded}">{caption}</figure>')


def _table(table: Table, anchor: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    kind = ' class="keep-whitespace"' if table.keep_whitespace else ""
    return (f'<table data-table="{_e(anchor)}-{_e(table.name)}"{kind}>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{'' if value is None else value}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, float):
        return f'<td class="num" data-value="{value!r}">{value:.4g}</td>'
    return f"<td>{_e(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))}</td>"


def _text(text: str) -> str:
    """Plain text, escaped, with `backtick` spans as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json_safe(value: Any) -> Any:
    return str(value)


def _script_json(data: dict[str, Any]) -> str:
    """JSON inside a <script> element, where `</` must not appear (it could close the element)."""
    return json.dumps(data, default=_json_safe).replace("</", "<\\/")
