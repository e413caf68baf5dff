"""Every option within its domain: each numeric constructor argument lit_ft gives jsonargparse carries a typed limit
(`lit_ft.domains`), Lightning's trainer options are checked by pre-flight rules, negative values arrive in both
spellings, and label names that would split one class in several are refused.

The one-line refusals themselves, as a user meets them, are cases of the bad-input catalogue
(`tests/test_bad_inputs.py`, block "typed limits and labels").
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, tiny_args
from hypothesis import given
from hypothesis import strategies as st
from jsonargparse import Namespace

from lit_ft.commands.cli import main
from lit_ft.commands.preflight import join_negative_values
from lit_ft.commands.rules.catalogue import all_rules
from lit_ft.commands.rules.rule import run_rules
from lit_ft.commands.run_plan import RunPlan
from lit_ft.domains import DOMAINS
from lit_ft.label_sanity import confusable_groups, label_map_example, numbers_and_names

# numeric arguments left unbounded on purpose, each with the reason
UNBOUNDED = {
    "QuestionAnsweringTask.null_threshold": "a score difference (null minus best span): any sign is meaningful",
    "TokenClassificationData.conll_token_index": "a column index: negative counts from the end, as in Python",
    "TokenClassificationData.conll_tag_index": "a column index: -1 (the default) is the last column",
}


def _config_classes() -> list[type]:
    """FineTuner, every registered task (its options) and data module, lit_ft's callbacks and optimizer: the
    classes whose constructor arguments are options, with the lit_ft classes they inherit from."""
    from lightning.pytorch import Callback

    import lit_ft.commands.trainer_cli  # noqa: F401 - the callbacks the CLI adds as option groups
    import lit_ft.training.checkpoint  # noqa: F401 - TaskEarlyStopping, given by class_path in trainer.callbacks
    from lit_ft.module import FineTuner
    from lit_ft.optim import AdamW
    from lit_ft.registry import available_tasks

    roots: list[type] = [FineTuner, AdamW, *_subclasses(Callback)]
    for entry in available_tasks().values():
        roots += [entry.task, entry.task.datamodule]
    found: list[type] = []
    for root in roots:
        for cls in root.__mro__:
            if cls.__module__.startswith("lit_ft") and cls not in found:
                found.append(cls)
    return found


def _subclasses(base: type) -> list[type]:
    out = [c for c in base.__subclasses__() if c.__module__.startswith("lit_ft")]
    return out + [s for c in base.__subclasses__() for s in _subclasses(c)]


def _numeric_arguments(cls: type, seen: set[type]) -> list[tuple[str, Any]]:
    """(Class.argument, annotation) of every int/float argument, following dataclass-typed arguments."""
    if cls in seen or "__init__" not in vars(cls):
        return []
    seen.add(cls)
    found = []
    for name, hint in typing.get_type_hints(cls.__init__).items():
        parts = _leaves(hint)
        if any(p in (int, float) or hasattr(p, "_restrictions") for p in parts):
            found.append((f"{cls.__qualname__}.{name}", hint))
        for part in parts:
            if dataclasses.is_dataclass(part) and isinstance(part, type):
                found += _numeric_arguments(part, seen)
    return found


def _leaves(hint: Any) -> list[Any]:
    args = typing.get_args(hint)
    return [leaf for arg in args for leaf in _leaves(arg)] if args else [hint]


def test_every_numeric_option_has_a_domain() -> None:
    seen: set[type] = set()
    arguments = [a for cls in _config_classes() for a in _numeric_arguments(cls, seen)]
    names = {name for name, _ in arguments}
    assert {"FineTuner.learning_rate", "TaskDataModule.batch_size", "DataSource.validation_fraction",
            "LoraSettings.dropout", "TaskCheckpoint.save_top_k", "TaskEarlyStopping.patience",
            "NanGuard.skip_steps", "AdamW.eps", "Seq2SeqData.max_target_length", "SFTTask.code_timeout"} <= names
    unbounded = sorted(name for name, hint in arguments
                       if name not in UNBOUNDED and any(p in (int, float) for p in _leaves(hint)))
    assert unbounded == [], f"give these a type of lit_ft.domains, or a reason in UNBOUNDED: {unbounded}"
    assert set(UNBOUNDED) <= names, "UNBOUNDED names an argument that no longer exists"
    worded = {p.__name__ for _, hint in arguments for p in _leaves(hint) if hasattr(p, "_restrictions")}
    assert worded <= set(DOMAINS), f"word these domains in lit_ft.domains.DOMAINS: {worded - set(DOMAINS)}"


# ---- negative values in both spellings ------------------------------------------------------------
_NUMBERS = st.one_of(st.integers(max_value=-1).map(str),
                     st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False).map(repr),
                     st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False).map(lambda v: f"{v:e}"))


@given(value=_NUMBERS)
def test_a_negative_value_reaches_its_option(value: str) -> None:
    joined = join_negative_values(["fit", "--model.learning_rate", value, "--trainer.max_steps", "2"])
    assert joined == ["fit", f"--model.learning_rate={value}", "--trainer.max_steps", "2"]
    assert float(joined[1].split("=", 1)[1]) == float(value)


def test_values_that_are_not_numbers_stay_apart() -> None:
    argv = ["--trainer.fast_dev_run", "--model.lora", "-r", "--a=b", "-1", "-c", "x.yaml", "--x", "-e5", "--", "-2"]
    assert join_negative_values(argv) == argv


@pytest.mark.parametrize("spelling", [["--model.learning_rate", "-1e-3"], ["--model.learning_rate=-1e-3"]])
def test_negative_learning_rate_is_refused_by_its_domain(spelling: list[str], tiny_bert: Path, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", "configs/quickstart.yaml",
              *tiny_args(tmp_path / "run", tiny_bert, {"train": str(tmp_path / "train.csv")}), *spelling])
    assert done.value.code == 2
    assert capfd.readouterr().err.splitlines()[-1] == (
        "lit_ft: error: model.learning_rate must be a number above 0 (got -1e-3); set model.learning_rate to a "
        "number above 0")


# ---- Lightning's trainer options: pre-flight rules -------------------------------------------------
def _trainer_findings(**trainer: Any) -> dict[str, str]:
    plan = RunPlan(Namespace(trainer=Namespace(**trainer), model=Namespace(backbone="none")), cuda_devices=0)
    rules = [r for r in all_rules() if r.name in ("run_length_trains_nothing", "trainer_options_out_of_domain")]
    return {f.rule: f"{f.problem}; {f.fix}" for f in run_rules(plan, rules)}


@pytest.mark.parametrize(("trainer", "expected"), [
    ({"max_epochs": 0}, "trainer.max_epochs is 0: fit would stop before the first step"),
    ({"max_steps": 0}, "trainer.max_steps is 0"),
    ({"max_epochs": -2}, "trainer.max_epochs is -2; set trainer.max_epochs to 1 or more, or -1"),
    ({"max_steps": -5}, "trainer.max_steps is -5"),
    ({"accumulate_grad_batches": 0}, "trainer.accumulate_grad_batches is 0; set trainer.accumulate_grad_batches to 1"),
    ({"check_val_every_n_epoch": 0}, "trainer.check_val_every_n_epoch is 0"),
    ({"log_every_n_steps": 0}, "trainer.log_every_n_steps is 0"),
    ({"gradient_clip_val": -1.0}, "trainer.gradient_clip_val is -1.0; set trainer.gradient_clip_val to 0 or more"),
    ({"val_check_interval": 0}, "trainer.val_check_interval is 0; set it above 0"),
    ({"val_check_interval": -0.5}, "trainer.val_check_interval is -0.5"),
    ({"val_check_interval": 1.5}, "trainer.val_check_interval is 1.5"),
    ({"limit_val_batches": -1}, "trainer.limit_val_batches is -1"),
    ({"limit_test_batches": 2.0}, "trainer.limit_test_batches is 2.0"),
    ({"limit_train_batches": 0}, "trainer.limit_train_batches is 0: fit would run no training batch"),
])
def test_trainer_options_out_of_domain(trainer: dict[str, Any], expected: str) -> None:
    found = _trainer_findings(**trainer)
    assert len(found) == 1 and expected in next(iter(found.values())), found


@pytest.mark.parametrize("trainer", [
    {}, {"max_epochs": -1, "max_steps": 10}, {"max_epochs": 3, "max_steps": -1}, {"max_epochs": None},
    {"accumulate_grad_batches": 1, "gradient_clip_val": 0.0, "val_check_interval": 1.0},
    {"val_check_interval": 20, "limit_val_batches": 0, "limit_train_batches": 0.5},
])
def test_trainer_options_in_domain_pass(trainer: dict[str, Any]) -> None:
    assert _trainer_findings(**trainer) == {}


def test_check_shows_the_finding_fit_refuses(tiny_bert: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,neg\n" * 4)
    args = [*tiny_args(tmp_path / "run", tiny_bert, {"train": str(tmp_path / "train.csv")}), "--trainer.max_epochs",
            "0"]
    with pytest.raises(SystemExit) as done:
        main(["check", "--config", "configs/quickstart.yaml", *args])
    assert done.value.code == 1
    out = capsys.readouterr().out
    assert "fatal    run_length_trains_nothing: trainer.max_epochs is 0" in out
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", "configs/quickstart.yaml", *args])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("lit_ft: error: trainer.max_epochs is 0: fit would")
    assert not (tmp_path / "run").exists()


# ---- labels -----------------------------------------------------------------------------------------
def test_confusable_label_names() -> None:
    names = ["Positive", "negative", "positive", "positive "]
    assert confusable_groups(names) == [["Positive", "positive", "positive "]]
    assert label_map_example(names) == "{Positive: positive, 'positive ': positive}"
    assert numbers_and_names(["1", "2", "positive"]) == (["1", "2"], ["positive"])
    assert numbers_and_names(["1", "2"]) is None and numbers_and_names(["B-PER", "O"]) is None


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=8, unique=True))
def test_confusable_groups_partition_what_would_collide(names: list[str]) -> None:
    groups = confusable_groups(names)
    grouped = [n for g in groups for n in g]
    assert len(grouped) == len(set(grouped))  # each name in one group at most
    keys = [n.strip().casefold() for n in names]
    for name in names:
        assert (name in grouped) == (keys.count(name.strip().casefold()) > 1)


def test_label_map_joins_the_spellings(tiny_bert: Path, tmp_path: Path) -> None:
    """The fix the refusal names works: `data.label_map` folds the spellings into one class when reading."""
    rows = [("great film", "positive"), ("loved it", "positive "), ("superb", "Positive"), ("dull", "negative"),
            ("boring", "negative")] * 2
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    train = str(tmp_path / "train.csv")
    files = {"train": train, "validation": train}
    done = cli("fit", "--config", "configs/quickstart.yaml", *tiny_args(tmp_path / "run", tiny_bert, files),
               "--trainer.max_steps", "1", "--export.enabled", "false",
               "--data.init_args.label_map", json.dumps({"positive ": "positive", "Positive": "positive"}))
    assert sorted(done.model.hparams["info"]["label_names"]) == ["negative", "positive"]  # each name once
    assert dict(sorted(done.datamodule.label_counts("train").items())) == {"negative": 4, "positive": 6}


def test_domain_types_are_numbers() -> None:
    """mypy sees plain int/float; at run time they are jsonargparse's restricted subclasses of them."""
    from lit_ft import domains

    for name in DOMAINS:
        kind = getattr(domains, name)
        assert issubclass(kind, (int, float)) and inspect.isclass(kind)


