"""A tiny random BERT and its WordPiece tokenizer, saved like a hub model: the backbone of fast plugin tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"


def make_tiny_bert(out: Path, words: Iterable[str] = (), seed: int = 0, max_positions: int = 128) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a lower-casing WordPiece tokenizer over `words` (whole
    words are one token each) plus single characters, so any text tokenizes. Returns `out`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w.lower() for w in words})
    chars = sorted({c for w in words for c in w} | set(CHARACTERS))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *[f"##{c}" for c in chars]]
    vocab = list(dict.fromkeys(vocab))
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 builds the (fast) tokenizer from `vocab=`; `vocab_file=` alone yields only special tokens
    BertTokenizer(vocab=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=max_positions, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    return out
