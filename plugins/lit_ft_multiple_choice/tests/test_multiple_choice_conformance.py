"""lit_ft's plugin conformance kit (`lit_ft.testing`) on this plugin: the SWAG recipe on a tiny BERT and small
SWAG-format files (fit, predictions in input order, checkpoint round trip, export, and, slow, 2-process DDP)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lit_ft.testing import Conformance, TaskConformance

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "swag.yaml"


class TestMultipleChoiceConformance(TaskConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def conformance(cls, tiny_bert_dir: Path, swag_session_files: dict[str, str]) -> Conformance:
        sources = [a for split in ("train", "validation", "test", "predict")
                   for a in (f"--data.init_args.source.{split}", swag_session_files.get(split, "null"))]
        return Conformance(recipe=RECIPE, args=["--model.backbone", str(tiny_bert_dir), "--data.init_args.source.hub",
                                                "null", *sources, "--data.init_args.batch_size", "8",
                                                "--trainer.logger", "false", "--trainer.accelerator", "cpu"])
