"""lit_ft's reaches into other libraries' private names: each registered in its library's adapter module, and
each still there, with the signature lit_ft calls or overrides, in the installed versions
(lit_ft.adapters.library_access)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import lit_ft
from lit_ft.adapters.library_access import ADAPTERS, Access, all_accesses, resolve

LIT_FT = Path(lit_ft.__file__).parent
# lit_ft's own private names reached on another object, and the stdlib's documented `os._exit`
OWN_PRIVATE = {("data_summary.py", "getattr(datamodule, '_features', None)"), ("sandbox_child.py", "os._exit")}


def _trainer() -> Any:
    from lightning.pytorch import Trainer

    return Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def _frozen_trial() -> Any:
    import optuna

    return optuna.trial.create_trial(value=1.0)


def _classwise() -> Any:
    from torchmetrics.classification import MulticlassAccuracy
    from torchmetrics.wrappers import ClasswiseWrapper

    return ClasswiseWrapper(MulticlassAccuracy(num_classes=2, average=None))


def _wandb_logger() -> Any:
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(offline=True)  # no run starts until the experiment is used


def _ddp() -> Any:
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(find_unused_parameters=True)


def _checkpoint() -> Any:
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint()


def _module() -> Any:
    from lightning.pytorch import LightningModule

    return LightningModule()


def _dataset() -> Any:
    import datasets

    return datasets.Dataset.from_dict({"text": ["a"]})


# instances whose `__init__` sets the private attributes lit_ft reads (others: checked in the class's source)
INSTANCES: dict[str, Callable[[], Any]] = {
    "lightning.pytorch.callbacks.ModelCheckpoint": _checkpoint,
    "lightning.pytorch.loops.fit_loop._FitLoop": lambda: _trainer().fit_loop,
    "lightning.pytorch.Trainer": _trainer,
    "lightning.pytorch.trainer.connectors.signal_connector._SignalConnector": lambda: _trainer()._signal_connector,
    "lightning.pytorch.LightningModule": _module,
    "lightning.pytorch.strategies.DDPStrategy": _ddp,
    "lightning.pytorch.loggers.WandbLogger": _wandb_logger,
    "torchmetrics.wrappers.ClasswiseWrapper": _classwise,
    "torch.optim.AdamW": lambda: torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), fused=True),
    "torch._dynamo.eval_frame.OptimizedModule": lambda: torch.compile(torch.nn.Linear(2, 2)),
    "optuna.trial.FrozenTrial": _frozen_trial,
    "datasets.Dataset": _dataset,
}


def _assigned_in_source(cls: type, name: str) -> bool:
    pattern = re.compile(rf"self\.{re.escape(name)}\s*[:=]")
    return any(pattern.search(inspect.getsource(klass)) for klass in cls.__mro__[:-1]
               if not klass.__module__.startswith("builtins"))


ACCESSES = all_accesses()


@pytest.mark.parametrize(("adapter", "access"), ACCESSES,
                         ids=[f"{a.rpartition('.')[2]}:{x.owner.rpartition('.')[2]}.{x.name}" for a, x in ACCESSES])
def test_private_name_is_there(adapter: str, access: Access) -> None:
    """The name exists in the installed library, with the parameters lit_ft calls or overrides it with."""
    if access.owner.split(".")[0] == "optuna":
        pytest.importorskip("optuna")
    owner = resolve(access.owner)
    where = f"{access.owner}.{access.name} (listed in {adapter}, used by lit_ft.{access.used_in})"
    if access.kind == "instance attribute":
        factory = INSTANCES.get(access.owner)
        found = hasattr(factory(), access.name) if factory else _assigned_in_source(owner, access.name)
        assert found, f"{where} is gone: see the public alternative: {access.public}"
        return
    assert hasattr(owner, access.name), f"{where} is gone: see the public alternative: {access.public}"
    if access.params is not None:
        found_params = tuple(inspect.signature(getattr(owner, access.name)).parameters)
        assert found_params == access.params, f"{where} now takes {found_params}, lit_ft expects {access.params}"


def test_every_access_says_what_it_waits_for() -> None:
    assert {a for a, _ in ACCESSES} == set(ADAPTERS)
    for _, access in ACCESSES:
        assert access.public.strip() and access.used_in.strip(), access
        if access.kind in ("method", "override"):
            assert access.params is not None or access.owner == "torch", f"{access}: give the parameters checked"


def test_fsdp_metadata_copy_matches_lightning() -> None:
    from lit_ft.training.consolidate import FSDP_METADATA

    assert resolve("lightning.fabric.strategies.fsdp._METADATA_FILENAME") == FSDP_METADATA


def _private(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(r"_[a-zA-Z]\w*", name) is not None and not name.endswith("__")


def _reach(node: ast.AST) -> str | None:
    """The node as code when it reaches a private name of an object other than self, cls or super()."""
    if isinstance(node, ast.Attribute) and _private(node.attr):
        value = node.value
        own = isinstance(value, ast.Name) and value.id in ("self", "cls")
        own = own or (isinstance(value, ast.Call) and ast.unparse(value.func) == "super")
        return None if own else ast.unparse(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) > 1:
        named = node.func.id in ("getattr", "hasattr", "setattr") and isinstance(node.args[1], ast.Constant)
        return ast.unparse(node) if named and _private(node.args[1].value) else None  # type: ignore[attr-defined]
    if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith(("lit_ft", "__future__")):
        names = [*node.module.split("."), *(alias.name for alias in node.names)]
        return ast.unparse(node) if any(n.startswith("_") for n in names) else None
    return None


def _private_reaches(path: Path) -> list[str]:
    """`x._name` on an object other than self/cls/super(), `getattr(x, "_name")`, and imports of private names."""
    return [reach for node in ast.walk(ast.parse(path.read_text())) if (reach := _reach(node)) is not None]


def test_private_names_only_in_adapters() -> None:
    """Outside the adapter modules, lit_ft reaches no other object's private names (its own aside)."""
    adapters = {name.rpartition(".")[2] + ".py" for name in ADAPTERS}
    stray = [f"{path.relative_to(LIT_FT)}: {reach}" for path in sorted(LIT_FT.rglob("*.py"))
             if path.name not in adapters for reach in _private_reaches(path)
             if (path.name, reach) not in OWN_PRIVATE]
    assert not stray, "go through the library's adapter module (lit_ft/adapters/):\n" + "\n".join(stray)


