"""A synthetic preference task: a rule the chosen answers follow and the rejected ones break, and a tiny Llama
whose tokenizer keeps one token per character (so the rule is one a token-level model can learn)."""

from __future__ import annotations

import json
import random
from pathlib import Path

VOWELS = "aeiou"
CONSONANTS = "bcdfgklmnprstvz"


def answer(letters: str, rng: random.Random, length: int = 4) -> str:
    return "".join(rng.choice(letters) for _ in range(length))


def rule_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Prompts of digits; chosen answers are vowels only, rejected answers consonants only."""
    rng = random.Random(seed)
    return [{"prompt": "Q: " + " ".join(rng.choice("0123456789") for _ in range(3)) + " A: ",
             "chosen": answer(VOWELS, rng), "rejected": answer(CONSONANTS, rng)} for _ in range(n)]


def write_rule_data(out: Path, n_train: int = 192, n_eval: int = 32) -> dict[str, str]:
    """train / validation pair files and a predict file of prompts only."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"train": rule_pairs(n_train, 0), "validation": rule_pairs(n_eval, 1),
             "predict": [{"prompt": r["prompt"]} for r in rule_pairs(8, 2)]}
    for split, rows in files.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {split: str(out / f"{split}.jsonl") for split in files}


def follows_rule(text: str) -> bool:
    """A generated answer follows the rule: it has letters and every one is a vowel."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and all(c in VOWELS for c in letters)
