"""Fixtures of the plugin's tests: a tiny random BERT and SWAG-format files, written by the tests themselves."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

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


def make_tiny_bert(out: Path, seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a WordPiece tokenizer over WORDS (plus characters)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = sorted({c for w in WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *chars, *[f"##{c}" for c in chars]]
    vocab = list(dict.fromkeys(vocab))
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert_mc"))


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
