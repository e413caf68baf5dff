"""Regenerates the quickstart sentiment set: short movie-review sentences with labels positive/negative.

Origin: the Rotten Tomatoes sentence polarity data v1.0 (Pang and Lee, "Seeing stars: Exploiting class relationships
for sentiment categorization with respect to rating scales", ACL 2005), files `rt-polarity.pos` / `rt-polarity.neg`
as copied byte for byte in https://github.com/yoonkim/CNN_sentence at commit
23e0e1f7355705bb083043fda05c031b15acb38c. Licence: none is stated by that repository, nor by the original release
(http://www.cs.cornell.edu/people/pabo/movie-review-data/), which asks users to cite the paper above. The text is
lower-cased and tokenised as released (`it's so laddish and juvenile , only teenage boys ...`).

Taken: sentences of 6 to 14 words in plain ASCII (short, so the quickstart trains in about the time it did), each
kept once after case and whitespace are normalised, then drawn at random (seed 1234) into disjoint splits of equal
positive and negative counts: train 400, validation 100, test 100, predict 20 (no labels). No sentence is in two
splits or twice in one. Real reviews rather than templates, so validation accuracy stays below 1.0 and improves
over the quickstart's three epochs.

Run from this folder: `python make_data.py DIR`, DIR holding the two files (read as latin-1, as released).
Deterministic: the same files every time.
"""

import csv
import random
import sys
from pathlib import Path

SIZES = {"train": 400, "validation": 100, "test": 100, "predict": 20}
MIN_WORDS, MAX_WORDS = 6, 14
SEED = 1234


def normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def sentences(path: Path) -> list[str]:
    """The usable sentences of one file, in file order, each once (a repeat after normalising is dropped)."""
    seen: set[str] = set()
    out = []
    for line in path.read_text(encoding="latin-1").split("\n"):
        text = " ".join(line.split())
        key = normalised(text)
        if text.isascii() and MIN_WORDS <= len(text.split()) <= MAX_WORDS and key not in seen:
            seen.add(key)
            out.append(text)
    return out


def draw(source: Path) -> dict[str, list[tuple[str, str]]]:
    """Disjoint splits, each half positive and half negative, rows shuffled."""
    rng = random.Random(SEED)
    pools = {label: sentences(source / f"rt-polarity.{label[:3]}") for label in ("negative", "positive")}
    shared = set(map(normalised, pools["negative"])) & set(map(normalised, pools["positive"]))
    for label, pool in pools.items():  # a sentence listed under both labels has no answer: left out
        pools[label] = [t for t in pool if normalised(t) not in shared]
        rng.shuffle(pools[label])
    splits = {}
    for split, n in SIZES.items():
        rows = [(pools[label].pop(), label) for label in ("negative", "positive") for _ in range(n // 2)]
        rng.shuffle(rows)
        splits[split] = rows
    return splits


def main(source: Path) -> None:
    for split, rows in draw(source).items():
        with open(f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            if split == "predict":
                writer.writerow(["text"])
                writer.writerows((text,) for text, _ in rows)
            else:
                writer.writerow(["text", "label"])
                writer.writerows(rows)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
