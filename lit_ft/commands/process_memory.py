"""The host memory a training process holds before its model exists, measured in the estimating process.

`lit_ft estimate` has imported what `lit_ft fit` imports (Python, torch, Transformers, Lightning, jsonargparse,
the task's module), parsed the same recipe, loaded the backbone's tokenizer and config and built the model on the
`meta` device; it then imports the modules of the run's loggers, callbacks, plugins and strategy (W&B's SDK
alone is some 20 MiB). Its resident memory at that point is what the fit holds before its weights load, within
the few MiB that the trainer, the data loaders and the loggers' own state add. This is a measurement of this
machine's libraries, not a model of them: it differs between installs and versions by tens of MiB.
"""

from __future__ import annotations

import importlib
import resource
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")


def resident_bytes() -> int:
    """This process's resident memory now (`VmRSS`); where /proc is missing, its peak so far (`ru_maxrss`)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


def process_baseline(trainer_cfg: Any) -> int:
    """Bytes the fit process holds before its model exists (see the module docstring)."""
    for path in class_paths(trainer_cfg):
        module = path.rpartition(".")[0]
        try:
            importlib.import_module(module)
        except ImportError:
            continue  # fit will say what is missing; the estimate counts what is here
    return resident_bytes()


def class_paths(value: Any) -> Iterator[str]:
    """Every `class_path` in a parsed config section (loggers, callbacks, plugins, strategy)."""
    value = value.as_dict() if hasattr(value, "as_dict") else value  # a jsonargparse Namespace
    if isinstance(value, dict):
        if isinstance(value.get("class_path"), str):
            yield value["class_path"]
        for item in value.values():
            yield from class_paths(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from class_paths(item)