def test_a_run_with_typed_options_resumes(tiny_bert: Path, tmp_path: Path) -> None:
    """Checkpoints hold plain numbers (hyperparameters, the data's settings, optimizer and early stopping state):
    they load with weights_only=True, which would refuse jsonargparse's restricted types, and the run resumes."""
    import torch

    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,neg\n" * 4)
    train = str(tmp_path / "train.csv")

    def fit(run: str, *extra: str) -> Any:
        return cli("fit", "--config", "configs/quickstart.yaml", "--export.enabled", "false",
                   *tiny_args(tmp_path / run, tiny_bert, {"train": train, "validation": train}), *extra)

    fit("stopping", "--trainer.max_steps", "1", "--trainer.callbacks+=lit_ft.training.checkpoint.TaskEarlyStopping",
        "--trainer.callbacks.patience", "5")
    saved = torch.load(tmp_path / "stopping" / "checkpoints" / "last.ckpt", weights_only=True)
    numbers = {"warmup": saved["hyper_parameters"]["warmup"],
               "batch_size": saved["datamodule_hyper_parameters"]["batch_size"],
               "patience": next(v["patience"] for k, v in saved["callbacks"].items() if "EarlyStopping" in k),
               "betas": saved["optimizer_states"][0]["param_groups"][0]["betas"]}
    assert numbers == {"warmup": 0.1, "batch_size": 16, "patience": 5, "betas": (0.9, 0.999)}
    assert [type(v) for v in [*numbers.values(), *numbers["betas"]]] == [float, int, int, tuple, float, float]
    fit("run", "--trainer.max_steps", "1")
    assert fit("run", "--trainer.max_steps", "2", "--ckpt_path", "last").trainer.global_step == 2
