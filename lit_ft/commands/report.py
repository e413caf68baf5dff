"""`lit_ft report RUN_DIR [RUN_DIR ...] [--output FILE]`: one offline HTML report of one or several runs.

Everything comes from what the runs wrote (config.yaml, checkpoints/best.json, the CSV / TensorBoard / W&B
offline logs, metrics/*.json, predictions, samples/): no network, no W&B account, no model is built. Each run
gets the generic sections (`lit_ft.report.generic`) and its task plugin's own (`Task.report_sections`);
several runs also get a comparison (`lit_ft.report.compare`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lit_ft.commands.preflight import check_writable
from lit_ft.errors import UserError
from lit_ft.report.compare import compare_section
from lit_ft.report.generic import curves_section, samples_section, summary_section
from lit_ft.report.run import RunFiles
from lit_ft.report.section import Section

HELP = "an offline HTML report of one or several runs: curves, metrics, best checkpoint, task analyses"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lit_ft report", description=HELP)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (trainer.default_root_dir)")
    parser.add_argument("--output", "-o", default=None,
                        help="HTML file to write (default: RUN_DIR/report.html for one run, ./report.html for "
                             "several); its PNGs and data.json go to <name>_files/ next to it")
    parser.add_argument("--overwrite", action="store_true",
                        help="write <name>_files/ even if it holds files lit_ft did not write (they are kept)")
    parser.add_argument("--plugins", default="", help="comma-separated local plugin modules (third-party tasks)")
    args = parser.parse_args(argv)
    from lit_ft.registry import load_plugin_module

    for spec in filter(None, args.plugins.split(",")):
        load_plugin_module(spec)
    roots = [Path(r) for r in args.runs]
    output = Path(args.output) if args.output else (roots[0] / "report.html" if len(roots) == 1 else
                                                    Path("report.html"))
    if output.is_dir():
        raise UserError(f"--output '{output}' is a directory; give the HTML file to write, e.g. {output}/report.html")
    check_writable(str(output.parent), "--output")
    check_output(output, args.overwrite)
    written = build_report(roots, output, args.overwrite)
    charts = sum(1 for p in written if p.suffix == ".png")
    print(f"lit_ft: wrote {output} ({charts} charts; PNGs and data.json in {output.stem}_files/ next to it)")


def check_output(output: Path, overwrite: bool) -> None:
    """The HTML file replaces only an earlier report, and its folder is lit_ft's to write (`lit_ft.owned_dir`)."""
    from lit_ft.owned_dir import claim
    from lit_ft.report.page import files_folder, is_report

    if output.exists() and not is_report(output):
        raise UserError(f"--output '{output}' exists and is not a report lit_ft wrote; lit_ft never replaces a file "
                        "it did not write: give another --output")
    folder = files_folder(output)
    claim(folder, "report", overwrite, "--output's folder",
          fix="give another --output, or add --overwrite to write beside them (lit_ft never removes files it did "
              "not write)")


def build_report(roots: list[Path], output: Path, overwrite: bool = False) -> list[Path]:
    """Read the runs and write the report; returns the files written (the HTML first)."""
    from lit_ft.report.page import write_report

    runs = [RunFiles(root, name) for root, name in zip(roots, run_names(roots), strict=True)]
    parts = [(f"Run {run.name}", run_sections(run)) for run in runs]
    if len(runs) > 1:
        parts.append(("Comparison of the runs", [compare_section(runs)]))
    return write_report(parts, output, f"lit_ft report: {', '.join(run.name for run in runs)}", overwrite)


def run_names(roots: list[Path]) -> list[str]:
    """Directory names, or the paths as given where two runs share a name."""
    names = [root.resolve().name or str(root) for root in roots]
    return [str(root) if names.count(name) > 1 else name for root, name in zip(roots, names, strict=True)]


def run_sections(run: RunFiles) -> list[Section]:
    sections = [summary_section(run), curves_section(run), *task_sections(run)]
    samples = samples_section(run)
    return [*sections, samples] if samples is not None else sections


def task_sections(run: RunFiles) -> list[Section]:
    """The run's task plugin's own sections (`Task.report_sections`); none for an unknown task."""
    if run.task is None:
        return []
    from lit_ft.registry import get_task

    try:
        task = get_task(run.task)
    except UserError as err:
        return [Section("Task analyses", f"Not shown: {err}.")]
    return task.report_sections(run)
