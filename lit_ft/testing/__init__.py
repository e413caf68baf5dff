"""Conformance tests a task plugin runs on itself (needs pytest): fit, prediction order, checkpoint round trip,
export, DDP metric equality.

A plugin's test module subclasses `TaskConformance` and gives it a class-scoped `conformance` fixture naming a
recipe and the overrides that make it small (a tiny backbone, small data files):

    import pytest
    from lit_ft.testing import Conformance, TaskConformance, make_tiny_bert

    class TestMyTask(TaskConformance):
        @pytest.fixture(scope="class")
        @classmethod
        def conformance(cls, tmp_path_factory: pytest.TempPathFactory) -> Conformance:
            backbone = make_tiny_bert(tmp_path_factory.mktemp("bert"), words=["some", "words"])
            return Conformance(recipe="configs/my_task.yaml", args=["--model.backbone", str(backbone)])

The checks share one 2-step fit per class. The DDP check fits twice more, on one process (in this one) and on two
CPU processes (a `python -m lit_ft fit` subprocess), and is marked `slow`: register that marker in the plugin's
pytest settings.

`run(argv)` runs a lit_ft command in this process, as `lit_ft ARGV` would, and returns the LightningCLI object of a
trainer command (`.trainer`, `.model`, `.datamodule`), for a plugin's own tests of its recipe.
"""

from lit_ft.commands.cli import run
from lit_ft.testing.conformance import TaskConformance
from lit_ft.testing.runs import STEPS, Conformance, Fitted, assert_close
from lit_ft.testing.tiny import make_tiny_bert

__all__ = ["STEPS", "Conformance", "Fitted", "TaskConformance", "assert_close", "make_tiny_bert", "run"]
