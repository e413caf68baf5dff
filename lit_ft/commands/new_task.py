"""`lit_ft new-task NAME`: scaffold an installable task-plugin package that trains, predicts, exports and passes
its own tests as generated.

The templates are the files under `lit_ft/resources/new_task/`; in their paths and contents `{{name}}` (the task
name), `{{Name}}` (its CamelCase class name), `{{package}}` (`lit_ft_<name>`) and `{{dist}}` (`lit-ft-<name>`)
are replaced, and the `.tmpl` suffix (which keeps linters and pytest off the templates) is dropped.
"""

from __future__ import annotations

import argparse
import keyword
from pathlib import Path

from lit_ft.errors import UserError
from lit_ft.owned_dir import claim, write_owned_dir

TEMPLATES = Path(__file__).parents[1] / "resources" / "new_task"  # lit_ft/resources
SUFFIX = ".tmpl"
KIND = "new-task"
NEVER_OVERWRITES = "give a new or empty directory (new-task never overwrites)"


def placeholders(name: str) -> dict[str, str]:
    """What each `{{...}}` of the templates becomes for task `name`."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return {"{{name}}": name, "{{Name}}": camel, "{{package}}": f"lit_ft_{name}",
            "{{dist}}": f"lit-ft-{name.replace('_', '-')}"}


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def check_name(name: str) -> None:
    """A task name is a lowercase Python identifier (it names the package) not taken by a registered task."""
    if not name.isidentifier() or keyword.iskeyword(name) or not name.islower() or name.startswith("_"):
        raise UserError(f"task name '{name}' is not a lowercase Python identifier (it names the package "
                        f"lit_ft_<name>); use letters, digits and underscores, such as 'my_task'")
    from lit_ft.registry import listed_tasks

    found = listed_tasks()
    if name in found:
        raise UserError(f"task name '{name}' is already registered ({found[name][0]}: {found[name][1]}); choose "
                        "another name (`lit_ft tasks` lists the registered ones)")


def scaffold(name: str, output: Path) -> list[Path]:
    """Write the plugin package for task `name` into `output`, a new or empty directory (`lit_ft.owned_dir`:
    new-task never writes beside other files); returns the files written."""
    check_name(name)
    claim(output, KIND, False, "--output", NEVER_OVERWRITES)
    values = placeholders(name)
    written = []

    def write(tmp: Path) -> None:
        for template in sorted(p for p in TEMPLATES.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            relative = fill(template.relative_to(TEMPLATES).as_posix(), values).removesuffix(SUFFIX)
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(fill(template.read_text(encoding="utf-8"), values), encoding="utf-8")
            written.append(output / relative)

    write_owned_dir(output, KIND, write, label="--output", fix=NEVER_OVERWRITES, record=False)
    return written


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="lit_ft new-task",
        description="Scaffold an installable task-plugin package (Task, TaskDataModule, a tiny fixture, a recipe and "
                    "conformance tests) that passes its own tests as generated.",
    )
    parser.add_argument("name", help="the task name: a lowercase Python identifier not registered yet")
    parser.add_argument("--output", "-o", default=None, help="directory to create (default: ./lit_ft_<name>)")
    args = parser.parse_args(argv)
    output = Path(args.output or f"lit_ft_{args.name}")
    written = scaffold(args.name, output)
    package = placeholders(args.name)["{{package}}"]
    print(f"lit_ft: wrote the {args.name} task plugin ({len(written)} files) to {output}")
    print(f"  try it : lit_ft fit --config {output / 'configs' / f'{args.name}.yaml'} --plugins {output / package}")
    print(f"  test it: python -m pytest {output}")
    print(f"  install: pip install -e {output}  (then lit_ft finds it through its entry point)")
