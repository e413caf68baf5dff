"""Trustworthy runs: a killed run resumes exactly, writes are atomic, divergence stops, checkpoints load safely.

The kill tests kill real `lit_ft` subprocesses with SIGKILL. Where the kill must land inside a write, a
`sitecustomize` module (tests/stall/) holds that write open half-way so the test can kill it there.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from builders import make_tiny_bert
from helpers import cli, tiny_args

from lit_ft import wandb_file
from lit_ft.commands.cli import main, run
from lit_ft.errors import UserError
from lit_ft.io import TMP_MARK

QUICKSTART = "configs/quickstart.yaml"
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"
STALL_DIR = Path(__file__).parent / "stall"


@pytest.fixture(scope="module")
def dropout_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with dropout, so a resumed run that lost its RNG state would train differently."""
    out = make_tiny_bert(tmp_path_factory.mktemp("dropout_bert"))
    config = json.loads((out / "config.json").read_text())
    config.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    (out / "config.json").write_text(json.dumps(config))
    return out


def resume_args(root: Path, bert: Path, files: dict[str, str]) -> list[str]:
    """8 batches an epoch, validation twice an epoch, `last` after every optimizer step, CSV metrics every step."""
    return ["--config", QUICKSTART, *tiny_args(root, bert, files, logger=CSV_LOGGER),
            "--trainer.logger.save_dir", str(root), "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
            "--trainer.val_check_interval", "0.5", "--data.init_args.batch_size", "8",
            "--checkpoint.every_n_train_steps", "1", "--export.enabled", "false", "--model.learning_rate", "1e-3"]


