"""The `lit_ft` command surface: the verbs in `--help`, fast start without Lightning, short class names in
`--data.help`, local plugins in `lit_ft tasks`, and the LIT_FT_OVERLAY config overlay."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lit_ft import registry
from lit_ft.commands import cli as lit_cli
from lit_ft.commands.cli import COMMANDS, OVERLAY_ENV, PLUGINS_ENV, run, with_overlays
from lit_ft.errors import UserError

HEAVY = ("torch", "lightning", "transformers", "datasets")
PLUGIN = '''
from lit_ft.tasks.classification import ClassificationData, ClassificationTask


class QuizData(ClassificationData):
    task_name = "docs_quiz"


class QuizTask(ClassificationTask):
    name = "docs_quiz"
    datamodule = QuizData
'''


def lit_ft(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`lit_ft ARGS` as a real process (the console script when installed)."""
    code = "import sys; from lit_ft.commands.cli import main; sys.argv[0] = 'lit_ft'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_help_lists_every_verb_and_trainer_verbs_match_lightning() -> None:
    from lit_ft.commands.trainer_cli import trainer_verbs

    trainer = [name for name, cmd in COMMANDS.items() if cmd.main is None]
    assert trainer == trainer_verbs() == ["fit", "validate", "test", "predict"]
    assert {"export", "tasks"} <= set(COMMANDS)
    done = lit_ft("--help")
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("commands")[1].split("options:")[0]
    listed = [line.split()[0] for line in table.splitlines()[1:] if line]
    assert listed == list(COMMANDS)


def test_help_and_tasks_start_without_torch_or_lightning() -> None:
    code = (  # `import lit_ft` and listing its public names load none of them
        "import sys\nimport lit_ft\nassert lit_ft.__all__ and set(lit_ft.__all__) <= set(dir(lit_ft))\n"
        "from lit_ft.commands.cli import run\nrun(['--help'])\nrun(['tasks'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert "classification" in done.stdout and "built-in" in done.stdout


def test_unknown_verb_and_no_verb_exit_2_with_the_verbs() -> None:
    done = lit_ft("fitt")
    assert done.returncode == 2
    assert done.stderr.strip() == (  # every verb of the one table, in its order
        f"lit_ft: error: unknown command 'fitt'; the commands are {', '.join(COMMANDS)} (see `lit_ft --help`)"
    )
    assert list(COMMANDS)[:6] == ["fit", "validate", "test", "predict", "export", "tasks"]
    bare = lit_ft()
    assert bare.returncode == 2 and "commands" in bare.stderr and bare.stdout == ""


@pytest.mark.parametrize("name, module", [
    ("ClassificationData", "lit_ft.tasks.classification"),
    ("TokenClassificationData", "lit_ft.tasks.token_classification.data"),
    ("SFTData", "lit_ft.tasks.sft.data"),
    ("MultipleChoiceData", "lit_ft_multiple_choice.data"),
])
def test_data_help_takes_short_class_names(name: str, module: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run(["fit", "--data.help", name])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert re.search(rf"Help for --data.help={module.split('.')[0]}[\w.]*\.{name}\n", out), out[:2000]
    assert "--data.batch_size" in out and "--data.source.help" in out


def test_data_source_options_reachable_from_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run(["fit", "--data.help", "ClassificationData", "--data.source.help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for field in ("hub", "hub_config", "train", "validation", "test", "predict", "validation_fraction", "encoding"):
        assert f"--data.source.{field} " in out, field


def _tasks_line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_tasks_shows_a_local_plugin_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(registry, "_local", {})
    plugin = tmp_path / "my_task.py"
    plugin.write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    run(["tasks", "--plugins", "my_task.py"])
    line = _tasks_line(capsys.readouterr().out, "docs_quiz")
    assert line.split()[1:] == ["local", "module", "my_task.py", "lit_ft_plugin_my_task:QuizTask", "/",
                                "lit_ft_plugin_my_task:QuizData"]


def test_tasks_shows_a_local_plugin_from_the_environment(tmp_path: Path) -> None:
    plugin = tmp_path / "my_task.py"
    plugin.write_text(PLUGIN)
    done = lit_ft("tasks", env={PLUGINS_ENV: str(plugin)})
    assert done.returncode == 0, done.stderr
    assert f"local module {plugin}" in _tasks_line(done.stdout, "docs_quiz")
    assert "lit_ft.tasks.classification:ClassificationTask" in _tasks_line(done.stdout, "classification")


def test_tasks_load_imports_the_plugins_and_names_their_data_modules(capsys: pytest.CaptureFixture[str]) -> None:
    run(["tasks", "--load"])
    line = _tasks_line(capsys.readouterr().out, "sft")
    assert line.split()[-3:] == ["lit_ft.tasks.sft.task:SFTTask", "/", "lit_ft.tasks.sft.data:SFTData"]


def test_overlay_goes_after_the_last_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("trainer: {max_steps: 2}\n")
    b.write_text("trainer: {max_steps: 3}\n")
    monkeypatch.setenv(OVERLAY_ENV, f"{a}{os.pathsep}{b}")
    argv = ["fit", "--config", "r.yaml", "--config=p.yaml", "--trainer.max_steps", "5"]
    assert with_overlays(argv) == ["fit", "--config", "r.yaml", "--config=p.yaml", "--config", str(a),
                                   "--config", str(b), "--trainer.max_steps", "5"]
    assert with_overlays(["fit", "--trainer.max_steps", "5"])[:5] == ["fit", "--config", str(a), "--config", str(b)]
    monkeypatch.setenv(OVERLAY_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="LIT_FT_OVERLAY: config file .*missing.yaml' does not exist"):
        with_overlays(argv)


def test_overlay_applies_to_the_parsed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("trainer: {max_steps: 7, max_epochs: 1}\n")
    monkeypatch.setenv(OVERLAY_ENV, str(overlay))
    with pytest.raises(SystemExit):
        run(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs", "2", "--print_config"])
    out = capsys.readouterr().out
    assert "  max_steps: 7\n" in out and "  max_epochs: 2\n" in out  # the overlay; the later option still wins


def test_lit_ft_cli_still_exports_the_lightning_cli_class() -> None:
    from lit_ft.commands.trainer_cli import LitFtCLI

    assert lit_cli.LitFtCLI is LitFtCLI


@pytest.mark.parametrize("spec", ["missing_task.py", "no_such_plugin_module"])
def test_tasks_with_a_missing_plugin_is_one_line(spec: str, tmp_path: Path) -> None:
    done = lit_ft("tasks", "--plugins", spec)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"lit_ft: error: plugin module '{spec}' not found; give a .py file or an importable module name"
    )
