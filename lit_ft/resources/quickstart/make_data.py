"""Regenerates the quickstart sentiment set (short review sentences written for lit_ft, labels pos/neg).

Run from this folder: `python make_data.py`. Deterministic: the same files every time.
"""

import csv
import random

SUBJECTS = ["The film", "This movie", "The acting", "The plot", "The soundtrack", "The script", "The ending",
            "The director's latest work", "The lead performance", "The cinematography", "The dialogue", "The pacing",
            "This sequel", "The documentary", "The animation", "The cast", "The story", "The second half",
            "The opening scene", "The whole experience"]
POSITIVE = ["was wonderful", "felt fresh and honest", "is a delight from start to finish", "moved me to tears",
            "was sharp, funny and warm", "is beautifully made", "kept me smiling", "is a genuine triumph",
            "was clever and touching", "is among the best I have seen this year", "was gripping",
            "deserves every award", "left me inspired", "was charming", "is brilliant", "works beautifully",
            "was a joy to watch", "is tender and heartfelt", "was thrilling", "shines"]
NEGATIVE = ["was dull", "felt lazy and cynical", "is a chore from start to finish", "bored me to tears",
            "was clumsy, flat and cold", "is poorly made", "made me check my watch", "is a complete mess",
            "was predictable and empty", "is among the worst I have seen this year", "was tedious",
            "deserves to be forgotten", "left me annoyed", "was irritating", "is awful", "falls apart",
            "was a waste of time", "is shallow and forced", "was painfully slow", "disappoints"]
ENDINGS = [".", "!", ", honestly.", ", in my opinion.", ", without a doubt.", " overall."]


def rows(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        phrase = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        out.append((f"{rng.choice(SUBJECTS)} {phrase}{rng.choice(ENDINGS)}", label))
    return out


def main() -> None:
    rng = random.Random(1234)
    for split, n in [("train", 400), ("validation", 100), ("test", 100)]:
        with open(f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows(rng, n))
    with open("predict.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([(t,) for t, _ in rows(rng, 20)])


if __name__ == "__main__":
    main()
