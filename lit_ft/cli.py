"""Alias of `lit_ft.commands.cli` for console scripts installed before the commands moved there.

`pip install` writes `from lit_ft.cli import main` into the `lit_ft` script of an environment installed earlier;
this keeps that script working until the next install (pyproject now names `lit_ft.commands.cli:main`).
"""

from __future__ import annotations


def main() -> None:
    """Run the `lit_ft` command line (`lit_ft.commands.cli.main`)."""
    from lit_ft.commands.cli import main as run_main

    run_main()