def _library_subclasses() -> list[type]:
    classes = []
    for info in pkgutil.walk_packages([str(LIT_FT)], "lit_ft."):
        if info.name in ("lit_ft.__main__", "lit_ft.generation.sandbox_child") or ".resources" in info.name:
            continue
        module = importlib.import_module(info.name)
        classes += [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == info.name
                    and any(not b.__module__.startswith(("lit_ft", "builtins")) for b in c.__mro__[1:])]
    return classes


def test_private_overrides_are_registered() -> None:
    """Every private method or attribute of a library base class that a lit_ft subclass defines, overrides or
    uses on `self` is listed in an adapter (so the check above covers it)."""
    registered = {(resolve(a.owner), a.name) for _, a in ACCESSES if isinstance(resolve(a.owner), type)}
    unlisted = []
    for cls in _library_subclasses():
        source = inspect.getsource(cls)
        names = set(re.findall(r"(?:self|super\(\))\.(_[a-zA-Z]\w*)", source))
        names |= set(re.findall(r"def (_[a-zA-Z]\w*)", source))
        for name in sorted(n for n in names if not n.endswith("__")):
            for base in cls.__mro__[1:]:
                if base.__module__.startswith(("lit_ft", "builtins")):
                    continue
                if name in vars(base) or re.search(rf"self\.{name}\b", inspect.getsource(base)):
                    if not any(issubclass(base, owner) and n == name for owner, n in registered) and \
                            not any(issubclass(owner, base) and n == name for owner, n in registered):
                        unlisted.append(f"{cls.__module__}.{cls.__qualname__}.{name} ({base.__qualname__})")
                    break
    assert not unlisted, "register these in the library's adapter module:\n" + "\n".join(unlisted)


@pytest.mark.parametrize("package", ["lightning", "transformers"])
def test_pinned_to_the_tested_minor(package: str) -> None:
    """pyproject.toml allows one minor version of the libraries whose private names lit_ft reaches, and the
    installed one (the version these tests ran on) is in it."""
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.version import Version

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    pyproject = tomllib.loads((LIT_FT.parent / "pyproject.toml").read_text())
    spec = next(Requirement(d).specifier for d in pyproject["project"]["dependencies"]
                if Requirement(d).name == package)
    bounds = {s.operator: Version(s.version) for s in spec}
    low, high = bounds[">="], bounds["<"]
    assert (high.major, high.minor) == (low.major, low.minor + 1), f"{package}: {spec} spans more than one minor"
    assert Version(version(package)) in spec, f"installed {package} {version(package)} is outside {spec}"


def test_docs_list_every_access() -> None:
    """docs/architecture.md ("Library internals") lists every registered access."""
    listed = (LIT_FT.parent / "docs" / "architecture.md").read_text().partition("## Library internals")[2]
    missing = [f"{a.owner}.{a.name}" for _, a in ACCESSES if f"{a.owner.rpartition('.')[2]}.{a.name}`" not in listed]
    assert not missing, f"add to docs/architecture.md's Library internals table: {missing}"
