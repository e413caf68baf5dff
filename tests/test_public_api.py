"""The public API of `lit_ft`: every exported name imports (lazily, from the module `_PUBLIC` names), and the
one-file task of docs/plugins.md, written only against it, trains, validates and predicts through `--plugins`."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import torch
from helpers import QUIET

import lit_ft
from lit_ft.commands.cli import run
from lit_ft.io import read_jsonl
from lit_ft.source import load_file

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"

pytestmark = pytest.mark.usefixtures("single_thread")


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the imports under `if TYPE_CHECKING:` in lit_ft/__init__.py (what type checkers see)."""
    tree = ast.parse(Path(lit_ft.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names}


def test_every_public_name_imports_from_the_module_that_defines_it() -> None:
    assert sorted(lit_ft.__all__) == sorted(lit_ft._PUBLIC) == sorted(_type_checking_imports())
    assert _type_checking_imports() == lit_ft._PUBLIC
    # importing a submodule sets it on the package under its own name, which would hide a lazy name equal to it
    submodules = {p.stem for p in Path(lit_ft.__file__).parent.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert not submodules & set(lit_ft._PUBLIC)
    for name, module in lit_ft._PUBLIC.items():
        importlib.import_module(module)
        assert getattr(lit_ft, name) is getattr(importlib.import_module(module), name), name
    namespace: dict[str, object] = {}
    exec("from lit_ft import *", namespace)
    assert set(lit_ft.__all__) <= set(namespace) and set(lit_ft.__all__) <= set(dir(lit_ft))
    assert lit_ft.IGNORE == -100 and issubclass(lit_ft.UserError, ValueError)
    assert lit_ft.label_tokens({"inputs": {"labels": torch.tensor([[-100, 5, 6], [7, -100, -100]])}}, shift=1) == 2
    with pytest.raises(AttributeError, match="module 'lit_ft' has no attribute 'no_such_name'"):
        _ = lit_ft.no_such_name


def skeleton() -> str:
    """The code block of the section 'A complete task in one file' of docs/plugins.md."""
    section = PLUGINS_DOC.read_text().split("## A complete task in one file", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    return str(code)


def test_the_documented_task_file_uses_only_the_public_api() -> None:
    imported = [n for n in ast.walk(ast.parse(skeleton())) if isinstance(n, ast.ImportFrom | ast.Import)]
    ours = [n for n in imported if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("lit_ft")]
    assert [n.module for n in ours] == ["lit_ft"]
    assert all(not isinstance(n, ast.Import) or not n.names[0].name.startswith("lit_ft") for n in imported)
    assert {a.name for a in ours[0].names} <= set(lit_ft.__all__)


@pytest.mark.usefixtures("isolated_plugins")
def test_the_documented_task_file_fits_validates_and_predicts(tmp_path: Path, tiny_bert: Path) -> None:
    plugin = tmp_path / "my_tasks.py"
    plugin.write_text(skeleton())
    quickstart = "lit_ft://quickstart/{}.csv"
    common = ["--plugins", str(plugin), "--model.task", "polarity", "--data", "lit_ft_plugin_my_tasks.PolarityData",
              "--data.source.train", quickstart.format("train"), "--data.source.validation",
              quickstart.format("validation"), "--model.backbone", str(tiny_bert), "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.accelerator", "cpu",
              "--seed_everything", "0", *QUIET]
    fit = run(["fit", *common, "--trainer.max_steps", "2", "--model.learning_rate", "1e-3"])
    assert fit is not None and fit.trainer.global_step == 2
    assert fit.model.hparams.info == {"label_names": ["negative", "positive"]}
    assert type(fit.model.plugin).__module__ == "lit_ft_plugin_my_tasks"
    accuracy = float(fit.trainer.callback_metrics["val/accuracy"])  # the one validation, so the best checkpoint's
    run(["predict", *common, "--data.source.predict", quickstart.format("validation"), "--ckpt_path", "best"])
    records = read_jsonl(tmp_path / "run" / "predictions.jsonl")
    gold = load_file(quickstart.format("validation"))["label"]
    assert [r["id"] for r in records] == [str(i) for i in range(len(gold))]
    assert {r["label"] for r in records} <= {"negative", "positive"}
    hits = sum(r["label"] == g for r, g in zip(records, gold, strict=True))
    assert accuracy == pytest.approx(hits / len(gold), abs=1e-6)


def test_the_docs_list_every_data_module_helper_the_examples_call() -> None:
    """The one-file task above, the `lit_ft new-task` package and the example plugin call only members of
    `TaskDataModule` that docs/plugins.md's data side describes (as `name` or `name(...)`)."""
    from lit_ft.commands.new_task import TEMPLATES, fill, placeholders
    from lit_ft.datamodule import TaskDataModule

    sources = {"docs/plugins.md": skeleton(),
               "new-task data.py": fill((TEMPLATES / "{{package}}" / "data.py.tmpl").read_text(),
                                        placeholders("probe")),
               **{str(p.relative_to(ROOT)): p.read_text()
                  for p in (ROOT / "plugins" / "lit_ft_multiple_choice" / "lit_ft_multiple_choice").glob("*.py")}}
    data_side = PLUGINS_DOC.read_text().split("## The data side", 1)[1].split("\n## ", 1)[0]
    for where, code in sources.items():
        called = {node.attr for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name) and node.value.id == "self"}
        helpers = {name for name in called if not name.startswith("_") and hasattr(TaskDataModule, name)}
        undocumented = sorted(n for n in helpers if not re.search(rf"`{n}[(`]", data_side))
        assert not undocumented, f"{where} calls TaskDataModule.{undocumented} that docs/plugins.md does not list"


PUBLIC_SUBPACKAGES = ("lit_ft.testing",)  # documented in docs/plugins.md, with their own `__all__`
NOT_NAMES = {"lit_ft.json", "lit_ft.tasks"}  # the export's file name and the entry-point group, not Python names


def _public(module: str, name: str) -> bool:
    """Whether `from module import name` is lit_ft's public API."""
    if module == "lit_ft":
        return name in lit_ft.__all__
    return module in PUBLIC_SUBPACKAGES and name in importlib.import_module(module).__all__


def _lit_ft_imports(code: str) -> list[str]:
    """`module.name` of every lit_ft import in `code`; a whole module (`import lit_ft.x`) as `lit_ft.x.*`."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lit_ft":
            found += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [f"{a.name}.*" for a in node.names if a.name.split(".")[0] == "lit_ft" and a.name != "lit_ft"]
    return found


def test_the_example_plugin_and_the_new_task_package_import_only_public_names() -> None:
    from lit_ft.commands.new_task import TEMPLATES, fill, placeholders

    plugin = ROOT / "plugins" / "lit_ft_multiple_choice"
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in sorted(plugin.rglob("*.py"))}
    sources.update({str(p.relative_to(ROOT)): fill(p.read_text(), placeholders("probe"))
                    for p in sorted(TEMPLATES.rglob("*.py.tmpl"))})
    assert len([s for s in sources if s.startswith("plugins/")]) >= 6 and len(sources) >= 10
    for where, code in sources.items():
        private = [n for n in _lit_ft_imports(code) if not _public(*n.rsplit(".", 1))]
        assert not private, f"{where} imports {private}, which are not in lit_ft.__all__ (nor {PUBLIC_SUBPACKAGES})"


def test_every_lit_ft_name_docs_plugins_md_names_is_public() -> None:
    """What the plugin guide (and the report guide's section for plugins) tells authors to import or call:
    its code's imports and every `lit_ft.x` it names."""
    docs = PLUGINS_DOC.read_text() + (ROOT / "docs" / "report.md").read_text().split("## Third-party tasks")[1]
    code = "\n".join([*re.findall(r"```python\n(.*?)```", docs, re.DOTALL),
                      *(line.strip() for line in docs.splitlines() if re.match(r"\s+from lit_ft\S* import ", line))])
    named = set(_lit_ft_imports(code)) | (set(re.findall(r"`(lit_ft(?:\.\w+)+)", docs)) - NOT_NAMES)
    named = {n for n in named if n not in PUBLIC_SUBPACKAGES}
    assert "lit_ft.Task" in named and "lit_ft.testing.TaskConformance" in named
    private = sorted(n for n in named if not _public(*n.rsplit(".", 1)))
    assert not private, f"docs/plugins.md or docs/report.md tell plugin authors to use non-public {private}"
    for name in lit_ft.__all__:  # and the guide's table of public names leaves none out
        assert re.search(rf"`{name}[`(]", PLUGINS_DOC.read_text()), f"docs/plugins.md does not list `{name}`"
