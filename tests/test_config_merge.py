"""Dict options (`model.task_options`) merge key by key whichever way a piece arrives: a second `--config`, a
`LIT_FT_OVERLAY` file or `--model.task_options.KEY` on the command line; `--print_config` and the run's
`config.yaml` show the merged dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import write_sentiment_csvs
from helpers import cli, tiny_args

from lit_ft.commands.cli import OVERLAY_ENV, main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("codegen_mbpp", "sft_customer_support")


def recipe_options(recipe: str) -> dict[str, Any]:
    options = yaml.safe_load((ROOT / "configs" / f"{recipe}.yaml").read_text())["model"]["task_options"]
    assert isinstance(options, dict) and len(options) >= 3
    return options


def printed_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    """`lit_ft fit ... --print_config`, as the user runs it: the model.task_options it prints."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["fit", *argv, "--print_config"])
    assert not done.value.code
    return yaml.safe_load(capsys.readouterr().out)["model"]["task_options"]


def piece(path: Path, options: Any) -> str:
    path.write_text(yaml.safe_dump({"model": {"task_options": options}}))
    return str(path)


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_second_config_and_an_overlay_merge_task_options(recipe: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    own = recipe_options(recipe)
    config = str(ROOT / "configs" / f"{recipe}.yaml")
    second = piece(tmp_path / "second.yaml", {"max_new_tokens": 64, "generate_kwargs": {"num_beams": 2}})
    want = {**own, "max_new_tokens": 64, "generate_kwargs": {"num_beams": 2}}
    assert printed_options(["--config", config, "--config", second], capsys) == want
    overlay = piece(tmp_path / "overlay.yaml", {"generate_examples": 4, "generate_kwargs": {"do_sample": False}})
    monkeypatch.setenv(OVERLAY_ENV, overlay)
    # pieces merge in order, nested dicts too; the command line's keys still win over every file
    printed = printed_options(["--config", config, "--config", second, "--model.task_options.max_new_tokens", "32"],
                              capsys)
    assert printed == {**own, "max_new_tokens": 32, "generate_examples": 4,
                       "generate_kwargs": {"num_beams": 2, "do_sample": False}}


def test_null_sets_a_key_and_a_whole_dict_replaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "configs" / "codegen_mbpp.yaml")
    own = recipe_options("codegen_mbpp")
    monitor_null = piece(tmp_path / "monitor_null.yaml", {"monitor": None})
    assert printed_options(["--config", config, "--config", monitor_null], capsys) == {**own, "monitor": None}
    dropped = piece(tmp_path / "dropped.yaml", None)
    fresh = piece(tmp_path / "fresh.yaml", {"metrics": ["exact_match"]})
    assert printed_options(["--config", config, "--config", dropped, "--config", fresh], capsys) == {
        "metrics": ["exact_match"]}
    assert printed_options(["--config", config, "--model.task_options", "{monitor: loss}"], capsys) == {
        "monitor": "loss"}


def test_the_runs_config_yaml_holds_the_merged_options(tiny_bert: Path, tmp_path: Path) -> None:
    files = write_sentiment_csvs(tmp_path / "data", n_train=8, n_eval=4)
    first = piece(tmp_path / "first.yaml", {"threshold": 0.4, "monitor": "loss"})
    second = piece(tmp_path / "second.yaml", {"threshold": 0.3})
    root = tmp_path / "run"
    cli("fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", first, "--config", second,
        *tiny_args(root, tiny_bert, files), "--trainer.max_steps", "1", "--export.enabled", "false")
    saved = yaml.safe_load((root / "config.yaml").read_text())
    assert saved["model"]["task_options"] == {"threshold": 0.3, "monitor": "loss"}
