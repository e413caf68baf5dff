"""`lit_ft tune` on the quickstart with the tiny BERT: the study on disk, resume, pruning, failed trials, the best
recipe, and one-line errors for bad search spaces. Every trial is a real `lit_ft fit` of 2-3 optimizer steps."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from helpers import cli
from lightning.pytorch import Callback, Trainer

from lit_ft.commands.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")
QUICKSTART = "configs/quickstart.yaml"
SPACE = {"model.learning_rate": {"type": "float", "low": "1e-4", "high": 1.0e-2, "log": True},
         "data.init_args.batch_size": {"type": "categorical", "choices": [8, 16]},
         "pruner": {"type": "none"}}
COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


def fit_args(root: Path, bert: Path, steps: int = 2) -> list[str]:
    """The quickstart with the tiny BERT, `steps` optimizer steps validated after each one (on one batch)."""
    return ["--config", QUICKSTART, "--model.backbone", str(bert), "--trainer.default_root_dir", str(root),
            "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "1",
            "--trainer.check_val_every_n_epoch", "null", "--trainer.num_sanity_val_steps", "0",
            "--trainer.limit_val_batches", "1", "--trainer.logger", "false", "--export.enabled", "false"]


def tune(root: Path, bert: Path, space: dict[str, Any], trials: int, steps: int = 2, *extra: str) -> None:
    path = root.parent / f"{root.name}_space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    main(["tune", *fit_args(root, bert, steps), "--search", str(path), "--trials", str(trials), *extra])


def study(root: Path) -> optuna.Study:
    return optuna.load_study(study_name="lit_ft", storage=f"sqlite:///{root / 'tune' / 'study.db'}")


def mtimes(root: Path, trial: int) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in (root / "tune" / f"trial_{trial}").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("tune") / "run"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tune(root, tiny_bert, SPACE, 2)
    return root, out.getvalue()


def test_each_trial_is_a_fit_in_its_own_directory_scored_by_its_best_checkpoint(searched: tuple[Path, str]) -> None:
    root, out = searched
    trials = study(root).trials
    assert [t.state for t in trials] == [COMPLETE, COMPLETE]
    assert study(root).direction == optuna.study.StudyDirection.MAXIMIZE  # val/accuracy: higher is better
    for t in trials:
        run_dir = root / "tune" / f"trial_{t.number}"
        logged = {json.loads(p.read_text())["step"]: json.loads(p.read_text())["metrics"]["val/accuracy"]
                  for p in (run_dir / "metrics").glob("val_step_*.json")}
        assert t.intermediate_values == pytest.approx(logged, abs=1e-7) and sorted(logged) == [1, 2]  # each validation
        assert t.value == max(t.intermediate_values.values())
        assert 1e-4 <= t.params["model.learning_rate"] <= 1e-2 and t.params["data.init_args.batch_size"] in (8, 16)
        assert t.user_attrs["seed"] == 42  # the quickstart's own seed, for every trial
    assert trials[0].params != trials[1].params
    best = study(root).best_trial
    pointer = json.loads((root / "tune" / f"trial_{best.number}" / "checkpoints" / "best.json").read_text())
    assert pointer["monitor"] == "val/accuracy" and best.value == pytest.approx(pointer["score"], abs=1e-7)
    other = root / "tune" / f"trial_{1 - best.number}"  # --keep best: the other trial keeps its metrics only
    assert not (other / "checkpoints").exists() and (other / "metrics").is_dir()
    table = out[out.index("lit_ft: 2 trials in"):].splitlines()
    assert table[1].split() == ["trial", "state", "val/accuracy", "model.learning_rate", "data.init_args.batch_size",
                                "note"]
    assert table[2].split()[:3] == ["0", "complete", f"{trials[0].value:.4g}"]
    assert "importance" in out


def test_the_best_recipe_fits_as_is_and_scores_what_its_trial_scored(searched: tuple[Path, str]) -> None:
    root, _ = searched
    best = study(root).best_trial
    recipe = root / "tune" / "best.yaml"
    loaded = yaml.safe_load(recipe.read_text())
    assert loaded["model"]["learning_rate"] == best.params["model.learning_rate"]
    assert loaded["data"]["init_args"]["batch_size"] == best.params["data.init_args.batch_size"]
    assert loaded["seed_everything"] == 42 and loaded["trainer"]["default_root_dir"] == str(root / "tune" / "best")
    assert loaded["trainer"]["check_val_every_n_epoch"] is None  # the recipe's null, not the option's default 1
    result = cli("fit", "--config", str(recipe))
    assert result.trainer.global_step == 2
    assert float(result.trainer.checkpoint_callback.best_model_score) == pytest.approx(best.value, abs=1e-7)
    # the whole class of drift, not one option: the refit ran exactly its trial's config, but for its directory
    ran = {name: yaml.safe_load((root / "tune" / name / "config.yaml").read_text())
           for name in (f"trial_{best.number}", "best")}
    for config in ran.values():
        del config["trainer"]["default_root_dir"]
    assert ran["best"] == ran[f"trial_{best.number}"]


def test_a_rerun_continues_the_study_and_reruns_an_interrupted_trial(searched: tuple[Path, str], tiny_bert: Path,
                                                                      tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "run"
    shutil.copytree(searched[0] / "tune", root / "tune")
    killed = study(root)
    killed.enqueue_trial({"model.learning_rate": 5e-3, "data.init_args.batch_size": 8})
    killed.ask(killed.trials[0].distributions)  # trial 2 left running, as a killed search leaves it
    before = {n: mtimes(root, n) for n in (0, 1)}
    tune(root, tiny_bert, SPACE, 3, 2, "--keep", "all")
    trials = study(root).trials
    assert [t.state for t in trials] == [COMPLETE, COMPLETE, FAIL, COMPLETE]
    assert trials[2].user_attrs["interrupted"] and trials[3].user_attrs["retry_of"] == 2
    assert trials[3].params == {"model.learning_rate": 5e-3, "data.init_args.batch_size": 8}
    assert {n: mtimes(root, n) for n in (0, 1)} == before  # completed trials were not run again
    tune(root, tiny_bert, SPACE, 3)  # all 3 done: nothing runs
    assert len(study(root).trials) == 4


class SigtermInFirstTrial(Callback):
    """Sends this process SIGTERM (what a cluster sends a preempted job) after trial 0's first optimizer step."""

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if Path(trainer.default_root_dir).name == "trial_0" and trainer.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_terminated_search_marks_its_trial_interrupted_and_reruns_its_values(tmp_path: Path,
                                                                              tiny_bert: Path) -> None:
    loss = ["--model.task_options.monitor", "loss"]  # and a metric where lower is better: a minimising study
    with pytest.raises(SystemExit) as done:
        tune(tmp_path / "run", tiny_bert, SPACE, 1, 3, *loss, "--trainer.callbacks+=test_tune.SigtermInFirstTrial")
    assert done.value.code == 143
    assert study(tmp_path / "run").direction == optuna.study.StudyDirection.MINIMIZE
    assert study(tmp_path / "run").user_attrs["monitor"] == "val/loss"
    stopped = study(tmp_path / "run").trials
    assert [t.state for t in stopped] == [FAIL, optuna.trial.TrialState.WAITING]  # its values queued to run again
    assert stopped[0].user_attrs["interrupted"]
    assert sorted(stopped[0].intermediate_values) == [1]  # Lightning stopped it at the step after the signal
    tune(tmp_path / "run", tiny_bert, SPACE, 1, 3, *loss)
    trials = study(tmp_path / "run").trials
    assert [t.state for t in trials] == [FAIL, COMPLETE] and trials[1].params == stopped[0].params
    assert sorted(trials[1].intermediate_values) == [1, 2, 3]
    assert trials[1].value == min(trials[1].intermediate_values.values())


