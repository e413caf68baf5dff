"""`TaskConformance`: the checks every task plugin must pass, as pytest tests a plugin's test class inherits."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch

from lit_ft.backbone import locate_backbone
from lit_ft.commands.cli import main as lit_ft_main
from lit_ft.io import read_jsonl
from lit_ft.loading import LoadOptions
from lit_ft.module import FineTuner
from lit_ft.testing.runs import (
    STEPS,
    Conformance,
    Fitted,
    assert_close,
    collapsed,
    ddp_fit,
    fit_and_predict,
    one_thread,
    predictions_file,
)
from lit_ft.testing.tolerance import metric_differences, tolerances


class TaskConformance:
    """Base class of a plugin's conformance tests; subclass it as `class TestMyTask(TaskConformance)` and define a
    class-scoped fixture `conformance` returning a `Conformance` (its recipe and small overrides).

    The first five tests share one 2-step fit (`fitted`); the DDP test (slow) fits twice more, once on 2 processes.
    """

    # class-scoped fixtures are class methods: pytest deprecates them as instance methods (PytestRemovedIn10Warning)
    @pytest.fixture(scope="class")
    @classmethod
    def conformance(cls) -> Conformance:
        raise NotImplementedError(f"{cls.__name__}: define a class-scoped fixture `conformance` (a classmethod under "
                                  "@pytest.fixture(scope='class')) that returns lit_ft.testing.Conformance(recipe=..., "
                                  "args=[...])")

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, conformance: Conformance, tmp_path_factory: pytest.TempPathFactory) -> Fitted:
        with one_thread():
            return fit_and_predict(conformance, tmp_path_factory.mktemp("conformance") / "run")

    def test_fit_runs_two_steps_and_keeps_a_validated_best_checkpoint(self, fitted: Fitted) -> None:
        trainer = fitted.cli.trainer
        assert trainer.global_step == STEPS
        best = json.loads((fitted.root / "checkpoints" / "best.json").read_text())
        assert (fitted.root / "checkpoints" / best["best"]).is_file()
        monitored = f"val/{fitted.cli.model.plugin.monitor()}"
        assert monitored in fitted.fit_metrics, f"{monitored} not logged; logged: {sorted(fitted.fit_metrics)}"
        assert math.isfinite(fitted.fit_metrics[monitored]) and math.isfinite(fitted.fit_metrics["val/loss"])

    def test_predictions_carry_the_ids_in_input_order(self, fitted: Fitted) -> None:
        raw = fitted.cli.datamodule.raw("predict")
        assert raw is not None  # checked by fit_and_predict
        assert fitted.in_process and all("id" in record for record in fitted.in_process)
        ids = collapsed(record["id"] for record in fitted.in_process)
        assert ids == list(raw["id"])

    def test_checkpoint_round_trip_predicts_what_the_fitted_model_did(self, fitted: Fitted) -> None:
        with one_thread():
            later = fitted.conformance.run("predict", fitted.root, "--ckpt_path", "best")
        assert_close(read_jsonl(predictions_file(later)), fitted.in_process, "predictions")

    def test_export_loads_in_transformers_with_the_best_weights(self, fitted: Fitted, tmp_path: Path) -> None:
        import transformers

        out = tmp_path / "export"
        plugins = ["--plugins", ",".join(map(str, fitted.conformance.plugins))] if fitted.conformance.plugins else []
        lit_ft_main(["export", str(fitted.root), "--output_dir", str(out), *plugins])
        config = transformers.AutoConfig.from_pretrained(out)
        loaded = getattr(transformers, config.architectures[0]).from_pretrained(out)
        expected = fitted.cli.model.exportable_model().state_dict()
        differences = key_differences(loaded.state_dict().keys(), expected.keys(), type(loaded).__name__)
        assert not differences, f"the export in {out} does not hold the best checkpoint's weights: " + differences
        for name, tensor in loaded.state_dict().items():
            assert torch.equal(tensor, expected[name]), f"exported {name} differs from the best checkpoint's"
        transformers.AutoTokenizer.from_pretrained(out)
        tag = fitted.cli.model.plugin.pipeline_tag
        if tag is not None:
            transformers.pipeline(tag, model=str(out))

    def test_build_model_applies_the_load_options(self, fitted: Fitted) -> None:
        problem = load_options_problem(fitted.cli.model)
        assert not problem, problem

    @pytest.mark.slow
    def test_ddp_metrics_match_one_process(self, conformance: Conformance, tmp_path: Path) -> None:
        if not conformance.ddp:
            pytest.skip("Conformance.ddp is False")
        single, cli = ddp_fit(conformance, tmp_path / "one", devices=1)
        double, _ = ddp_fit(conformance, tmp_path / "two", devices=2)
        assert cli is not None and single, f"the 1-process fit wrote no metrics/val_*.json in {tmp_path / 'one'}"
        assert single.keys() == double.keys(), f"validations: 1 process {sorted(single)}, 2 processes {sorted(double)}"
        known = tolerances(cli.model.plugin.metrics(), "val", conformance.ddp_tolerances)
        for name, one in single.items():
            two = double[name]
            assert one["step"] == two["step"], f"{name}: step {one['step']} on 1 process, {two['step']} on 2"
            differences = metric_differences(one["metrics"], two["metrics"], known)
            assert not differences, f"{name}: 2-process metrics differ from 1-process ones:\n" + "\n".join(differences)


def load_options_problem(module: FineTuner) -> str:
    """What is wrong (empty when nothing) with the model the module's task builds with `LoadOptions(meta=True,
    dtype=bfloat16)`: `lit_ft estimate` builds on `meta`, and a `bf16-true` run loads in bf16, only where
    `build_model` hands its `load` to `load_pretrained` (or applies every option itself, its own modules included)."""
    load = LoadOptions(dtype=torch.bfloat16, meta=True)
    model = module.plugin.build_model(locate_backbone(module.hparams["backbone"]), load)
    stray = sorted(n for n, p in model.named_parameters() if (p.device.type, p.dtype) != ("meta", torch.bfloat16))
    if not stray:
        return ""
    return (f"{type(module.plugin).__name__}.build_model(backbone, {load}) left {len(stray)} parameters off the meta "
            f"device or not in bfloat16 ({stray[:3]}...): load the model with lit_ft.load_pretrained(AutoModelFor..., "
            "backbone, load, ...), and build any module of your own on load.meta's device in load.dtype")


def key_differences(loaded: Iterable[str], expected: Iterable[str], architecture: str) -> str:
    """What keys the exported model, loaded as `architecture`, lacks and adds, against the trained model's
    (empty when the same): weights `build_model` added outside the architecture, which `from_pretrained` drops."""
    got, want = set(loaded), set(expected)
    parts = []
    if want - got:
        parts.append(f"{architecture}.from_pretrained leaves out {sorted(want - got)}, which the trained model has "
                     f"(modules that {architecture} does not define are dropped on loading)")
    if got - want:
        parts.append(f"{architecture} has {sorted(got - want)}, which the trained model lacks")
    return "; ".join(parts)
