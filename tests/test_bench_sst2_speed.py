"""bench/sst2_speed.py: the padding counts, the data checks, and (slow) one end-to-end run with a tiny model."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path
from types import ModuleType

import pytest
from builders import shared_data

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "sst2_speed.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sst2_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_sst2(out: Path, n_train: int = 96, n_dev: int = 40) -> Path:
    rng = random.Random(0)
    words = {"1": ["good", "great", "fun"], "0": ["bad", "dull", "awful"]}
    out.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_first10000.tsv", n_train), ("glue_dev.tsv", n_dev)):
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["sentence", "label"])
            for _ in range(n):
                label = rng.choice("01")
                w.writerow([" ".join(["the film was"] * rng.randint(1, 8) + [rng.choice(words[label])]), label])
    return out


def test_padding_stats_by_hand(bench: ModuleType) -> None:
    lengths = [3, 5, 2, 7, 4]
    stats = bench.padding_stats(lengths, [[0, 1], [2, 3], [4]])
    assert stats["slots"] == 5 * 2 + 7 * 2 + 4
    assert stats["pad"] == stats["slots"] - sum(lengths) == 7
    assert stats["attn"] == 25 * 2 + 49 * 2 + 16


def test_batch_orders_cover_every_example_once(bench: ModuleType) -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 60) for _ in range(8000)]  # >= 6400, so HF groups 50 batches too
    orders = bench.batch_orders(lengths, seed=3)
    for name, batches in orders.items():
        assert sorted(i for b in batches for i in b) == list(range(8000)), name
    grouped = bench.padding_stats(lengths, orders["lit_ft group_batches=50"])
    hf = bench.padding_stats(lengths, orders["HF group_by_length"])
    random_ = bench.padding_stats(lengths, orders["random (HF default)"])
    floor = bench.padding_stats(lengths, orders["sorted (lower bound)"])
    assert floor["slots"] <= grouped["slots"] < 0.6 * random_["slots"]
    assert floor["slots"] <= hf["slots"] < 0.6 * random_["slots"]


def test_missing_data_names_the_option(bench: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--data-dir"):
        bench.main(["--data-dir", str(tmp_path), "--seeds", "1"])


def test_unknown_setting_is_refused(bench: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown --settings"):
        bench.main(["--data-dir", str(write_sst2(tmp_path)), "--settings", "lit_ft,fast"])


def test_train_subset_stays_out_of_the_repo(bench: ModuleType, tmp_path: Path) -> None:
    data = write_sst2(tmp_path / "sst2")
    opts = bench.parse(["--data-dir", str(data), "--n-train", "10"])
    (tmp_path / "tmp").mkdir()
    subset = Path(bench.train_subset(opts, str(tmp_path / "tmp")))
    assert subset.parent == tmp_path / "tmp"
    assert len(bench.read_rows(str(subset))) == 10
    assert bench.parse_seeds("3") == [0, 1, 2] and bench.parse_seeds("7,11") == [7, 11]


def test_padding_only_on_tiny_data(bench: ModuleType, tiny_bert: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path / "sst2", n_train=400)
    bench.main(["--padding-only", "--data-dir", str(data), "--backbone", str(tiny_bert), "--seeds", "2"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    samplers = out["samplers"]
    assert out["n_train"] == 400
    # lit_ft with group_batches=1 cuts the same permutation as the random sampler, in another order
    assert samplers["lit_ft group_batches=1"]["slots"] == samplers["random (HF default)"]["slots"]
    assert samplers["lit_ft group_batches=50"]["slots"] < samplers["random (HF default)"]["slots"]


@pytest.mark.slow
def test_end_to_end_tiny_model(bench: ModuleType, tiny_bert: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path / "sst2")
    bench.main(["--data-dir", str(data), "--backbone", str(tiny_bert), "--seeds", "1",
                "--settings", "lit_ft,plain_loop,hf_grouped"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    by = {r["setting"]: r for r in out["results"]}
    assert set(by) == {"lit_ft", "plain_loop", "hf_grouped"}
    assert all(r["n_train"] == 96 and r["threads"] == 2 and r["train_s"] > 0 for r in by.values())
    # the plain loop trains the same init on the same batches: the same model, so the same accuracy
    assert by["lit_ft"]["dev_acc"] == by["plain_loop"]["dev_acc"]
    assert set(out["ratios"]) == {"lit_ft/hf_grouped samples/s", "lit_ft overhead vs plain_loop"}


@pytest.mark.slow
def test_padding_only_on_sst2(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_data("sst2")
    bench.main(["--padding-only", "--data-dir", str(data), "--seeds", "1"])
    samplers = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samplers"]
    lit, hf = samplers["lit_ft group_batches=50"], samplers["HF group_by_length"]
    assert lit["slots"] <= 1.05 * hf["slots"]
    assert lit["slots"] < 0.5 * samplers["random (HF default)"]["slots"]
