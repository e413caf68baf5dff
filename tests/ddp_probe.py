"""One multi-process CPU launch for tests/test_multi_device.py: `python ddp_probe.py ARGS` runs `lit_ft fit ARGS`,
then `lit_ft predict ARGS --ckpt_path best` in the same processes (DDP starts its workers by running this script
again, and the predict run reuses them), while each rank logs the batches it ran.

Each rank writes `<default_root_dir>/batches/rank<R>.json` after each stage: `train` (the number of training
batches), `val` and `predict` (one `[ids, padding]` pair per batch; padding batches are run but count nowhere).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_ft.commands.cli import run
from lit_ft.sampler import is_padding


class BatchLog(Callback):
    """The batches this rank runs: a count for training, ids and the padding flag for evaluation."""

    def __init__(self) -> None:
        self.batches: dict[str, Any] = {"train": 0, "val": [], "predict": []}

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batches["train"] += 1

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.batches["val"].append([batch["id"], is_padding(batch)])

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self.batches["predict"].append([batch["id"], is_padding(batch)])

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        path = Path(trainer.default_root_dir) / "batches" / f"rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.batches))


def main(argv: list[str]) -> None:
    log = BatchLog()
    run(["fit", *argv], callbacks=[log])
    run(["predict", *argv, "--ckpt_path", "best"], callbacks=[log])


if __name__ == "__main__":
    main(sys.argv[1:])
