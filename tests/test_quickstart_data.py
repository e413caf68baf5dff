"""The quickstart's packaged data: real sentences, no input in two splits or twice in one (case and spacing
ignored), balanced labels, and `make_data.py` regenerates the shipped files from the recorded origin."""

from __future__ import annotations

import collections
import csv
import importlib.util
from pathlib import Path

from builders import shared_data

from lit_ft.check_data_rules import eval_rows_in_train
from lit_ft.overlap import input_keys
from lit_ft.recipe import build_data, read_recipe
from lit_ft.run_plan import RunPlan

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


def test_make_data_regenerates_the_shipped_files() -> None:
    source = shared_data("rt_polarity")
    spec = importlib.util.spec_from_file_location("quickstart_make_data", HERE / "make_data.py")
    assert spec is not None and spec.loader is not None
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    drawn = make_data.draw(source)
    for split in SPLITS:
        with open(HERE / f"{split}.csv", newline="") as f:
            shipped = [tuple(row) for row in csv.reader(f)][1:]
        assert shipped == [(t,) if split == "predict" else (t, label) for t, label in drawn[split]]
