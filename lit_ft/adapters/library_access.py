"""The registry of lit_ft's reaches into other libraries' private names, checked against the installed versions.

Every private attribute, method or module of a library that lit_ft uses is reached through that library's adapter
module (`ADAPTERS`), which lists each one as an `Access` with the public API it waits for. A library release may
rename or re-sign a private name without notice: `tests/test_library_internals.py` resolves every `Access` and
compares its signature, so an upgrade fails there, naming the access, instead of deep inside a run. Overrides of a
library class's private methods (`LitFtCLI._parse_ckpt_path`, ...) are listed too: they cannot be a function call.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

# one adapter per library; docs/architecture.md ("Library internals") lists their accesses
ADAPTERS = (
    "lit_ft.adapters.lightning",
    "lit_ft.adapters.transformers",
    "lit_ft.adapters.datasets",
    "lit_ft.adapters.torch",
    "lit_ft.adapters.torchmetrics",
    "lit_ft.adapters.jsonargparse",
    "lit_ft.adapters.sacrebleu",
    "lit_ft.adapters.optuna",
)

Kind = Literal["method", "override", "class attribute", "instance attribute", "module attribute"]


@dataclass(frozen=True)
class Access:
    """One private name lit_ft reaches.

    Args:
        owner: Dotted path of the class or module holding the name (`lightning.pytorch.cli.LightningCLI`).
        name: The private name (`_parse_ckpt_path`).
        kind: `method` (called), `override` (a lit_ft subclass overrides it), `class attribute`,
            `instance attribute` (set in the owner's `__init__`: checked on an instance) or `module attribute`.
        params: The parameter names of a method's signature as lit_ft calls or overrides it (None: not callable).
        public: The public alternative it waits for ("none yet: ..." where there is none).
        used_in: The lit_ft module(s) using it.
    """

    owner: str
    name: str
    kind: Kind
    public: str
    used_in: str
    params: tuple[str, ...] | None = None


def resolve(path: str) -> Any:
    """The object at a dotted path (`package.module.Class`): the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            found = getattr(found, attr)
        return found
    raise ImportError(f"nothing importable in '{path}'")


def all_accesses() -> list[tuple[str, Access]]:
    """Every registered access with the adapter module that lists it."""
    return [(adapter, access) for adapter in ADAPTERS for access in importlib.import_module(adapter).ACCESSES]
