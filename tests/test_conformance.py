"""The plugin conformance kit (`lit_ft.testing`) on built-in tasks, through their recipes with the stand-ins of
tests/stand_ins.py: classification (the quickstart recipe, packaged data) and token classification (the CoNLL
recipe on small CoNLL files written here). The classification class's DDP check replaces the former
tests/test_ddp_cpu.py (2 CPU processes give the validation metrics of 1 at the same global batch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from stand_ins import ROOT, stand_in_overlay
from test_token_classification import write_conll

from lit_ft.testing import Conformance, TaskConformance

QUIET = ["--trainer.logger", "false"]


class TestClassificationConformance(TaskConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def conformance(cls, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Conformance:
        recipe = ROOT / "configs" / "quickstart.yaml"
        overlay = stand_in_overlay(recipe, {"bert": tiny_bert}, tmp_path_factory.mktemp("overlay"))
        return Conformance(recipe=recipe, overlays=[overlay], args=QUIET, ddp_batch_size=4)


class TestTokenClassificationConformance(TaskConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def conformance(cls, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Conformance:
        recipe = ROOT / "configs" / "ner_conll2003.yaml"
        data = tmp_path_factory.mktemp("conll")
        files = {"train": write_conll(data / "train.conll", 48, 0),
                 "validation": write_conll(data / "dev.conll", 12, 1),
                 "predict": write_conll(data / "predict.conll", 10, 2)}
        sources = [a for split in ("train", "validation", "test", "predict")
                   for a in (f"--data.init_args.source.{split}", files.get(split, "null"))]
        overlay = stand_in_overlay(recipe, {"bert": tiny_bert}, tmp_path_factory.mktemp("overlay"))
        # DDP: the classification class checks the shared machinery (samplers, metric sync); a second pair of
        # 2-process runs would add a minute to the suite
        return Conformance(recipe=recipe, overlays=[overlay], ddp=False,
                           args=[*QUIET, "--data.init_args.source.hub", "null", *sources,
                                 "--data.init_args.tag_scheme", "IOB1", "--data.init_args.batch_size", "8"])
