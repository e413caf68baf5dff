"""Regenerates the quickstart sentiment set: short movie-review sentences written for lit_ft, labels positive/negative.

Every sentence is built from templates below; its label follows from how it is built, by these rules:

- A plain verdict ("The plot was gripping.", "The pacing was fairly dull, I suppose.") has the polarity of its
  adjective; hedges ("fairly", "I suppose") soften it but do not turn it.
- A negated adjective ("was not dull", "was never boring", "was anything but gripping") has the opposite polarity.
- In a contrast ("The acting was superb, but the plot was messy.", "Although ..., ...", "..., yet ...") the two
  clauses disagree and the clause after "but" / "yet" / the main clause after "although" decides.
- An expectation overturned ("I expected the film to be dull, yet it was gripping.") has the polarity of what it was.
- Sarcasm ("Oh sure, the script was brilliant, if you enjoy checking your watch.") praises with a positive adjective
  and is negative, as the tail ("if you enjoy ...") says.
- A clause agreeing with a negated one ("The cast was charming, and the pacing was never dull.") has their shared
  polarity.

So the label depends on more than which adjective appears, as in real reviews. The adjectives of each polarity are
split in two: `TRAIN_*` may appear anywhere, `HELD_OUT_*` only in the validation, test and predict splits (each
adjective there is a held-out one with probability `HELD_OUT_SHARE`), so the eval splits also measure how far the
pretrained model generalises.

Splits: train 400, validation 100, test 100, predict 20 (no labels); half positive and half negative in each. No
input appears twice in a split or in two splits, compared after case-folding and collapsing whitespace.

Run from anywhere: `python make_data.py` writes the four CSV files next to it. Standard library only, no input
files; deterministic (seeded): the same files every time.
"""

import csv
import random
from collections.abc import Callable
from pathlib import Path

SIZES = {"train": 400, "validation": 100, "test": 100, "predict": 20}
SEED = 20
HELD_OUT_SHARE = 0.5  # of the eval splits' deciding adjectives, drawn from the held-out halves

SUBJECTS = ["the film", "this movie", "the acting", "the plot", "the soundtrack", "the script", "the ending",
            "the lead performance", "the cinematography", "the dialogue", "the pacing", "this sequel", "the cast",
            "the story", "the second half", "the opening scene", "the humour", "the score", "the villain",
            "the final act", "the editing", "the direction", "the premise", "the romance"]
TRAIN_POSITIVE = ["wonderful", "superb", "gripping", "charming", "moving", "clever", "brilliant", "delightful",
                  "engaging", "funny", "beautiful", "touching", "thrilling", "witty", "heartfelt", "stunning"]
HELD_OUT_POSITIVE = ["riveting", "luminous", "exhilarating", "inventive", "graceful", "absorbing", "enchanting",
                     "masterful", "poignant", "dazzling", "spellbinding", "sublime"]
TRAIN_NEGATIVE = ["dull", "boring", "clumsy", "tedious", "lazy", "flat", "predictable", "awful", "shallow",
                  "forced", "bland", "messy", "irritating", "confusing", "lifeless", "sloppy"]
HELD_OUT_NEGATIVE = ["tiresome", "hollow", "stale", "plodding", "ponderous", "grating", "hackneyed", "insipid",
                     "leaden", "turgid", "muddled", "vapid"]
HEDGES = ["", "", "", "fairly ", "rather ", "mostly ", "quite ", "really ", "truly ", "genuinely "]
ENDINGS = [".", ".", ".", "!", ", I suppose.", ", honestly.", ", to be fair.", " overall."]
NEGATIONS = ["not", "never", "not at all", "anything but", "hardly", "far from"]
SARCASTIC_TAILS = ["if you enjoy checking your watch", "if you like watching paint dry",
                   "if falling asleep is the goal", "for anyone who loves yawning", "if you want a long nap"]
OPPOSITE = {"positive": "negative", "negative": "positive"}

Pick = Callable[[str], str]  # a polarity -> an adjective of that polarity


def sentence(rng: random.Random, label: str, pick: Pick) -> str:
    """One sentence whose label is `label` by the rules in the module docstring."""
    other = OPPOSITE[label]
    s1, s2 = rng.sample(SUBJECTS, 2)
    kind = rng.choice(["plain", "negated", "but", "although", "yet", "expected", "agree", "sarcasm"])
    if kind == "sarcasm" and label == "positive":
        kind = "expected"  # sarcasm here is praise meaning the opposite, so only for negative rows
    if kind == "plain":
        text = f"{s1} was {rng.choice(HEDGES)}{pick(label)}{rng.choice(ENDINGS)}"
    elif kind == "negated":
        text = f"{s1} was {rng.choice(NEGATIONS)} {pick(other)}{rng.choice(ENDINGS)}"
    elif kind == "but":
        text = f"{s1} was {pick(other)}, but {s2} was {rng.choice(HEDGES)}{pick(label)}."
    elif kind == "although":
        text = f"although {s1} was {pick(other)}, {s2} was {rng.choice(HEDGES)}{pick(label)}."
    elif kind == "yet":
        text = f"{s1} was {rng.choice(HEDGES)}{pick(other)}, yet {s2} was {rng.choice(NEGATIONS)} {pick(other)}."
    elif kind == "expected":
        text = f"I expected {s1} to be {pick(other)}, yet it was {pick(label)}."
    elif kind == "agree":
        text = f"{s1} was {pick(label)}, and {s2} was {rng.choice(NEGATIONS)} {pick(other)}."
    else:
        text = f"oh sure, {s1} was {pick('positive')}, {rng.choice(SARCASTIC_TAILS)}."
    return text[0].upper() + text[1:]


def picker(rng: random.Random, held_out_share: float) -> Pick:
    """Draws an adjective of a polarity; from the held-out halves with probability `held_out_share`."""
    train = {"positive": TRAIN_POSITIVE, "negative": TRAIN_NEGATIVE}
    held_out = {"positive": HELD_OUT_POSITIVE, "negative": HELD_OUT_NEGATIVE}
    return lambda label: rng.choice(held_out[label] if rng.random() < held_out_share else train[label])


def normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def draw() -> dict[str, list[tuple[str, str]]]:
    """The four splits as (text, label) rows, each half positive and half negative, no input used twice."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    splits = {}
    for split, n in SIZES.items():
        pick = picker(rng, 0.0 if split == "train" else HELD_OUT_SHARE)
        rows = []
        for label in ["negative", "positive"] * (n // 2):
            text = sentence(rng, label, pick)
            while normalised(text) in seen:
                text = sentence(rng, label, pick)
            seen.add(normalised(text))
            rows.append((text, label))
        rng.shuffle(rows)
        splits[split] = rows
    return splits


def main() -> None:
    here = Path(__file__).resolve().parent
    for split, rows in draw().items():
        with open(here / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            if split == "predict":
                writer.writerow(["text"])
                writer.writerows((text,) for text, _ in rows)
            else:
                writer.writerow(["text", "label"])
                writer.writerows(rows)


if __name__ == "__main__":
    main()
