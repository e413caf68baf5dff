"""`lit_ft check`: each pre-flight rule fires on a config that breaks it and on nothing else, the shipped
quickstart passes, and `fit` refuses a fatal finding with its one-line error before training."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from builders import write_sentiment_csvs
from helpers import tiny_args
from jsonargparse import Namespace

from lit_ft.commands.cli import main
from lit_ft.commands.recipe import Recipe, build_data, read_recipe
from lit_ft.commands.rules.catalogue import all_rules
from lit_ft.commands.rules.rule import run_rules
from lit_ft.commands.run_plan import RunPlan, cpu_flags
from lit_ft.hub import hub_cache

pytestmark = pytest.mark.usefixtures("single_thread")
N_TRAIN, BATCH = 96, 16  # 6 batches (and optimizer steps) per epoch; quickstart: 3 epochs, log every 5 steps


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("data")
    found = write_sentiment_csvs(out, n_train=N_TRAIN, n_eval=16)
    neutral = out / "validation_neutral.csv"
    shutil.copy(found["validation"], neutral)
    with open(neutral, "a", newline="") as f:
        csv.writer(f).writerow(["the plot was so so", "neutral"])
    return {**found, "validation_neutral": str(neutral)}


@pytest.fixture(scope="module")
def recipe(tiny_bert: Path, files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Recipe:
    root = tmp_path_factory.mktemp("run")
    return read_recipe(["--config", "configs/quickstart.yaml", *tiny_args(root, tiny_bert, files)], "check")


def findings(recipe: Recipe, flags: frozenset[str] = frozenset({"amx_bf16"}), **changes: Any) -> dict[str, Any]:
    """The findings (by rule) of the recipe with `changes` (dotted keys, `__` for dots) on a machine without CUDA."""
    cfg = recipe.cfg.clone()
    for key, value in changes.items():
        cfg[key.replace("__", ".")] = value
    plan = RunPlan(cfg, build_data(cfg), cuda_devices=0, flags=flags)
    return {f.rule: f for f in run_rules(plan, all_rules())}


def test_the_tiny_quickstart_is_silent(recipe: Recipe) -> None:
    assert findings(recipe) == {}
    assert findings(recipe, trainer__precision="bf16-mixed") == {}  # a CPU with native bf16


def test_memory_beyond_the_device_is_a_warning_with_the_estimate(recipe: Recipe) -> None:
    cfg = recipe.cfg.clone()
    data = build_data(cfg)
    from lit_ft.commands.model_memory import recipe_estimate

    found_need = recipe_estimate(cfg, data, 1)
    need = found_need.total
    # on the CPU the device is the host: the process (measured, in this process) counts, and the rule measures it
    # again, some MiB apart
    assert found_need.on_host and found_need.process > 0 and need == found_need.host
    roomy = RunPlan(cfg, data, cuda_devices=0, flags=frozenset({"amx_bf16"}), memory=int(need) + 2**28)
    assert [f.rule for f in run_rules(roomy, all_rules())] == []
    tight = RunPlan(cfg, data, cuda_devices=0, flags=frozenset({"amx_bf16"}), memory=int(need) // 2)
    found = {f.rule: f for f in run_rules(tight, all_rules())}
    assert list(found) == ["memory_per_device"] and found["memory_per_device"].severity == "warning"
    said = float(found["memory_per_device"].problem.split("per device is ")[1].split()[0])
    assert abs(said - need / 2**30) < 0.15
    assert "gradient_checkpointing" in found["memory_per_device"].fix


def lora(*targets: str) -> Namespace:
    return Namespace(r=8, alpha=16, dropout=0.0, target_modules=list(targets), modules_to_save=None)


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "precision_on_accelerator": ({"trainer__precision": "16-mixed"}, "trainer.precision 16-mixed on the CPU"),
    "max_length_beyond_positions": ({"data__init_args__max_length": 1000}, "has 128 positions"),
    "lora_targets_in_backbone": ({"model__lora": lora("query", "q_proj")},
                                 "target_modules ['q_proj'] match no module"),
    "labels_never_in_train": ({"data__init_args__label_names": ["negative", "positive", "neutral"]},
                              "has 3 labels but the training split has no rows of neutral"),
    # 6 batches an epoch, 3 epochs: validation every 5 epochs would first run after batch 4 x 6 + 6
    "validation_after_run_end": ({"trainer__check_val_every_n_epoch": 5},
                                 "validation first runs after training batch 30 (trainer.val_check_interval 1.0, "
                                 "check_val_every_n_epoch 5) but the run stops after 18 batches"),
    "log_interval_beyond_epoch": ({"trainer__log_every_n_steps": 10}, "an epoch has 6 optimizer steps"),
    # data.batch_size is per device: 16 x 2 devices x 4 accumulated batches = 128 rows a step, more than 96
    "batch_larger_than_train": ({"trainer__devices": 2, "trainer__accumulate_grad_batches": 4,
                                 "trainer__log_every_n_steps": 1},
                                "one optimizer step takes 128 rows (data.batch_size 16 per device x 2 device(s) x "
                                "accumulate_grad_batches 4) but the training split has 96"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_rule_fires_alone(recipe: Recipe, name: str) -> None:
    changes, expected = CASES[name]
    found = findings(recipe, **changes)
    assert list(found) == [name]
    assert expected in found[name].problem and found[name].fix


def test_machine_rules(recipe: Recipe, tmp_path: Path) -> None:
    found = findings(recipe, trainer__accelerator="gpu")
    assert list(found) == ["precision_on_accelerator"] and "no CUDA device is visible" in found[
        "precision_on_accelerator"].problem
    found = findings(recipe, flags=frozenset({"avx2", "avx512f"}), trainer__precision="bf16-true")
    assert list(found) == ["bf16_on_cpu_without_native_bf16"] and found["bf16_on_cpu_without_native_bf16"].severity \
        == "warning"
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx512_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "absent") is None


def test_labels_of_validation_unknown_to_the_model(recipe: Recipe, files: dict[str, str]) -> None:
    found = findings(recipe, data__init_args__source__validation=files["validation_neutral"])
    assert list(found) == ["eval_labels_unknown_to_model"]
    assert found["eval_labels_unknown_to_model"].severity == "fatal"
    assert found["eval_labels_unknown_to_model"].problem == (
        "labels neutral of the validation split are not among the model's labels (from the training split) (first: "
        f"label ['neutral'] of row '16' in file '{files['validation_neutral']}' (column 'label') is not one of the "
        "label names ['negative', 'positive']; add it to data.label_names or fix the row)")


def test_remote_code_and_lora_targets_that_exist(recipe: Recipe, tiny_bert: Path, tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    shutil.copytree(tiny_bert, custom)
    config = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**config, "model_type": "my_bert",
                                                    "auto_map": {"AutoConfig": "configuration_my.MyConfig"}}))
    found = findings(recipe, model__backbone=str(custom))
    assert list(found) == ["backbone_needs_remote_code"]
    assert "model_type 'my_bert' is not built into Transformers" in found["backbone_needs_remote_code"].problem
    assert findings(recipe, model__lora=lora("query", "value")) == {}
    regex = Namespace(r=8, alpha=16, dropout=0.0, target_modules=r".*\.attention\.self\.(query|key)",
                      modules_to_save=None)
    assert findings(recipe, model__lora=regex) == {}


def test_check_prints_every_finding_with_its_fix(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                 files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["check", "--config", "configs/quickstart.yaml", *tiny_args(tmp_path, tiny_bert, files),
              "--trainer.precision", "16-mixed", "--trainer.log_every_n_steps", "50"])
    assert done.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"check: 2 problem(s), 1 fatal ({len(all_rules())} rules checked)"
    assert out[1].startswith("  fatal    precision_on_accelerator: trainer.precision 16-mixed on the CPU")
    assert out[2] == "           fix: set trainer.precision bf16-mixed or 32-true, or train on a GPU"
    assert out[3].startswith("  warning  log_interval_beyond_epoch: trainer.log_every_n_steps is 50")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("bad", ["precision", "labels"])
def test_fit_refuses_a_fatal_finding_before_training(bad: str, capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                     files: dict[str, str], tmp_path: Path) -> None:
    args = {"precision": ["--trainer.precision", "16-mixed"],
            "labels": ["--data.init_args.source.validation", files["validation_neutral"]]}[bad]
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", "configs/quickstart.yaml", *tiny_args(tmp_path, tiny_bert, files), *args])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"precision": "lit_ft: error: trainer.precision 16-mixed on the CPU: fp16 runs on CUDA GPUs",
                "labels": "lit_ft: error: labels neutral of the validation split are not among the model's labels"}
    assert err[-1].startswith(expected[bad]) and err[-1].endswith("(`lit_ft check` lists every pre-flight finding)")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "export").exists()


@pytest.mark.slow
def test_the_shipped_quickstart_has_no_problems(capsys: pytest.CaptureFixture[str]) -> None:
    main(["check", "--config", "configs/quickstart.yaml"])
    assert capsys.readouterr().out == f"check: no problems ({len(all_rules())} rules checked)\n"


def test_packed_epochs_count_packed_batches(capsys: pytest.CaptureFixture[str], llama: Path, tmp_path: Path) -> None:
    """Packing fits several examples in a row: the logging-interval rule counts the batches the run really has."""
    from helpers import QUIET, cli
    from sft_fixtures import write_jsonl
    from test_packing import varied_rows

    train = write_jsonl(varied_rows(24), tmp_path / "train.jsonl")
    args = ["--config", "configs/sft_chat.yaml", "--model.backbone", llama, "--data.init_args.source.train", train,
            "--data.init_args.source.validation", train, "--data.init_args.format", "prompt_completion",
            "--data.init_args.max_length", "32", "--data.init_args.batch_size", "2", "--data.init_args.packing",
            "true", "--trainer.precision", "32-true", "--trainer.max_epochs", "1", "--trainer.logger", "false"]
    fitted = cli("fit", *args, "--trainer.default_root_dir", tmp_path / "run", "--trainer.limit_val_batches", "0",
                 "--model.task_options.metrics", "[]", *QUIET)
    steps = fitted.trainer.global_step  # one epoch of packed batches
    assert 0 < steps < 24 // 2 - 1  # rows / batch_size, what the rule counted before, is far more
    capsys.readouterr()
    main(["check", *map(str, args), "--trainer.log_every_n_steps", str(steps + 1),
          "--trainer.default_root_dir", str(tmp_path / "check")])
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (f"  warning  log_interval_beyond_epoch: trainer.log_every_n_steps is {steps + 1} but an epoch "
                      f"has {steps} optimizer steps ({steps} batches of data.batch_size 2 on each of 1 device(s) "
                      "from 24 training rows, accumulating 1): no training loss is logged")
    assert out[2] == f"           fix: set trainer.log_every_n_steps to {max(1, steps // 5)} or less"
    main(["check", *map(str, args), "--trainer.log_every_n_steps", str(steps),
          "--trainer.default_root_dir", str(tmp_path / "check")])
    assert "log_interval_beyond_epoch" not in capsys.readouterr().out  # (validation is train here: that one warns)


def test_a_missing_data_file_is_one_finding(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                            files: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(SystemExit) as done:
        main(["check", "--config", "configs/quickstart.yaml",
              *tiny_args(tmp_path, tiny_bert, {**files, "train": missing})])
    assert done.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"check: 1 problem(s), 1 fatal ({len(all_rules())} rules checked)",
                   f"  fatal    data_files_readable: data.source.train: '{missing}' does not exist",
                   "           fix: fix the path or set data.source.train to null"]


def test_batch_size_0_is_a_finding_with_its_fix(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["check", "--config", "configs/quickstart.yaml", *tiny_args(tmp_path, tiny_bert, files),
              "--data.init_args.batch_size", "0"])
    assert done.value.code == 1
    assert capsys.readouterr().out.splitlines() == [
        "check: 1 problem(s), 1 fatal (the recipe does not parse, so no rule ran)",
        "  fatal    config: data.batch_size must be a positive integer (got 0)",
        "           fix: set data.batch_size to 1 or more"]


def test_check_finds_a_mistyped_backbone_before_anything_loads(capsys: pytest.CaptureFixture[str], tiny_bert: Path,
                                                               files: dict[str, str], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, a hub id that is neither a directory nor cached is the one fatal finding (the rules that would need
    it are not listed again), with what was looked for and the fix."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as done:
        main(["check", "--config", "configs/quickstart.yaml", *tiny_args(tmp_path, tiny_bert, files),
              "--model.backbone", "sentence-transformers/all-MiniLM-L6-v3"])
    assert done.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"check: 1 problem(s), 1 fatal ({len(all_rules())} rules checked)"
    assert out[1] == ("  fatal    backbone_found: model.backbone 'sentence-transformers/all-MiniLM-L6-v3' is not a "
                      f"local directory, not in the Hugging Face cache ({hub_cache()}), and the hub cannot be asked "
                      "(HF_HUB_OFFLINE=1)")
    assert out[2].startswith("           fix: give a local model directory with --model.backbone DIR, or run once "
                             "online")


@pytest.mark.parametrize(("recipe", "rule", "expected"), [
    ("codegen_mbpp", "backbone_found", "model.backbone 'Qwen/Qwen2.5-0.5B-Instruct' is not a local directory"),
    ("topic_ag_news", "hub_data_here", "--config configs/offline/topic_ag_news.yaml"),
])
def test_check_of_a_shipped_recipe_offline(recipe: str, rule: str, expected: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Offline, a generative recipe's default backbone and a hub recipe's data are fatal findings; the data one
    names the recipe's shipped offline piece."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as done:
        main(["check", "--config", f"configs/{recipe}.yaml"])
    assert done.value.code == 1
    out = capsys.readouterr().out
    assert out.startswith("check: 1 problem(s), 1 fatal") and f"fatal    {rule}: " in out and expected in out


def leaky_files(files: dict[str, str], out: Path) -> dict[str, str]:
    """The fixture with 2 training texts added to validation and 1 to test, in other case and spacing."""
    train = [row for row in csv.reader(open(files["train"], newline=""))][1:]
    leaky = {}
    for split, rows in (("validation", train[:2]), ("test", train[2:3])):
        leaky[split] = str(out / f"{split}_leaky.csv")
        shutil.copy(files[split], leaky[split])
        with open(leaky[split], "a", newline="") as f:
            csv.writer(f).writerows([f"  {text.upper()}  ", label] for text, label in rows)
    return {**files, **leaky}


def test_fit_warns_in_one_line_of_validation_and_test_rows_in_train(capsys: pytest.CaptureFixture[str],
                                                                    tiny_bert: Path, files: dict[str, str],
                                                                    tmp_path: Path) -> None:
    leaky = leaky_files(files, tmp_path)
    recipe = read_recipe(["--config", "configs/quickstart.yaml", *tiny_args(tmp_path / "check", tiny_bert, leaky)],
                         "check")
    found = findings(recipe)
    expected = ("2 of 18 validation rows and 1 of 17 test rows have an input that is also in the training split (case "
                "and spacing ignored): scores on them reward memorising, not generalising")
    assert list(found) == ["eval_rows_in_train"] and found["eval_rows_in_train"].severity == "warning"
    assert found["eval_rows_in_train"].problem == expected
    main(["fit", "--config", "configs/quickstart.yaml", *tiny_args(tmp_path / "run", tiny_bert, leaky),
          "--trainer.max_steps", "1", "--export.enabled", "false"])
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert warned == [f"lit_ft: warning: {expected}; remove those rows from validation/test or from train "
                      "(`lit_ft inspect-data` lists their ids)"]
