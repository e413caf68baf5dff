"""The best checkpoint when the monitored metric ties: the lower validation loss wins (the earlier checkpoint when
that ties too), in a fit and across `fit --ckpt_path last`, and `lit_ft report` says which rule chose it.

The set is built to tie: every validation row is positive and nearly every training row is, so the tiny model
answers positive from its first validation on (accuracy 1.0 at every epoch) while its loss keeps falling.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
from helpers import cli, tiny_args
from test_report import report, table_dicts

QUICKSTART = "configs/quickstart.yaml"
EPOCHS = 4
WORDS = ["good", "fine", "nice", "great", "fun", "warm", "bright", "sweet", "neat", "kind", "calm", "bold"]
pytestmark = pytest.mark.usefixtures("single_thread")


def _write(path: Path, rows: list[tuple[str, str]]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("ties")
    train = [(f"the {a} {b} film", "positive") for a in WORDS[:6] for b in WORDS[6:9]]
    train += [(f"a dull {b} plot", "negative") for b in WORDS[9:]]
    return {"train": _write(out / "train.csv", train),
            "validation": _write(out / "validation.csv", [(f"so {w} a story", "positive") for w in WORDS[:4]])}


def fit(root: Path, tiny_bert: Path, files: dict[str, str], *extra: str) -> dict:
    """`lit_ft fit` (3 steps an epoch, lr 1e-3), then its `best.json`."""
    cli("fit", "--config", QUICKSTART, *tiny_args(root, tiny_bert, files), "--model.learning_rate", "1e-3",
        "--data.init_args.batch_size", "8", "--export.enabled", "false", *extra)
    return dict(json.loads((root / "checkpoints" / "best.json").read_text()))


@pytest.fixture(scope="module")
def straight(tiny_bert: Path, files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("straight") / "run"
    return root, fit(root, tiny_bert, files, "--trainer.max_epochs", str(EPOCHS))


def validations(root: Path) -> list[tuple[int, float, float]]:
    """(epoch, val/accuracy, val/loss) of each validation, from `metrics/val_epoch_N.json`."""
    out = []
    for epoch in range(1, EPOCHS + 1):
        metrics = json.loads((root / "metrics" / f"val_epoch_{epoch}.json").read_text())["metrics"]
        out.append((epoch - 1, metrics["val/accuracy"], metrics["val/loss"]))
    return out


def test_accuracy_ties_go_to_the_lowest_validation_loss(straight: tuple[Path, dict]) -> None:
    root, pointer = straight
    seen = validations(root)
    top = max(acc for _, acc, _ in seen)
    tied = [(loss, epoch) for epoch, acc, loss in seen if acc == top]
    assert len(tied) >= 2 and min(tied)[1] != tied[0][1]  # a real tie, which the earliest checkpoint would lose
    loss, epoch = min(tied)
    assert pointer["best"].startswith(f"epoch={epoch}-") and (root / "checkpoints" / pointer["best"]).is_file()
    assert pointer["score"] == top and pointer["tie_break"] == "val/loss" and pointer["ties"] == len(tied)
    assert pointer["tie_break_value"] == pytest.approx(loss)
    shown = table_dicts(report(root, output=root / "report.html"), "part0-best_checkpoint")[0]
    assert shown["checkpoint"] == pointer["best"]
    assert shown["chosen by"] == f"the lowest val/loss ({loss:.4g}) of the {len(tied)} validations at val/accuracy 1"


def test_the_tie_break_survives_resume(straight: tuple[Path, dict], tiny_bert: Path, files: dict[str, str],
                                       tmp_path: Path) -> None:
    """Ctrl-C at step 7, in the third epoch: `last` holds the second epoch's end, and the validations after the
    resume tie with the best kept before it."""
    root = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            fit(root, tiny_bert, files, "--trainer.max_epochs", str(EPOCHS), "--trainer.callbacks+=helpers.InterruptAt",
                "--trainer.callbacks.step", "7")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    before = json.loads((root / "checkpoints" / "best.json").read_text())
    assert before["global_step"] == 6 and before["ties"] == 2
    resumed = fit(root, tiny_bert, files, "--trainer.max_epochs", str(EPOCHS), "--ckpt_path", "last")
    _, uninterrupted = straight
    for key in ("best", "score", "ties", "tie_break"):
        assert resumed[key] == uninterrupted[key], key
    assert resumed["tie_break_value"] == pytest.approx(uninterrupted["tie_break_value"], abs=1e-6)
