"""`lit_ft new-task`: the scaffolded plugin package is complete, builds as a wheel, trains through the CLI from its
source directory and passes its own tests as generated; bad names and existing directories are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lit_ft import registry
from lit_ft.commands.cli import main, run
from lit_ft.commands.new_task import placeholders, scaffold
from lit_ft.errors import UserError
from lit_ft.io import read_jsonl
from lit_ft.source import local_path

ROOT = Path(__file__).resolve().parents[1]
NAME = "scaffold_probe"  # not a task of the suite; the tests below unregister it again
FILES = ["README.md", "configs/scaffold_probe.yaml", "lit_ft_scaffold_probe/__init__.py",
         "lit_ft_scaffold_probe/data.py", "lit_ft_scaffold_probe/fixtures/tiny.jsonl", "lit_ft_scaffold_probe/task.py",
         "pyproject.toml", "tests/test_scaffold_probe.py"]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("new_task") / "lit_ft_scaffold_probe"
    main(["new-task", NAME, "--output", str(out)])
    return out


def test_the_package_is_complete_and_every_placeholder_filled(generated: Path) -> None:
    written = sorted(p.relative_to(generated).as_posix() for p in generated.rglob("*") if p.is_file())
    assert written == FILES
    for name in written:
        text = (generated / name).read_text()
        assert "{{" not in text and "}}" not in text, name
        if name.endswith(".py"):
            compile(text, name, "exec")
    pyproject = (generated / "pyproject.toml").read_text()
    assert 'scaffold_probe = "lit_ft_scaffold_probe:ScaffoldProbe"' in pyproject
    assert 'name = "lit-ft-scaffold-probe"' in pyproject
    assert placeholders("my_2nd_task")["{{Name}}"] == "My2ndTask"
    assert not list(generated.parent.glob(".*lit_ft-tmp*"))  # written under a temporary name, then renamed


def test_the_package_is_lint_clean_even_for_a_long_name(tmp_path: Path) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'lit_ft[dev]')")
    written = scaffold("customer_support_intent_v2", tmp_path / "pkg")
    assert len(written) == len(FILES)
    # the package's own ruff settings (its pyproject): line length 120, pyflakes, isort, bugbear, pyupgrade
    done = subprocess.run([ruff, "check", "--no-cache", "."], capture_output=True, text=True, cwd=tmp_path / "pkg")
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize(("name", "why"), [
    ("9lives", "not a lowercase Python identifier"), ("my-task", "not a lowercase Python identifier"),
    ("MyTask", "not a lowercase Python identifier"), ("class", "not a lowercase Python identifier"),
    ("classification", r"already registered \(built-in: lit_ft.tasks.classification:ClassificationTask\)"),
])
def test_bad_names_are_refused_with_one_line(name: str, why: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["new-task", name, "--output", str(tmp_path / "out")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lit_ft: error: task name '{name}' ")
    assert not list(tmp_path.iterdir())
    with pytest.raises(UserError, match=why):
        scaffold(name, tmp_path / "out")


def test_an_existing_output_directory_is_refused_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as done:
        main(["new-task", "fresh_task", "--output", str(out)])
    assert done.value.code == 2
    assert capsys.readouterr().err == f"lit_ft: error: --output '{out}' is not empty: it holds files lit_ft did " \
                                      "not write (notes.txt); give a new or empty directory (new-task never " \
                                      "overwrites)\n"
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_package_paths_name_files_inside_an_importable_package() -> None:
    assert local_path("package://lit_ft/resources/quickstart/train.csv") == local_path("lit_ft://quickstart/train.csv")
    with pytest.raises(UserError, match="no importable package 'no_such_pkg'; install it, load it with `--plugins"):
        local_path("package://no_such_pkg/fixtures/tiny.jsonl")


@pytest.mark.usefixtures("isolated_plugins")
def test_the_generated_recipe_fits_and_predicts_from_the_source_directory(
    generated: Path, tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    package = generated / "lit_ft_scaffold_probe"
    main(["tasks", "--plugins", str(package)])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"{NAME} "))
    assert line.split()[1:4] == ["local", "module", str(package)]
    common = ["--config", str(generated / "configs" / f"{NAME}.yaml"), "--plugins", str(package),
              "--model.backbone", str(tiny_bert), "--trainer.enable_progress_bar", "false"]
    fit = run(["fit", *common, "--trainer.max_steps", "2"])
    assert fit is not None and fit.trainer.global_step == 2
    rows = read_jsonl(package / "fixtures" / "tiny.jsonl")
    assert fit.model.hparams.info == {"label_names": ["negative", "positive"]}
    assert fit.datamodule.label_counts("train") == {"negative": 8, "positive": 8}
    assert (tmp_path / "runs" / NAME / "export" / "config.json").is_file()  # the recipe's own default_root_dir
    run(["predict", *common, "--ckpt_path", "best"])
    records = read_jsonl(tmp_path / "runs" / NAME / "predictions.jsonl")
    assert [r["id"] for r in records] == [str(i) for i in range(len(rows))]
    # the base data module's default `prediction_inputs`: the text and the gold label, as built-in records have
    assert [(r["text"], r["gold_label"]) for r in records] == [(row["text"], row["label"]) for row in rows]
    for record in records:
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)


def test_the_generated_package_passes_its_own_tests(generated: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", str(generated)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "6 passed, 1 deselected" in done.stdout  # the conformance kit's 5 + its own; DDP is the slow one
    # no deprecation (pytest's of class-scoped fixtures as instance methods, say), and none filtered away
    assert "warnings summary" not in done.stdout and "warning" not in done.stdout.splitlines()[-1], done.stdout
    assert "DeprecationWarning" not in (generated / "pyproject.toml").read_text()


def test_the_generated_package_builds_a_wheel_with_its_entry_point_and_fixture(generated: Path,
                                                                               tmp_path: Path) -> None:
    source = tmp_path / "src"
    subprocess.run(["cp", "-r", str(generated), str(source)], check=True)  # the build writes into its source
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(tmp_path / "dist"), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read("lit_ft_scaffold_probe-0.1.0.dist-info/entry_points.txt").decode()
    assert "lit_ft_scaffold_probe/fixtures/tiny.jsonl" in names and "lit_ft_scaffold_probe/task.py" in names
    assert entry_points.split() == ["[lit_ft.tasks]", "scaffold_probe", "=", "lit_ft_scaffold_probe:ScaffoldProbe"]


def test_plugin_directories_that_are_not_packages_are_refused(tmp_path: Path) -> None:
    (tmp_path / "no_init").mkdir()
    (tmp_path / "my-plugin").mkdir()
    (tmp_path / "my-plugin" / "__init__.py").write_text("")
    for name in ("no_init", "my-plugin"):
        with pytest.raises(UserError, match=f"plugin '.*{name}' is a directory but not a Python package"):
            registry.load_plugin_module(str(tmp_path / name))


@pytest.mark.usefixtures("isolated_plugins")
def test_a_plugin_directory_shadowed_by_an_imported_package_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lit_ft").mkdir()
    (tmp_path / "lit_ft" / "__init__.py").write_text("")
    with pytest.raises(UserError, match=r"a package 'lit_ft' was already imported from .*; load that one"):
        registry.load_plugin_module(str(tmp_path / "lit_ft"))
