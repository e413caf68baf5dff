"""Model loading without patching Transformers: the run's options reach the task's `build_model` as `LoadOptions`
and `load_pretrained` applies them, for `fit` and for `lit_ft estimate`'s meta-device build alike. While a task
builds, every `AutoModel*.from_pretrained` is Transformers' own, so a model the task loads by itself keeps
Transformers' defaults, and nothing is left behind after a fit and an estimate in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from helpers import cli, tiny_args
from transformers.models.auto import modeling_auto

from lit_ft.commands.cli import main
from lit_ft.errors import UserError
from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.module import FineTuner
from lit_ft.registry import register_task
from lit_ft.task import Task
from lit_ft.tasks.classification import ClassificationData, ClassificationTask
from lit_ft.testing.conformance import load_options_problem

pytestmark = pytest.mark.usefixtures("single_thread")
INFO = {"problem_type": "single_label", "label_names": ["negative", "positive"]}


def from_pretrained_functions() -> dict[str, Any]:
    """Each auto model class's own `from_pretrained` (the object in its class dict), by class name."""
    return {name: vars(cls)["from_pretrained"] for name, cls in vars(modeling_auto).items()
            if isinstance(cls, type) and "from_pretrained" in vars(cls)}


TRANSFORMERS_OWN = from_pretrained_functions()


class SpyData(ClassificationData):
    task_name = "load_spy"


class SpyTask(ClassificationTask):
    """Classification that records, while it builds, the auto classes whose `from_pretrained` is not
    Transformers' own, and loads a second model by plain `from_pretrained`, which the run's options must not reach."""

    name = "load_spy"
    datamodule = SpyData
    builds: list[dict[str, Any]] = []

    def build_model(self, backbone: str, load: LoadOptions) -> torch.nn.Module:
        patched = [n for n, f in from_pretrained_functions().items() if f is not TRANSFORMERS_OWN[n]]
        aside = transformers.AutoModel.from_pretrained(backbone)
        model = super().build_model(backbone, load)
        self.builds.append({"load": load, "patched": patched, "aside": aside, "model": model})
        return model


def attention(model: torch.nn.Module) -> str:
    return str(model.config._attn_implementation)  # Transformers keeps the resolved choice here


@pytest.mark.usefixtures("isolated_plugins")
def test_fit_and_estimate_build_through_the_options_and_patch_nothing(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    register_task(SpyTask)
    SpyTask.builds.clear()
    args = [*tiny_args(tmp_path / "run", tiny_bert, sentiment_files), "--model.task", "load_spy",
            "--data.class_path", f"{__name__}.SpyData", "--model.attn_implementation", "eager"]
    fit = cli("fit", "--config", "configs/quickstart.yaml", *args, "--trainer.max_steps", "1",
              "--trainer.limit_val_batches", "1", "--export.enabled", "false")
    assert fit.trainer.global_step == 1
    main(["estimate", "--config", "configs/quickstart.yaml", *args])
    assert "parameters:" in capsys.readouterr().out
    (fitted, estimated) = SpyTask.builds
    assert fitted["patched"] == estimated["patched"] == []
    assert fitted["load"] == LoadOptions(dtype=torch.float32, attn_implementation="eager")
    assert estimated["load"] == LoadOptions(dtype=torch.float32, attn_implementation="eager", meta=True)
    assert {p.device.type for p in fitted["model"].parameters()} == {"cpu"}
    assert {p.device.type for p in estimated["model"].parameters()} == {"meta"}
    assert attention(fitted["model"]) == attention(estimated["model"]) == "eager"
    for aside in (fitted["aside"], estimated["aside"]):  # loaded without `load`: Transformers' defaults, real weights
        assert attention(aside) == "sdpa" and {p.device.type for p in aside.parameters()} == {"cpu"}
    assert from_pretrained_functions() == TRANSFORMERS_OWN


def test_two_builds_in_one_process_keep_their_own_options(tiny_bert: Path) -> None:
    half = ClassificationTask(INFO).build_model(str(tiny_bert), LoadOptions(dtype=torch.bfloat16,
                                                                             attn_implementation="eager"))
    plain = FineTuner(backbone=str(tiny_bert), info=INFO).model
    meta = ClassificationTask(INFO).build_model(str(tiny_bert), LoadOptions(meta=True, dtype=torch.bfloat16))
    assert plain is not None
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16} and attention(half) == "eager"
    assert {p.dtype for p in plain.parameters()} == {torch.float32} and attention(plain) == "sdpa"
    assert {(p.device.type, p.dtype) for p in meta.parameters()} == {("meta", torch.bfloat16)}
    assert [n for n, _ in meta.named_parameters()] == [n for n, _ in plain.named_parameters()]
    assert meta.config.num_labels == 2  # the task's config reaches the meta build


def test_the_tasks_own_arguments_apply_on_meta_as_from_pretrained_applies_them(tiny_bert: Path) -> None:
    """Keyword arguments that are config settings (`num_labels`) shape the meta model as they shape a loaded one."""
    auto = transformers.AutoModelForSequenceClassification
    real = load_pretrained(auto, str(tiny_bert), LoadOptions(), num_labels=5)
    meta = load_pretrained(auto, str(tiny_bert), LoadOptions(meta=True), num_labels=5)
    assert {n: p.shape for n, p in meta.named_parameters()} == {n: p.shape for n, p in real.named_parameters()}
    assert real.config.num_labels == meta.config.num_labels == 5
    for own in ("dtype", "torch_dtype"):  # the task's own dtype, under either of Transformers' names, wins
        assert load_pretrained(auto, str(tiny_bert), LoadOptions(), **{own: torch.bfloat16}).dtype == torch.bfloat16


class OldContract(Task):
    name = "old_contract"

    def build_model(self, backbone: str) -> torch.nn.Module:  # type: ignore[override]
        raise AssertionError("not called")


@pytest.mark.usefixtures("isolated_plugins")
def test_a_build_model_without_the_options_fails_with_the_fix(tiny_bert: Path) -> None:
    register_task(OldContract)
    with pytest.raises(UserError, match=r"task 'old_contract' .* defines build_model\(self, backbone\), .* define "
                                        r"build_model\(self, backbone, load\)"):
        FineTuner(task="old_contract", backbone=str(tiny_bert), info={})


class IgnoresLoad(ClassificationTask):
    name = "ignores_load"

    def build_model(self, backbone: str, load: LoadOptions) -> torch.nn.Module:
        return transformers.AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)


@pytest.mark.usefixtures("isolated_plugins")
def test_the_conformance_kit_names_a_build_model_that_ignores_its_options(tiny_bert: Path) -> None:
    register_task(IgnoresLoad)
    assert load_options_problem(FineTuner(backbone=str(tiny_bert), info=INFO)) == ""
    problem = load_options_problem(FineTuner(task="ignores_load", backbone=str(tiny_bert), info=INFO))
    count = sum(1 for _ in IgnoresLoad(INFO).build_model(str(tiny_bert), LoadOptions()).parameters())
    assert problem.startswith("IgnoresLoad.build_model(backbone, LoadOptions(dtype=torch.bfloat16, ") and \
        f"left {count} parameters off the meta device" in problem and "lit_ft.load_pretrained" in problem
