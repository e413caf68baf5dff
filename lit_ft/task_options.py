"""A task's options (`model.task_options`) as its typed signature declares them: checked, listed and documented.

A task declares its options as the typed keyword arguments of its `__init__` (after `info`), with defaults, and
documents each in the class docstring's `Args:`. The config keeps `task_options` a plain dict (config pieces and
the command line merge it key by key, `--print_config` prints it); `check_task_options` holds the dict to the
signature before any weights load: an unknown key or a value of the wrong type is one line naming the key, the
value and the task (`TaskOptionsError`: `lit_ft check` lists it as a finding). `options_table` is the task's
options as a Markdown table (`lit_ft tasks --options TASK`, and the docs under docs/tasks/, which a test keeps
equal to it).

A plugin whose `__init__` takes `**options` keeps a free dict: nothing is checked or listed for it.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
import types
import typing
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lit_ft.adapters.jsonargparse import is_restricted_number
from lit_ft.domains import check_domains
from lit_ft.errors import UserError, one_line

if TYPE_CHECKING:
    from lit_ft.task import Task

PREFIX = "model.task_options"
_ARG = re.compile(r"^(\s+)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


class TaskOptionsError(UserError):
    """A `model.task_options` key the task does not declare, or a value not of its type or domain."""


@dataclass(frozen=True)
class TaskOption:
    """One option of a task: its name, type annotation, default (`inspect.Parameter.empty`: required) and doc."""

    name: str
    kind: Any
    default: Any
    doc: str


def task_options(task: type[Task]) -> dict[str, TaskOption] | None:
    """The options `task` declares, by name; None for a task whose `__init__` takes `**options` (a free dict)."""
    from lit_ft.task import Task

    init = task.__init__
    if init is Task.__init__:
        return {}  # the base refuses any option
    params = list(inspect.signature(init).parameters.values())[2:]  # self, info
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    try:
        hints = typing.get_type_hints(init)
    except (NameError, TypeError):
        hints = {}  # annotations that do not resolve here: the options are listed untyped
    docs = _arg_docs(task)
    return {p.name: TaskOption(p.name, hints.get(p.name, Any), p.default, docs.get(p.name, ""))
            for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def check_task_options(task: type[Task], options: dict[str, Any] | None) -> dict[str, Any]:
    """`options` as `task` reads them (earlier names moved by `upgrade_options`), each key a declared option and
    each value of its type and domain; otherwise a one-line `UserError`. Required options are left to the task."""
    with warnings.catch_warnings():  # the renamed-option warning is given once, when the task is built
        warnings.simplefilter("ignore")
        upgraded = task.upgrade_options(dict(options or {}))
    declared = task_options(task)
    if declared is None:
        return upgraded
    for key in upgraded:
        if key not in declared:
            raise TaskOptionsError(_unknown(task, key, sorted(declared)))
    try:
        check_domains(task.__init__, {k: v for k, v in upgraded.items() if _is_number(v)}, PREFIX)
    except UserError as err:
        raise TaskOptionsError(str(err)) from None
    for key, value in upgraded.items():
        _check_type(task, declared[key], value)
    return upgraded


def options_table(task: type[Task]) -> str:
    """The Markdown table of `task`'s options: name, type, default and doc, one row each."""
    declared = task_options(task)
    if declared is None:
        return f"Task '{task.name}' reads `model.task_options` itself (its `__init__` takes `**options`).\n"
    if not declared:
        return f"Task '{task.name}' takes no `model.task_options`.\n"
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for option in declared.values():
        default = "(required)" if option.default is inspect.Parameter.empty else f"`{_yaml(option.default)}`"
        rows.append(f"| `{option.name}` | {type_name(option.kind)} | {default} | {option.doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def type_name(kind: Any) -> str:
    """`float ≥0 and ≤1`, `int >0 or null`, `one of auto, unsafe`: a type annotation as a reader says it."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(str(_yaml(a)) for a in args)
    if kind is type(None):
        return "null"
    if args and typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if is_restricted_number(kind):  # jsonargparse's restricted numbers: "float restricted to be ≥0 and ≤1"
        return str(kind.__doc__ or kind.__name__).replace(" restricted to be ", " ")
    if kind is Any:
        return "any"
    origin = typing.get_origin(kind)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_name(a) for a in args)}]"
    return str(getattr(kind, "__name__", kind))


def _unknown(task: type[Task], key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    listed = ", ".join(known) if known else "none"
    return (f"{PREFIX}.{key} is not an option of task '{task.name}' (its options: {listed}); {hint}"
            f"fix or drop the key (`lit_ft tasks --options {task.name}` lists each with its type and default)")


def _check_type(task: type[Task], option: TaskOption, value: Any) -> None:
    if option.kind is Any:
        return
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--value", type=option.kind)
    try:
        parser.parse_object({"value": value})
    except (argparse.ArgumentError, ValueError, TypeError):
        key = f"{PREFIX}.{option.name}"
        raise TaskOptionsError(f"{key} is {one_line(repr(value))} ({type(value).__name__}) but task '{task.name}' "
                               f"takes {type_name(option.kind)} there; set {key} to a value of that type") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _yaml(value: Any) -> Any:
    """A default as a recipe writes it: `null`, `true`, `[a, b]`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_yaml(v)) for v in value) + "]"
    return value


def _arg_docs(task: type[Task]) -> dict[str, str]:
    """The `Args:` entries of the Google docstrings of `task` and its bases (the nearest class wins), joined."""
    docs: dict[str, str] = {}
    for cls in reversed(task.__mro__):
        docs.update(_parse_args(inspect.getdoc(cls) or "") if "__doc__" in vars(cls) else {})
    return docs


def _parse_args(docstring: str) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    lines = docstring.splitlines()
    if "Args:" not in (line.strip() for line in lines):
        return {}
    start = [line.strip() for line in lines].index("Args:") + 1
    indent: int | None = None
    current: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        match = _ARG.match(line)
        if indent is None and match:
            indent = width
        if indent is None or width < indent:
            break  # the end of the section
        if match and width == indent:
            current = found.setdefault(match.group(2), [])
            current.append(match.group(3).strip())
        else:
            current.append(line.strip())
    return {name: " ".join(parts) for name, parts in found.items()}