def test_pruning_stops_a_trial_and_a_diverging_trial_fails_without_ending_the_search(
        tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = {"model.learning_rate": {"type": "categorical", "choices": [1.0e+30, 1.0e-3]},
             "pruner": {"type": "threshold", "lower": 1.01, "n_warmup_steps": 2}}  # prunes from step 2 on
    tune(tmp_path / "run", tiny_bert, space, 2, 3, "--seed", "41", "--model.warmup", "0")
    trials = study(tmp_path / "run").trials
    by_rate = {t.params["model.learning_rate"]: t for t in trials}
    assert set(by_rate) == {1.0e+30, 1.0e-3}, "the seed no longer draws both values: pick another --seed"
    diverged, pruned = by_rate[1.0e+30], by_rate[1.0e-3]
    assert diverged.state == FAIL and "NonFiniteError" in diverged.user_attrs["error"]
    assert pruned.state == PRUNED and sorted(pruned.intermediate_values) == [1, 2]  # stopped before step 3
    assert not (tmp_path / "run" / "tune" / "best.yaml").exists()
    assert "best: none (no trial completed)" in capsys.readouterr().out


@pytest.mark.parametrize(("space", "message"), [
    ({"model.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-5}},
     "'model.learning_rate': 'low' (0.001) must be below 'high' (1e-05)"),
    ({"model.learning_rate": {"type": "float", "low": 0, "high": 1e-3, "log": True}},
     "'model.learning_rate': a log-scaled range needs 'low' above 0"),
    ({"data.init_args.batch_size": {"type": "categorical", "choices": []}},
     "'data.init_args.batch_size': 'choices' must be a non-empty list"),
    ({"model.lora.r": {"type": "int", "low": 4, "hihg": 8}}, "'model.lora.r': unknown field(s) ['hihg']"),
    ({"model.warmup": {"type": "uniform", "low": 0, "high": 1}},
     "'model.warmup': expected a mapping with type float, int or categorical"),
    ({"model.learing_rate": {"type": "float", "low": 1e-5, "high": 1e-3}},
     "'model.learing_rate' does not fit the config: unrecognized arguments: --model.learing_rate=1e-05"),
    ({"model.learning_rate": {"type": "categorical", "choices": ["fast"]}},
     "'model.learning_rate' does not fit the config: model.learning_rate must be a number above 0 (got fast)"),
    ({"model.schedule": {"type": "categorical", "choices": ["linear", "cosin"]}},
     "'model.schedule' choice 'cosin' does not fit the config: model.schedule:"),
    ({"model.warmup": {"type": "float", "low": 0, "high": 0.1}, "pruner": {"type": "median", "patience": 2}},
     "pruner 'median' has no setting(s) ['patience']"),
])
def test_a_bad_search_space_is_one_line_naming_the_key(space: dict[str, Any], message: str, tmp_path: Path,
                                                        tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        tune(tmp_path / "run", tiny_bert, space, 2)
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"lit_ft: error: search space {tmp_path / 'run_space.yaml'}: ") and message in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_trials_run_on_one_device(tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        tune(tmp_path / "run", tiny_bert, SPACE, 1, 2, "--trainer.devices", "2")
    assert done.value.code == 2
    assert "runs its trials one at a time in its own process, on one device; the config asks for trainer.devices 2" \
        in capsys.readouterr().err
    from lit_ft.tune.command import one_device

    assert one_device({"devices": "auto"}) == ["--trainer.devices=1"]  # all GPUs would be DDP: one per trial
    assert one_device({"devices": 1, "num_nodes": 1}) == [] and one_device({"devices": "0,"}) == []


def test_tune_help_imports_neither_torch_nor_optuna() -> None:
    import subprocess

    code = ("import sys\nfrom lit_ft.commands.cli import main\ntry:\n    main(['tune', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'lightning', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--search SEARCH" in done.stdout and done.stdout.strip().endswith("[]")


def test_without_optuna_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], tiny_bert: Path) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` meets where it is not installed
    with pytest.raises(SystemExit):
        tune(tmp_path / "run", tiny_bert, SPACE, 1)
    assert "pip install 'lit_ft[tune]'" in capsys.readouterr().err


def test_importance_ranks_the_key_that_decides_the_score_first() -> None:
    from lit_ft.tune.report import importance_lines

    study = optuna.create_study(direction="maximize")
    space = {"x": optuna.distributions.FloatDistribution(0, 1), "y": optuna.distributions.FloatDistribution(0, 1)}
    for i in range(12):  # the score is x alone; y is noise
        x, y = i / 11, (i * 7 % 12) / 11
        study.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, distributions=space, value=x))
    lines = importance_lines(study, seed=0)
    assert lines[0].startswith("importance of each key (fANOVA over 12 completed trials")
    ranked = [line.split() for line in lines[1:]]
    assert [r[0] for r in ranked] == ["x", "y"] and float(ranked[0][1]) > 0.9
    assert sum(float(r[1]) for r in ranked) == pytest.approx(1.0, abs=2e-3)
    few = optuna.create_study()
    few.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": space["x"]}, value=1.0))
    assert importance_lines(few, seed=0) == ["importance: needs at least 5 completed trials, this search has 1"]


@pytest.mark.slow  # a real `lit_ft tune` process (the imports alone take seconds), killed in its second trial
def test_a_killed_search_resumes_where_it_stopped(tmp_path: Path, tiny_bert: Path) -> None:
    import signal
    import subprocess
    import time

    root, space_file = tmp_path / "run", tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    argv = ["tune", *fit_args(root, tiny_bert, steps=3), "--search", str(space_file), "--trials", "2", "--keep", "all"]
    proc = subprocess.Popen([sys.executable, "-m", "lit_ft", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (root / "tune" / "trial_1" / "config.yaml").exists():  # trial 1's fit has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = mtimes(root, 0)
    killed = study(root).trials
    assert [t.state for t in killed] == [COMPLETE, optuna.trial.TrialState.RUNNING]
    main(argv)
    trials = study(root).trials
    assert [t.state for t in trials] == [COMPLETE, FAIL, COMPLETE]  # trial 1 interrupted, its values run as trial 2
    assert trials[1].user_attrs["interrupted"] and trials[2].params == killed[1].params
    assert trials[0].value == killed[0].value and mtimes(root, 0) == first


class LiveDataModules(Callback):
    """Counts, as each trial's fit starts, the data modules alive in this process after a full collection: the
    trial's own, plus any an earlier trial left reachable (a class-level cache keyed by instance holds them all)."""

    counts: list[int] = []

    def on_fit_start(self, trainer: Trainer, *args: Any) -> None:
        LiveDataModules.counts.append(live_data_modules())


def live_data_modules() -> int:
    import gc

    from lit_ft import TaskDataModule

    gc.collect()
    return sum(issubclass(type(o), TaskDataModule) for o in gc.get_objects())


def test_trials_in_one_process_do_not_keep_earlier_trials_data_modules(tmp_path: Path, tiny_bert: Path) -> None:
    """8 question-answering trials (the task whose data module cached `rows` on its class) in one `lit_ft tune`:
    the live data modules at each trial's start stay at one, the running trial's, however many trials ran."""
    rows = [{"id": f"q{i}", "question": "who was it", "context": f"{name} went out and {name} came back",
             "answers": {"text": [name], "answer_start": [0]}} for i, name in enumerate(["anna", "bob", "carl"] * 4)]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    space = {"model.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
             "pruner": {"type": "none"}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    LiveDataModules.counts = []
    before = live_data_modules()  # what earlier tests of this process still hold
    main(["tune", "--config", "configs/qa_squad.yaml", "--model.backbone", str(tiny_bert),
          "--data.init_args.source.hub", "null", "--data.init_args.source.train", str(data),
          "--data.init_args.source.validation", str(data), "--data.init_args.max_length", "32",
          "--data.init_args.stride", "8", "--data.init_args.batch_size", "4",
          "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", "1",
          "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
          "--export.enabled", "false", "--trainer.callbacks+=test_tune.LiveDataModules",
          "--search", str(tmp_path / "space.yaml"), "--trials", "8"])
    assert [t.state for t in study(tmp_path / "run").trials] == [COMPLETE] * 8
    assert LiveDataModules.counts == [before + 1] * 8  # the original code kept every trial's: 1, 2, ..., 8