def lit_ft_process(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lit_ft", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def wait_for(proc: subprocess.Popen[str], ready: object, timeout: float = 300) -> None:
    """Poll until `ready()` is true; fail with the process's stderr if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if proc.poll() is not None:
            pytest.fail(f"lit_ft ended (status {proc.returncode}) before the kill:\n{proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "timed out waiting for the subprocess"
        time.sleep(0.01)


def pointer_step(checkpoints: Path) -> int:
    try:
        return int(json.loads((checkpoints / "best.json").read_text())["global_step"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def csv_rows(root: Path) -> list[dict[str, str]]:
    versions = sorted((root / "lightning_logs").iterdir())
    assert [v.name for v in versions] == ["version_0"], "a resumed run continues the same CSV log"
    with open(versions[0] / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("train/samples_per_sec") for row in rows) and any(row.get("train/lr") for row in rows)
    return [{k: v for k, v in row.items() if k != "train/samples_per_sec"} for row in rows]  # wall clock varies


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def debris(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.is_dir() for p in d.rglob(f"*{TMP_MARK}*")]


# ---- exact resume ------------------------------------------------------------------------------------
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(
    tmp_path: Path, dropout_bert: Path, sentiment_files: dict[str, str]
) -> None:
    files = {"train": sentiment_files["train"], "validation": sentiment_files["validation"]}
    straight = cli("fit", *resume_args(tmp_path / "straight", dropout_bert, files))
    total = straight.trainer.global_step
    assert total == 16

    killed = tmp_path / "killed"
    proc = lit_ft_process(["fit", *resume_args(killed, dropout_bert, files)])
    wait_for(proc, lambda: pointer_step(killed / "checkpoints") >= 5)  # mid epoch 0 (8 steps an epoch)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = pointer_step(killed / "checkpoints")
    assert 5 <= at_kill < total, "the kill landed before the end of training"
    saved = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == at_kill  # `last` is the newest state, whatever the metric did

    resumed = cli("fit", *resume_args(killed, dropout_bert, files), "--ckpt_path", "last")
    assert resumed.trainer.global_step == total
    a, b = weights(tmp_path / "straight" / "checkpoints" / "last.ckpt"), weights(killed / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # bitwise: data order, dropout RNG, optimizer
    assert csv_rows(killed) == csv_rows(tmp_path / "straight")  # every logged value (but the clock), no gaps
    assert debris(killed) == []


def test_batch_sampler_position_and_epochs() -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch

    from lit_ft.sampler import LengthGroupedBatchSampler, ResumableLoader

    lengths = [i % 7 + 1 for i in range(40)]
    sampler = LengthGroupedBatchSampler(lengths, 4, seed=3, group_batches=2)
    epoch0 = list(sampler)
    loader = ResumableLoader(list(range(40)), batch_sampler=sampler, batches_done=lambda: 3)
    _set_sampler_epoch(loader, 1)  # what Lightning calls at each epoch start
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and sorted(sum(epoch1, [])) == list(range(40))
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches_done": 3}
    fresh = LengthGroupedBatchSampler(lengths, 4, seed=3, group_batches=2)
    fresh.load_state_dict(state)
    assert list(fresh) == epoch1[3:]  # the rest of the interrupted epoch
    assert list(fresh) == epoch1  # then whole epochs again
    fresh.load_state_dict({"epoch": 1, "batches_done": len(fresh)})  # saved at an epoch's end
    assert fresh.epoch == 2 and len(list(fresh)) == len(fresh)


def test_time_based_saves_write_last_between_validations(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str]
) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    result = cli("fit", "--config", QUICKSTART, *args, "--trainer.max_steps", "5", "--data.init_args.batch_size", "8",
                 "--trainer.limit_val_batches", "0", "--checkpoint.train_time_interval", "0:00:00",
                 "--export.enabled", "false")
    checkpoint = result.trainer.checkpoint_callback
    assert checkpoint.last_every_seconds == 0.0
    assert checkpoint._last_saves >= 4  # one after each optimizer step but the first batch's
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 5


# ---- NaN guard ---------------------------------------------------------------------------------------
def test_divergence_stops_with_one_line_and_nothing_nan_is_kept(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", QUICKSTART, *tiny_args(root, tiny_bert, sentiment_files),
              "--trainer.max_epochs", "6", "--model.learning_rate", "1e3"])
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lit_ft: error:")]
    assert len(errors) == 1
    assert "non-finite" in errors[0] and "optimizer step" in errors[0]
    assert "model.learning_rate (now 1000.0)" in errors[0] and "32-true" in errors[0]
    assert "--nan_guard.skip_steps" in errors[0]
    assert not (root / "export").exists()
    pointer = json.loads((root / "checkpoints" / "best.json").read_text())
    for which in ("best", "last"):
        for name, tensor in weights(root / "checkpoints" / pointer[which]).items():
            assert torch.isfinite(tensor).all(), f"{which} checkpoint holds non-finite {name}"


def test_skip_steps_drops_bad_updates_and_finishes(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str]
) -> None:
    result = cli("fit", "--config", QUICKSTART, *tiny_args(tmp_path / "run", tiny_bert, sentiment_files),
                 "--trainer.max_epochs", "6", "--model.learning_rate", "1e3", "--nan_guard.skip_steps", "100")
    guard = next(cb for cb in result.trainer.callbacks if type(cb).__name__ == "NanGuard")
    assert 0 < guard.skipped <= 100
    exported = tmp_path / "run" / "export" / "model.safetensors"
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(exported).values())


# ---- atomic outputs ----------------------------------------------------------------------------------
def test_kill_during_checkpoint_save_keeps_previous_and_cleans_up(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str]
) -> None:
    root = tmp_path / "run"
    args = ["fit", "--config", QUICKSTART, *tiny_args(root, tiny_bert, sentiment_files), "--trainer.max_epochs", "2",
            "--export.enabled", "false"]
    marker = tmp_path / "stalled"
    # the third checkpoint write stops half-way (after two: epoch 0's best and last)
    proc = lit_ft_process(args, {"PYTHONPATH": f"{STALL_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                                 "LIT_FT_STALL": f"checkpoint:3:{marker}"})
    wait_for(proc, marker.exists)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    checkpoints = root / "checkpoints"
    half_written = debris(checkpoints)
    assert len(half_written) == 1 and 0 < half_written[0].stat().st_size
    pointer = json.loads((checkpoints / "best.json").read_text())
    last = torch.load(checkpoints / pointer["last"], weights_only=True)  # the previous good file, whole
    assert last["global_step"] == pointer["global_step"] > 0

    cli(*args, "--ckpt_path", "last")  # the next start cleans the debris and resumes
    assert debris(checkpoints) == []
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] > pointer["global_step"]


def test_kill_during_export_keeps_previous_export_and_cleans_up(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str]
) -> None:
    root = tmp_path / "run"
    cli("fit", "--config", QUICKSTART, *tiny_args(root, tiny_bert, sentiment_files), "--trainer.max_epochs", "1")
    out = tmp_path / "exported"
    main(["export", str(root), "--output_dir", str(out)])
    before = (out / "model.safetensors").read_bytes()
    marker = tmp_path / "stalled"
    proc = lit_ft_process(["export", str(root), "--output_dir", str(out)],
                          {"PYTHONPATH": f"{STALL_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                           "LIT_FT_STALL": f"export:1:{marker}"})
    wait_for(proc, marker.exists)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = debris(tmp_path)
    assert len(left) == 1 and (left[0] / "model.safetensors").is_file()  # killed after writing the weights
    assert (out / "model.safetensors").read_bytes() == before and (out / "tokenizer.json").is_file()

    main(["export", str(root), "--output_dir", str(out)])  # the next export removes the killed one's files
    assert debris(tmp_path) == []
    assert (out / "model.safetensors").read_bytes() == before


def test_moved_run_directory_still_resolves_best_last_and_export(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "a" / "run"
    cli("fit", "--config", QUICKSTART, *tiny_args(first, tiny_bert, sentiment_files), "--trainer.max_epochs", "1")
    pointer = json.loads((first / "checkpoints" / "best.json").read_text())
    assert not Path(pointer["best"]).is_absolute() and not Path(pointer["last"]).is_absolute()
    moved = tmp_path / "b" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    repo = Path(__file__).resolve().parents[1]
    args = ["--config", str(repo / QUICKSTART), *tiny_args(moved, tiny_bert, sentiment_files)]
    tested = cli("test", *args, "--ckpt_path", "best")
    assert "test/accuracy" in tested.trainer.callback_metrics
    main(["export", str(moved), "--output_dir", "out"])
    assert (elsewhere / "out" / "model.safetensors").is_file()
    resumed = cli("fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    best = Path(resumed.trainer.checkpoint_callback.best_model_path)
    assert best.parent == moved / "checkpoints" and best.is_file()  # paths in the checkpoint were rebased
    assert resumed.trainer.global_step == 2 * tested.trainer.global_step or resumed.trainer.current_epoch == 2


def test_missing_run_gives_the_path_and_what_to_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no checkpoint found at 'nowhere' \(absolute: .*nowhere\)"):
        run(["export", "nowhere", "--output_dir", "x"])


# ---- one run directory, one run ----------------------------------------------------------------------
def test_second_fit_into_a_run_directory_refuses_unless_overwrite(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "run"
    args = ["fit", "--config", QUICKSTART, *tiny_args(root, tiny_bert, sentiment_files), "--trainer.max_epochs", "1"]
    cli(*args, "--model.learning_rate", "1e-12")  # the metric cannot improve after the first validation
    exported = (root / "export" / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("lit_ft: error:") and str(root) in message
    for option in ("--ckpt_path last", "--trainer.default_root_dir", "--overwrite"):
        assert option in message
    assert (root / "export" / "model.safetensors").read_bytes() == exported  # untouched

    again = cli(*args, "--overwrite", "true", "--trainer.max_epochs", "2")
    names = sorted(p.name for p in (root / "checkpoints").glob("*.ckpt"))
    assert not any("-v" in n for n in names), names
    pointer = json.loads((root / "checkpoints" / "best.json").read_text())
    last = torch.load(root / "checkpoints" / pointer["last"], weights_only=True)
    assert last["global_step"] == again.trainer.global_step == pointer["global_step"]


# ---- safe loading ------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("kind", ["malicious", "garbage", "empty", "foreign"])
def test_bad_checkpoint_files_are_one_line_naming_the_file(
    tmp_path: Path, kind: str, tiny_bert: Path, sentiment_files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / f"{kind}.ckpt"
    pwned = tmp_path / "pwned"
    if kind == "malicious":
        torch.save({"state_dict": {}, "hyper_parameters": _Payload(pwned)}, ckpt)
    elif kind == "garbage":
        ckpt.write_bytes(b"this is not a checkpoint\n" * 10)
    elif kind == "empty":
        ckpt.write_bytes(b"")
    else:
        torch.save({"weights": torch.zeros(3)}, ckpt)
    runs = [["export", str(ckpt), "--output_dir", str(tmp_path / "out")],
            ["test", "--config", QUICKSTART, *tiny_args(tmp_path / "run", tiny_bert, sentiment_files),
             "--ckpt_path", str(ckpt)]]
    for argv in runs:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("lit_ft: error: ") and f"'{ckpt}'" in err[-1]
        assert "Traceback" not in "\n".join(err)
        assert "weights_only=False" not in err[-1] and "trust" not in err[-1]
    assert not pwned.exists()
    assert not (tmp_path / "out").exists()


def test_interrupted_then_resumed_wandb_run_holds_each_step_once(
    tmp_path: Path, dropout_bert: Path, sentiment_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C at step 7 (`last` is from the validation at step 4): the W&B run already holds steps 5-7, so the
    resumed fit, which replays them exactly, must not log them again; every other row is logged once."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "run"
    files = {"train": sentiment_files["train"], "validation": sentiment_files["validation"]}
    loggers = json.dumps([{"class_path": CSV_LOGGER, "init_args": {"save_dir": str(root)}},
                          {"class_path": "lightning.pytorch.loggers.WandbLogger",
                           "init_args": {"save_dir": str(root), "project": "lit_ft_test"}}])
    args = [*resume_args(root, dropout_bert, files), "--trainer.logger", loggers,
            "--checkpoint.every_n_train_steps", "null"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            cli("fit", *args, "--trainer.callbacks+=helpers.InterruptAt", "--trainer.callbacks.step", "7")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    assert pointer_step(root / "checkpoints") == 4
    resumed = cli("fit", *args, "--ckpt_path", "last")
    run_id = resumed.trainer.loggers[1].version
    resumed.trainer.loggers[1].experiment.finish()

    # both fits may start within one second: W&B then names the second folder `offline-run-<time>-<id>-1`
    files_of_run = sorted((root / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}.wandb"))
    assert len(files_of_run) == 2, "the resumed fit continues the interrupted run's id"
    for _ in range(60):  # the W&B service process may still be flushing the resumed run's file
        if any(r.WhichOneof("record_type") == "exit" for r in wandb_file.records(files_of_run[1])):
            break
        time.sleep(0.5)
    logged: list[tuple[int, str, float]] = []
    for path in files_of_run:
        for row in wandb_file.history(path):
            step = int(row["trainer/global_step"])
            logged += [(step, k, round(float(v), 6)) for k, v in row.items()
                       if not k.startswith(("_", "trainer/")) and not k.endswith("_per_sec")]
        if path == files_of_run[0]:
            assert max(s for s, _, _ in logged) >= 6, "the interrupted run's rows past the checkpoint are in its file"
    pairs = [(s, k) for s, k, _ in logged if k != "epoch"]  # `epoch` rides along with every row of a step
    assert sorted(p for p in set(pairs) if pairs.count(p) > 1) == []  # no step logged twice
    expected = {(int(r["step"]), k, round(float(v), 6)) for r in csv_rows(root) for k, v in r.items()
                if v != "" and k != "step" and not k.endswith("_per_sec")}  # throughput is wall-clock time
    assert set(logged) == expected  # every row once, with the values of the (exact) CSV log
