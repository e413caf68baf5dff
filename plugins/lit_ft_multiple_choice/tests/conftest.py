"""Fixtures of the plugin's tests: a tiny random BERT (lit_ft.testing) and SWAG-format files, written by the tests."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from lit_ft.testing import make_tiny_bert

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PLUGIN_ROOT.parents[2] / "shared" / "data"  # plugins/<pkg> -> repo -> ../shared/data
WORDS = (
    "the a man woman dog cat boy girl walks runs sits jumps plays reads eats sings on in at to with street park "
    "table ball book guitar drum water hat red blue green then and slowly quickly someone they he she it"
).split()


@pytest.fixture
def shared_sample() -> Path:
    """The real SWAG sample from ../shared/data, or skip where this checkout has none (a user's clone)."""
    path = SHARED_DATA / "hf_tests_samples" / "swag" / "sample.json"
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only available on the development machines)")
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert_mc"), words=WORDS)


def swag_rows(n: int, seed: int, labelled: bool = True) -> list[dict[str, Any]]:
    """SWAG-format rows (sent1, sent2, ending0..3, label); endings differ in length so choices need padding."""
    rng = random.Random(seed)
    subjects, verbs, things = ["the man", "a woman", "the dog", "a girl"], ["walks", "plays", "reads", "sits"], [
        "on the street", "with a ball", "in the park", "at the table", "a red book", "the blue guitar slowly"]
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {"sent1": f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(things)}.",
                               "sent2": rng.choice(["then he", "she", "they", "it"])}
        for k in range(4):
            row[f"ending{k}"] = " ".join(rng.sample(WORDS, rng.randint(1, 7))) + "."
        if labelled:
            row["label"] = rng.randrange(4)
        rows.append(row)
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def swag_files(tmp_path: Path) -> dict[str, str]:
    """train 16, validation 8, test 8 (labelled) and predict 6 (no label column) SWAG-format JSONL files."""
    sizes = {"train": 16, "validation": 8, "test": 8, "predict": 6}
    return {split: write_jsonl(swag_rows(n, seed=i, labelled=split != "predict"), tmp_path / "data" / f"{split}.jsonl")
            for i, (split, n) in enumerate(sizes.items())}


@pytest.fixture(scope="session")
def swag_session_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """train 16, validation 8 and predict 6 (no label column) SWAG-format JSONL files, written once per session."""
    out = tmp_path_factory.mktemp("swag")
    sizes = {"train": 16, "validation": 8, "predict": 6}
    return {split: write_jsonl(swag_rows(n, seed=i, labelled=split != "predict"), out / f"{split}.jsonl")
            for i, (split, n) in enumerate(sizes.items())}
