"""Test builders shared by the test modules: tiny models, tokenizers, data files, the shared data sets.

Imported as `from builders import ...` (not from conftest: the example plugin's tests have a conftest too).
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LIT_FT_SHARED_DATA", _REPO.parent / "shared" / "data"))
WORDS = (
    "the a film movie plot acting was is good great bad awful wonderful dull boring fun loved hated it this "
    "and but not very really so story music ending cast john paris london berlin visited works at in of to "
    "what who where when how many did does answer question context summarize translate hello world yes no "
    "cat dog sat on mat red blue green one two three four five six seven eight nine ten"
).split()


def shared_data(name: str) -> Path:
    """A data set from ../shared/data, or skip when this checkout has none (a user's fresh clone)."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is only available on the development machines)")
    return path


def write_wordpiece_tokenizer(out: Path, words: list[str] = WORDS) -> None:
    """A BERT WordPiece tokenizer over a small vocabulary (plus characters, so any word tokenizes)."""
    from transformers import BertTokenizerFast

    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words)), *chars, *[f"##{c}" for c in chars]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    # transformers 5 builds the fast tokenizer from `vocab=`; `vocab_file=` alone yields only special tokens
    BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)


def make_tiny_bert(out: Path, seed: int = 0, max_positions: int = 128) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and its tokenizer, saved like a hub model."""
    import torch
    from transformers import BertConfig, BertModel

    write_wordpiece_tokenizer(out)
    vocab_size = len((out / "vocab.txt").read_text().split())
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=max_positions, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    return out


def write_sentiment_csvs(out: Path, n_train: int = 64, n_eval: int = 32, seed: int = 0) -> dict[str, str]:
    """A learnable two-class set: 'good' words mean positive, 'bad' words negative; no validation or test text is
    also a training text (`fit` would warn of the overlap)."""
    rng = random.Random(seed)
    pos, neg = ["good", "great", "wonderful", "fun", "loved"], ["bad", "awful", "dull", "boring", "hated"]
    filler = ["the", "film", "plot", "acting", "was", "very", "really", "music", "story"]

    def row(r: random.Random) -> tuple[str, str]:
        label = r.choice(["positive", "negative"])
        words = r.sample(filler, r.randint(1, 6)) + [r.choice(pos if label == "positive" else neg)]
        r.shuffle(words)
        return " ".join(words), label

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    train: set[str] = set()
    redraw = random.Random(seed + 1)  # a stream of its own: the rows that need none stay as they always were
    for split, n in [("train", n_train), ("validation", n_eval), ("test", n_eval)]:
        drawn = [row(rng) for _ in range(n)]
        for i in range(n):
            while drawn[i][0] in train:
                drawn[i] = row(redraw)
        train |= {text for text, _ in drawn} if split == "train" else set()
        files[split] = str(out / f"{split}.csv")
        with open(files[split], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(drawn)
    return files
