"""Checks of the command line and config that need no data and no model: they run before anything is loaded.

Light to import (no Lightning, torch or transformers): `lit_ft.commands.cli` uses the YAML checks at startup.

Each failure is a `UserError` naming the file, key or value and the fix, so `lit_ft` prints one line (exit 2):
YAML syntax errors with file and line, jsonargparse's multi-line parse errors condensed to the key and the
problem, an unknown task with the registered ones, a data module of another task, an output directory that
cannot be written, and a `--ckpt_path` that is not a readable checkpoint or holds another task's model.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lit_ft.errors import UserError


def config_files(argv: list[str]) -> list[str]:
    """The `--config`/`-c` files of a command line, checked: each exists and is valid YAML."""
    found = []
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if key not in ("--config", "-c"):
            continue
        value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        path = Path(value)
        if not path.is_file():
            raise UserError(f"config file '{value}' does not exist; fix the --config path")
        load_yaml(path)
        found.append(value)
    return found


def load_yaml(path: Path) -> Any:
    """A YAML file's content; a syntax error names the file, line and column."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        at_end = "stream end" in str(err.problem) or "end of the stream" in str(err.problem)
        mark = err.context_mark if at_end and err.context_mark is not None else err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = err.problem or err.context or "invalid YAML"
        raise UserError(f"{where}: YAML syntax error: {problem}; fix that line of the config") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"config file '{path}' is not valid YAML ({err}); fix the file") from None


# a negative number in any spelling (`-3`, `-.5`, `-1e-3`, `-inf`): Python 3.11's argparse takes `-1e-3` for an option
_NEGATIVE_NUMBER = re.compile(r"-(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan)", re.IGNORECASE)


def join_negative_values(argv: list[str]) -> list[str]:
    """`--key -1e-3` as `--key=-1e-3`, so a negative value reaches the option (and its domain check) in both
    spellings instead of argparse reading it as an unknown option."""
    joined: list[str] = []
    for arg in argv:
        previous = joined[-1] if joined else ""
        if _NEGATIVE_NUMBER.fullmatch(arg) and previous.startswith("--") and "=" not in previous and previous != "--":
            joined[-1] = f"{previous}={arg}"
        else:
            joined.append(arg)
    return joined


_KEY = re.compile(r'Parser key "([^"]+)"')
_DETAILS = (
    re.compile(r"(Option '[^']+' is not accepted)"),
    re.compile(r"(Expected a (?!<class 'NoneType'>).*?)(?: - Expected a <class 'NoneType'>| Given value type:|$)"),
    re.compile(r"Problem with given class_path ('[^']+': (?!Parser key).*?)(?: - Expected a <class 'NoneType'>|$)"),
    re.compile(r"((?:U|u)nrecognized arguments: .*)"),
    re.compile(r"(.*invalid choice.*)"),
)


# a value outside a restricted number type (`lit_ft.domains`): the type, the value when the message gives it inline
_OUT_OF_DOMAIN = re.compile(r"Not of type (\w+): (?:(\S+) )?"
                            r"(?:does not conform to restriction (\S+(?: (?:and|or) \S+)*)|not an integer"
                            r"|invalid literal for \w+\(\) with base 10: '([^']*)'"
                            r"|could not convert string to float: '([^']*)')")
_GIVEN = re.compile(r"Given value: (\S+)|NestedArg\(key='[^']*', val='([^']*)'\)")


