"""docs/robustness.md lists each invariant with the tests that guard it: every test it names must exist, and every
fault and invariant test module must be named there, so the list and the suite cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "robustness.md"
GUARDS = ("test_row_invariant.py", "test_readers_property.py", "test_owned_outputs.py", "test_option_domains.py",
          "test_faults.py")


def named_tests() -> list[tuple[str, str]]:
    return re.findall(r"`tests/(test_\w+\.py)::(test_\w+)`", DOC.read_text())


def functions_of(module: str) -> set[str]:
    tree = ast.parse((ROOT / "tests" / module).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_listed_guard_exists() -> None:
    named = named_tests()
    assert len(named) >= 25
    missing = [f"{module}::{name}" for module, name in named if name not in functions_of(module)]
    assert missing == []


def test_every_invariant_module_is_listed() -> None:
    listed = {module for module, _ in named_tests()}
    assert [m for m in GUARDS if m not in listed] == []
