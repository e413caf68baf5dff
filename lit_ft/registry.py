"""Task registry: built-in and installed plugins via the `lit_ft.tasks` entry-point group, plus local modules.

Built-in tasks are registered in the project's own pyproject.toml exactly like a third-party plugin:

    [project.entry-points."lit_ft.tasks"]
    classification = "lit_ft.tasks.classification:ClassificationTask"

A local module (a `.py` file, a package directory or an importable module name) is loaded with
`load_plugin_module`; it registers its tasks by calling `register_task` (or by defining `Task` subclasses with a
`name`, found automatically; in a package, those its `__init__` imports from its submodules).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from lit_ft.errors import UserError

if TYPE_CHECKING:  # lit_ft.task imports torch: `lit_ft tasks` lists entry points without it
    from lit_ft.task import Task

ENTRY_POINT_GROUP = "lit_ft.tasks"


@dataclass(frozen=True)
class TaskEntry:
    name: str
    task: type[Task]
    source: str  # "built-in", "package <dist>", or "local module <path>"


_local: dict[str, TaskEntry] = {}


def register_task(task: type[Task], source: str = "local module") -> type[Task]:
    """Register a task class (usable as a decorator)."""
    if not task.name:
        raise UserError(f"task class {task.__qualname__} has no `name`; set the class attribute `name = '...'`")
    _local[task.name] = TaskEntry(task.name, task, source)
    return task


def _entry_point_tasks() -> dict[str, TaskEntry]:
    found: dict[str, TaskEntry] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        source = "built-in" if dist.replace("-", "_") == "lit_ft" else f"package {dist}"
        try:
            task = ep.load()
        except Exception as err:  # a broken plugin must not hide the others
            print(f"lit_ft: could not load task plugin '{ep.name}' from {dist}: {err}", file=sys.stderr)
            continue
        found[ep.name] = TaskEntry(ep.name, task, source)
    return found


def _where(task: type[Task]) -> str:
    data = getattr(task, "datamodule", None)
    where = f"{task.__module__}:{task.__qualname__}"
    return where + (f" / {data.__module__}:{data.__qualname__}" if data is not None else "")


def listed_tasks(load: bool = False) -> dict[str, tuple[str, str]]:
    """name -> (source, where) for `lit_ft tasks`. Installed plugins are listed from their entry points without
    importing them (fast), unless `load`; local modules are already imported and show their data module too."""
    if load:
        found = {name: (e.source, _where(e.task)) for name, e in _entry_point_tasks().items()}
    else:
        found = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            found[ep.name] = ("built-in" if dist.replace("-", "_") == "lit_ft" else f"package {dist}", ep.value)
    return {**found, **{name: (e.source, _where(e.task)) for name, e in _local.items()}}


def available_tasks() -> dict[str, TaskEntry]:
    """All registered tasks by name; local modules override installed ones of the same name."""
    return {**_entry_point_tasks(), **_local}


def get_task(name: str) -> type[Task]:
    tasks = available_tasks()
    if name not in tasks:
        raise UserError(
            f"unknown task '{name}'; registered tasks are {sorted(tasks)}. Install the plugin package, or name a "
            "local module with `--plugins path/to/module.py` (or `plugins: [...]` in the config)"
        )
    return tasks[name].task


def load_plugin_module(spec: str) -> ModuleType:
    """Import a local plugin from a file path or a module name and register the tasks it defines."""
    before = dict(_local)
    path = Path(spec)
    if path.is_dir():
        module, source = _import_package(spec, path), f"local module {path}"
    elif spec.endswith(".py") or path.exists():
        module, source = _exec_file(spec, path), f"local module {path}"
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as err:
            if err.name and spec.startswith(err.name):
                raise UserError(f"plugin module '{spec}' not found; give a .py file or an importable module name"
                                ) from err
            raise UserError(f"plugin module '{spec}' imports what is not installed ({err}); install it") from err
        source = f"local module {spec}"
    from lit_ft.task import Task

    for _, obj in inspect.getmembers(module, inspect.isclass):
        # a package's tasks live in its submodules (my_plugin.task) and are re-exported by its __init__
        own = obj.__module__ == module.__name__ or obj.__module__.startswith(f"{module.__name__}.")
        if issubclass(obj, Task) and obj is not Task and obj.name and own:
            register_task(obj, source)
    if all(before.get(name) is entry for name, entry in _local.items()):
        raise UserError(f"plugin module '{spec}' registers no task: define a `lit_ft.task.Task` subclass with a "
                        "`name` in it (or call `lit_ft.registry.register_task`)")
    return module


def _import_package(spec: str, path: Path) -> ModuleType:
    """A package directory (a plugin's source, not installed): imported by its name with its parent on sys.path,
    so its own imports and class paths (`my_plugin.MyData`) resolve as when installed."""
    name = path.resolve().name
    if not (path / "__init__.py").is_file() or not name.isidentifier():
        raise UserError(f"plugin '{spec}' is a directory but not a Python package (an __init__.py in a directory "
                        "named like a module); give a package directory, a .py file or an importable module name")
    parent = str(path.resolve().parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        raise UserError(f"plugin package '{path}' imports what is not installed ({err}); install it") from err
    found = Path(module.__file__ or "").resolve().parent
    if found != path.resolve():
        raise UserError(f"plugin package '{spec}': a package '{name}' was already imported from {found}; load that "
                        "one (by its module name) or uninstall it")
    return module


def _exec_file(spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise UserError(f"plugin module '{spec}' not found; give a .py file or an importable module name")
    name = f"lit_ft_plugin_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[name]
        raise UserError(f"{path}:{err.lineno}: syntax error in plugin module ({err.msg}); fix the plugin") from err
    except ImportError as err:
        del sys.modules[name]
        raise UserError(f"plugin module '{path}' imports what is not installed ({err}); install it") from err
    return module
