"""The quickstart's packaged data: no input in two splits or twice in one (case and spacing ignored), balanced
labels, held-out adjectives only in the eval splits, and `make_data.py` (no input files) regenerates the shipped
files."""

from __future__ import annotations

import collections
import csv
import importlib.util
from pathlib import Path
from types import ModuleType

from lit_ft.commands.recipe import build_data, read_recipe
from lit_ft.commands.rules.data import eval_rows_in_train
from lit_ft.commands.run_plan import RunPlan
from lit_ft.overlap import input_keys

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "lit_ft" / "resources" / "quickstart"
SPLITS = ("train", "validation", "test", "predict")


def test_the_shipped_splits_share_no_input_and_repeat_none() -> None:
    recipe = read_recipe(["--config", str(ROOT / "configs" / "quickstart.yaml")], "check")
    data = build_data(recipe.cfg)
    keys = {split: input_keys(data, split) or [] for split in SPLITS}  # the data module's own reading
    assert {s: len(k) for s, k in keys.items()} == {"train": 400, "validation": 100, "test": 100, "predict": 20}
    everything = [k for split in SPLITS for k in keys[split]]
    assert len(set(everything)) == len(everything) == 620
    assert eval_rows_in_train(RunPlan(recipe.cfg, data, cuda_devices=0)) is None  # `fit` prints no warning
    for split in ("train", "validation", "test"):
        labels = collections.Counter(data.raw(split)["label"])
        assert labels == {"negative": len(keys[split]) // 2, "positive": len(keys[split]) // 2}


def _make_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_make_data", HERE / "make_data.py")
    assert spec is not None and spec.loader is not None
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    return make_data


def test_make_data_regenerates_the_shipped_files() -> None:
    drawn = _make_data().draw()
    for split in SPLITS:
        with open(HERE / f"{split}.csv", newline="") as f:
            shipped = [tuple(row) for row in csv.reader(f)][1:]
        assert shipped == [(t,) if split == "predict" else (t, label) for t, label in drawn[split]]


def test_the_held_out_adjectives_appear_only_outside_train() -> None:
    make_data = _make_data()
    drawn = make_data.draw()
    held_out = set(make_data.HELD_OUT_POSITIVE + make_data.HELD_OUT_NEGATIVE)
    assert not held_out & set(make_data.TRAIN_POSITIVE + make_data.TRAIN_NEGATIVE + make_data.SUBJECTS)

    def words(split: str) -> set[str]:
        return {w.strip(".,!").casefold() for text, _ in drawn[split] for w in text.split()}

    assert not words("train") & held_out
    assert words("validation") & held_out and words("test") & held_out
