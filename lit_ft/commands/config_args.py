"""What a command reading a recipe does with its arguments before parsing them (`fit` and the other trainer verbs,
`check`, `inspect-data`, `estimate`): the `LIT_FT_OVERLAY` config files, the plugin modules to load, the config files
checked before the slow imports. Kept apart from `lit_ft.commands.cli` so that reading a recipe
(`lit_ft.commands.recipe`) does not import the entry point."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from lit_ft.commands.preflight import config_files, load_yaml
from lit_ft.errors import UserError

PLUGINS_ENV = "LIT_FT_PLUGINS"
OVERLAY_ENV = "LIT_FT_OVERLAY"


def plugin_specs(argv: list[str]) -> list[str]:
    """Plugin modules named on the command line, in config files, or in LIT_FT_PLUGINS (before parsing)."""
    specs = [s for s in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if s]
    for i, arg in enumerate(argv):
        key, _, value = arg.partition("=")
        value = value or (argv[i + 1] if i + 1 < len(argv) else "")
        if key == "--plugins":
            specs.extend(yaml.safe_load(value) if value.startswith("[") else filter(None, value.split(",")))
        elif key in ("--config", "-c") and Path(value).is_file():
            loaded = load_yaml(Path(value)) or {}
            specs.extend(loaded.get("plugins") or [] if isinstance(loaded, dict) else [])
    return specs


def with_overlays(argv: list[str]) -> list[str]:
    """Insert `--config FILE` for each file in LIT_FT_OVERLAY after the command's last `--config` (or after the
    verb): the overlay wins over the recipes, options given after the configs still win over the overlay."""
    overlays = [s for s in os.environ.get(OVERLAY_ENV, "").split(os.pathsep) if s]
    if not overlays:
        return argv
    for path in overlays:
        if not Path(path).is_file():
            raise UserError(f"{OVERLAY_ENV}: config file '{path}' does not exist; fix the path or unset {OVERLAY_ENV}")
    at = 1
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c"):
            at = i + 2
        elif arg.startswith("--config="):
            at = i + 1
    extra = [part for path in overlays for part in ("--config", path)]
    return [*argv[:at], *extra, *argv[at:]]


def prepare_config_command(argv: list[str]) -> None:
    """What a command reading a recipe needs before it parses `argv` (fit, and `check` / `inspect-data`)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config_files(argv)  # each exists and is YAML, or one line names the file and line (before the slow imports)
    from lit_ft import quiet

    quiet.install()  # warnings, library tips and reports that are noise in a lit_ft run (listed there)
    from lit_ft.registry import available_tasks, load_plugin_module

    for spec in plugin_specs(argv):
        load_plugin_module(spec)
    available_tasks()  # imports every task's data module, so `--data.help ClassificationData` resolves short names
