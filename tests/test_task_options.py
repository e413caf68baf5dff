"""`model.task_options` held to each task's typed signature (`lit_ft.task_options`): every shipped recipe's options
check, options under earlier names still do, `lit_ft check` lists a bad key as a finding, `lit_ft tasks --options`
prints the table the task's docs page holds, and a plugin taking `**options` keeps a free dict."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lit_ft.commands.cli import main
from lit_ft.registry import available_tasks, get_task, listed_tasks
from lit_ft.task import Task
from lit_ft.task_options import TaskOptionsError, check_task_options, options_table, task_options

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted([*ROOT.glob("configs/*.yaml"), *ROOT.glob("plugins/*/configs/*.yaml")])
TABLE = re.compile(r"<!-- task_options table: (\w+) .*?-->\n(.*?)<!-- end task_options table -->", re.S)
BUILT_IN = sorted(n for n, (source, _) in listed_tasks(load=False).items() if source == "built-in")


def recipe_options(path: Path) -> tuple[str, dict[str, Any]] | None:
    model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
    return (model["task"], model.get("task_options") or {}) if "task" in model else None


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipes_task_options_check(path: Path) -> None:
    found = recipe_options(path)
    if found is None:
        pytest.skip("a config piece without model.task")
    task, options = found
    if task not in available_tasks():  # the example plugin's recipe, where its package is not installed
        pytest.skip(f"task '{task}' is not installed here")
    assert check_task_options(get_task(task), options) == options


def test_the_codegen_recipe_uses_the_sft_sandbox_options() -> None:
    found = recipe_options(ROOT / "configs" / "codegen_mbpp.yaml")
    assert found is not None
    task, options = found
    assert {"metrics", "code_sandbox", "code_timeout", "monitor"} <= set(options)
    assert check_task_options(get_task(task), options)["metrics"] == ["pass@1", "exact_match"]


def test_options_under_earlier_names_still_check() -> None:
    sft = get_task("sft")
    assert check_task_options(sft, {"num_samples": 3, "num_beams": 2}) == {
        "sample_rows": 3, "generate_kwargs": {"num_beams": 2}}
    with pytest.raises(TaskOptionsError, match=r"model\.task_options\.generate_kwargs is 4 \(int\) but task 'sft' "
                                               r"takes dict\[str, any\] or null"):
        check_task_options(sft, {"generate_kwargs": 4})


@pytest.mark.parametrize("task", BUILT_IN)
def test_the_docs_page_holds_the_generated_table(task: str) -> None:
    # a task's table is on its own page, or on the page of its family (dpo and reward_model: preference.md)
    pages = {name: page for page in sorted((ROOT / "docs" / "tasks").glob("*.md"))
             for name, _ in TABLE.findall(page.read_text())}
    page = pages.get(task, ROOT / "docs" / "tasks" / f"{task}.md")
    tables = dict(TABLE.findall(page.read_text())) if page.is_file() else {}
    assert tables.get(task) == options_table(get_task(task)), (
        f"regenerate the table of {page} with `lit_ft tasks --options {task}`")
    assert all(o.doc for o in (task_options(get_task(task)) or {}).values()), "document every option in Args:"


def test_tasks_options_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["tasks", "--options", "question_answering"])
    printed = capsys.readouterr().out
    assert printed == options_table(get_task("question_answering"))
    assert "| `max_answer_length` | int >0 | `30` | Longest answer span in tokens. |" in printed


def test_check_lists_a_bad_key_as_a_finding(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--config", "configs/quickstart.yaml", "--model.task_options.monitr", "f1"])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert ("fatal    task_options: model.task_options.monitr is not an option of task 'classification' "
            "(its options: monitor, threshold)") in out
    assert "fix: did you mean 'monitor'?" in out


class FreeOptions(Task):
    name = "free_options_probe"

    def __init__(self, info: dict[str, Any], **options: Any) -> None:
        super().__init__(info)
        self.options = options


class NoOptions(Task):
    name = "no_options_probe"


def test_a_plugin_taking_options_freely_keeps_a_free_dict() -> None:
    assert task_options(FreeOptions) is None
    assert check_task_options(FreeOptions, {"anything": [1, 2]}) == {"anything": [1, 2]}
    assert "reads `model.task_options` itself" in options_table(FreeOptions)
    assert task_options(NoOptions) == {}
    with pytest.raises(TaskOptionsError, match=r"model\.task_options\.alpha is not an option of task "
                                               r"'no_options_probe' \(its options: none\)"):
        check_task_options(NoOptions, {"alpha": 1})