def condense_parse_error(message: str, command: str = "") -> str:
    """jsonargparse's error report (a tree of Union alternatives) as `key: problem; see --help`, or, for a value
    outside its option's domain, `key must be <domain> (got value); set key to <fix>`."""
    from lit_ft.domains import DOMAINS, domain_error  # imports jsonargparse: not at `lit_ft --help`

    flat = " ".join(message.split())
    keys = _KEY.findall(flat)
    domain = _OUT_OF_DOMAIN.search(flat)
    if keys and domain and domain.group(1) in DOMAINS:
        given = _GIVEN.search(flat, domain.end())
        value = next((v for v in (*domain.group(2, 4, 5), *(given.groups() if given else ())) if v), "?")
        return domain_error(".".join(_KEY.findall(flat[:domain.start()])), value, domain.group(1),
                            domain.group(3) or "")
    option = re.search(r"Option '([^']+)' is not accepted", flat)
    if option:
        keys.append(option.group(1))
    if len(keys) > 1 and "class_path" in flat:
        keys.insert(1, "init_args")
    detail = next((m.group(1).strip() for pattern in _DETAILS for m in [pattern.search(flat)] if m), flat)
    where = ".".join(keys)
    if where and detail.startswith(f'Parser key "{keys[0]}":'):
        detail = detail.split(":", 1)[1].strip()
    help_command = f"lit_ft {command} --help" if command else "lit_ft --help"
    elsewhere = _data_modules_accepting(option.group(1)) if option and keys[0] == "data" else []
    if elsewhere:
        detail += f" by this data module (it is an option of {', '.join(elsewhere)})"
    return f"{where + ': ' if where else ''}{detail}; see `{help_command}`"


def _data_modules_accepting(option: str) -> list[str]:
    """`SFTData (task sft)` for every registered task whose data module takes `option`: a misplaced option then
    says where it belongs (`packing` given to the seq2seq data)."""
    from lit_ft.registry import available_tasks

    found = []
    for name, entry in sorted(available_tasks().items()):
        data = getattr(entry.task, "datamodule", None)
        if data is not None and option in inspect.signature(data.__init__).parameters:
            found.append(f"{data.__qualname__} (task {name})")
    return found


def check_task_and_data(cfg: Any) -> None:
    """model.task is registered, its task_options are options it declares, of their types and within their domains
    (`lit_ft.task_options`), and data.class_path is a data module of that task."""
    from lit_ft.registry import available_tasks
    from lit_ft.task_options import check_task_options

    task = cfg.model.task
    tasks = available_tasks()
    if task not in tasks:
        raise UserError(f"unknown task '{task}' (model.task); registered tasks are {sorted(tasks)}: fix model.task, "
                        "or load a plugin with --plugins path/to/module.py")
    check_task_options(tasks[task].task, dict(cfg.model.get("task_options") or {}))
    data_class = _data_class(cfg)
    # a TaskDataModule's `data_tasks()`; other classes at most name one `task_name`
    named = getattr(data_class, "data_tasks", None)
    data_tasks = named() if callable(named) else tuple(filter(None, [getattr(data_class, "task_name", "")]))
    if data_class is not None and data_tasks and task not in data_tasks:
        expected = getattr(tasks[task].task, "datamodule", None)
        fix = f"set data.class_path to {expected.__module__}.{expected.__qualname__}" if expected else "fix data"
        names = " or ".join(f"'{t}'" for t in data_tasks)
        raise UserError(f"model.task is '{task}' but data.class_path {data_class.__qualname__} reads data for task "
                        f"{names}; {fix} or model.task to {names}")


def _data_class(cfg: Any) -> type | None:
    path = getattr(cfg.get("data"), "class_path", None) if cfg.get("data") is not None else None
    if not path:
        return None
    module, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        return None  # jsonargparse has already resolved it; nothing more to say


def check_writable(directory: str, setting: str) -> None:
    """An output directory lit_ft can create and write, checked before any data or model is loaded."""
    path = Path(directory).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{setting} '{directory}' cannot be created: '{existing}' is a file; choose another "
                        f"directory for {setting}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"{setting} '{directory}' is not writable ({err.strerror} in '{existing}'); choose a "
                        f"writable directory for {setting}") from None
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{setting} '{directory}' is not writable; choose a writable directory for {setting}")


def recipe_parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    """The parser of a verb that reads a recipe as `lit_ft fit` would (check, estimate, inspect-data): its
    `--config` files, and any fit option after them (`example` shows one)."""
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False, description=description,
        epilog=f"Any `lit_ft fit` option may follow the configs (for example {example}).")
    parser.add_argument("--config", "-c", action="append", default=[], metavar="FILE",
                        help="the recipe, as given to `lit_ft fit` (repeat to merge pieces)")
    return parser


def recipe_argv(configs: list[str], rest: list[str]) -> list[str]:
    """The fit arguments of a recipe verb: its `--config` files, then the options that followed them."""
    return [*(a for c in configs for a in ("--config", c)), *rest]
