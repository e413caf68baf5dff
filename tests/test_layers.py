"""The layers of docs/architecture.md hold: the import contracts of pyproject.toml (`lint-imports`, also run by
`make lint`) are kept, no module of lit_ft imports itself back through others, and the old public paths that
users' YAML files and installed `lit_ft` scripts name still resolve to the moved classes."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept() -> None:
    # its own process: import-linter's command configures logging, which would change this process's for later tests
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", str(ROOT / "pyproject.toml")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def _cycle(imports: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules, or None (depth-first search, colouring the modules on the path)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(imports[module]):
            if state.get(imported) == 1:
                return [*path[path.index(imported):], imported]
            if imported not in state and (found := visit(imported)):
                return found
        state[module] = 2
        path.pop()
        return None

    return next((found for module in sorted(imports) if module not in state and (found := visit(module))), None)


def test_no_module_imports_itself_back() -> None:
    # imports under `if TYPE_CHECKING:` name types only and never run
    graph = grimp.build_graph("lit_ft", exclude_type_checking_imports=True, cache_dir=None)
    imports = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert _cycle(imports) is None, " -> ".join(_cycle(imports) or [])


def test_the_old_public_paths_resolve_to_the_moved_classes() -> None:
    # class paths of users' recipes and saved run configs (configs/callbacks/early_stopping.yaml before the move)
    for old, new in [
        ("lit_ft.checkpoint.TaskEarlyStopping", "lit_ft.training.checkpoint.TaskEarlyStopping"),  # move: keep
        ("lit_ft.checkpoint.TaskCheckpoint", "lit_ft.training.checkpoint.TaskCheckpoint"),  # move: keep
    ]:
        old_module, _, name = old.rpartition(".")
        new_module = new.rpartition(".")[0]
        assert getattr(importlib.import_module(old_module), name) is getattr(importlib.import_module(new_module), name)
    # the `lit_ft` script an environment installed before the move holds: `from lit_ft.cli import main`  # move: keep
    assert callable(importlib.import_module("lit_ft.cli").main)  # move: keep


def test_every_core_module_is_held_to_the_core_contract() -> None:
    """A new top-level module is core: it must be listed in the core's contract (or be an entry point or alias)."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c["name"].startswith("the core"))
    top_level = {f"lit_ft.{p.stem}" for p in (ROOT / "lit_ft").glob("*.py")}
    entry_points_and_aliases = {"lit_ft.__init__", "lit_ft.__main__", "lit_ft.cli", "lit_ft.checkpoint"}  # move: keep
    assert sorted(top_level - entry_points_and_aliases - set(core["source_modules"])) == []
