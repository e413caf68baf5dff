"""What a run prints and where it writes: a real `lit_ft fit` (then `test`) subprocess on a tiny model, read as a
pipe reads it, with the quickstart's own loggers (W&B offline + CSV) moved by `--trainer.default_root_dir` only."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import write_sentiment_csvs
from helpers import cli, tiny_args

from lit_ft import wandb_file as wandb_reader

QUICKSTART = "configs/quickstart.yaml"
MAX_LINES = 25  # the README's promise for a 3-epoch quickstart
NOISE = ["Tip", "litlogger", "LOAD REPORT", "MISSING", "wandb: WARNING", "Run history", "Run summary", "v_num",
         "FLOPs", "GPU available but not used", "Epoch 0", "anonymous", "git root", "Loading weights", "tokenizing"]
TABLE_HEADER = re.compile(r"^  val +loss +accuracy +f1 +precision +recall$")


def _lit_ft(*args: Any, cwd: Path, home: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()), "HOME": str(home), "WANDB_DIR": str(home)}
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SILENT"):
        env.pop(key, None)  # as a user runs it: no credentials, no W&B settings
    done = subprocess.run([sys.executable, "-m", "lit_ft", *map(str, args)], cwd=cwd, env=env, timeout=600,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


def _run_args(root: Path, backbone: Path, files: dict[str, str]) -> list[str]:
    """The quickstart with its loggers, progress bar and model summary; only the model, data and root swapped."""
    args = [QUICKSTART, "--model.backbone", backbone, "--trainer.default_root_dir", root,
            "--data.init_args.batch_size", "8", "--trainer.log_every_n_steps", "2"]
    for split in ("train", "validation", "test"):
        args += [f"--data.init_args.source.{split}", files[split]]
    return [*args, "--data.init_args.source.predict", "null"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, list[str], str]:
    base = tmp_path_factory.mktemp("terminal")
    files = write_sentiment_csvs(base / "data", n_train=32, n_eval=16)
    root = base / "run"
    args = _run_args(root, tiny_bert, files)
    repo = Path(__file__).resolve().parents[1]
    out = _lit_ft("fit", "--config", *[repo / a if a == QUICKSTART else a for a in args], cwd=base, home=base)
    return root, [str(repo / QUICKSTART), *args[1:]], out


def test_fit_prints_a_short_readable_log(fitted: tuple[Path, list[str], str]) -> None:
    root, _, out = fitted
    lines = out.splitlines()
    assert "\r" not in out, "a pipe gets no carriage-return redraws"
    assert len(lines) <= MAX_LINES, out
    for noise in NOISE:
        assert noise not in out, f"{noise!r} in:\n{out}"
    assert [ln.split()[1] for ln in lines if ln.startswith("Epoch ")] == ["1/3", "2/3", "3/3"], out
    epoch = next(ln for ln in lines if ln.startswith("Epoch 3/3"))
    assert re.fullmatch(r"Epoch 3/3  4/4 batches  [\d.]+s  [\d,]+ samples/s  loss \d\.\d{4}", epoch), epoch
    headers = [i for i, ln in enumerate(lines) if TABLE_HEADER.match(ln)]
    assert len(headers) == 3, out
    values = [float(v) for v in lines[headers[-1] + 1].split()]
    final = json.loads((root / "metrics" / "val_epoch_3.json").read_text())["metrics"]
    assert values == pytest.approx([final[k] for k in ("val/loss", "val/accuracy", "val/f1", "val/precision",
                                                       "val/recall")], abs=5e-5)
    assert "val/f1/negative" in final and "f1/negative" not in out  # per class: the file, not the terminal
    data = next(ln for ln in lines if ln.startswith("data: "))
    assert re.match(r"data: train 32 \(\w+ \d+, \w+ \d+\), validation 16, test 16 rows; 0 of 64 inputs", data), data
    # the new classifier head is reported once, in one line; restoring it for the export reports nothing
    assert out.count("new weights in BertForSequenceClassification") == 1
    assert "lit_ft: W&B logs offline" in out and f"wandb sync {root}/wandb/offline-run-" in out


def test_outputs_follow_default_root_dir(fitted: tuple[Path, list[str], str]) -> None:
    root, _, _ = fitted
    assert (root / "config.yaml").is_file() and (root / "csv" / "version_0" / "metrics.csv").is_file()
    assert len(list((root / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    assert not (root.parent / "runs").exists(), "nothing may land in the recipe's own runs/ directory"


def test_best_checkpoint_holds_weights_only_and_last_resumes(fitted: tuple[Path, list[str], str]) -> None:
    root, _, _ = fitted
    pointer = json.loads((root / "checkpoints" / "best.json").read_text())
    best = torch.load(root / "checkpoints" / pointer["best"], map_location="cpu", weights_only=True)  # relative
    last = torch.load(root / "checkpoints" / pointer["last"], map_location="cpu", weights_only=True)
    assert "optimizer_states" not in best and "lr_schedulers" not in best
    assert best["hyper_parameters"]["info"]["label_names"] == ["negative", "positive"]
    assert len(last["optimizer_states"]) == 1 and last["optimizer_states"][0]["state"]
    assert best["global_step"] == 4 and last["global_step"] == 12  # last is the latest even when best is older
    assert set(best["state_dict"]) == set(last["state_dict"])


def test_test_joins_the_fit_wandb_group_and_prints_a_table(fitted: tuple[Path, list[str], str]) -> None:
    root, args, _ = fitted
    out = _lit_ft("test", "--config", *args, "--ckpt_path", "best", cwd=root.parent, home=root.parent)
    assert "LOAD REPORT" not in out and "new weights" not in out  # the checkpoint brings the head
    assert re.search(r"^Test  1/1 batches  [\d.]+s  [\d,]+ samples/s$", out, re.M), out
    assert re.search(r"^  test +loss +accuracy +f1 +precision +recall$", out, re.M), out
    assert "test/f1/negative" in json.loads((root / "metrics" / "test.json").read_text())["metrics"]
    assert (root / "config_test.yaml").is_file() and (root / "config.yaml").is_file()
    runs = {}
    for path in (root / "wandb").glob("offline-run-*/run-*.wandb"):
        run = next(r.run for r in wandb_reader.records(path) if r.WhichOneof("record_type") == "run")
        runs[run.job_type] = run
    fit_id = json.loads((root / "checkpoints" / "best.json").read_text())["wandb_run_id"]
    assert set(runs) == {"fit", "test"}
    assert runs["fit"].run_id == fit_id and runs["fit"].run_group == fit_id
    assert runs["test"].run_group == fit_id and runs["test"].run_id != fit_id
    assert runs["test"].display_name == "quickstart-test"


def test_logger_piece_writes_under_default_root_dir(tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    at = args.index("--trainer.logger")
    args = [*args[:at], *args[at + 2 :]]
    result = cli("fit", "--config", QUICKSTART, "--config", "configs/logger/tensorboard.yaml", *args,
                 "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--export.enabled", "false")
    assert result.trainer.logger.log_dir == str(tmp_path / "run" / "tensorboard" / "version_0")
    assert list((tmp_path / "run" / "tensorboard" / "version_0").glob("events.out.tfevents.*"))


def test_generation_tasks_report_tokens_per_second(tmp_path: Path, llama: Path) -> None:
    from sft_fixtures import chat_rows, write_jsonl

    from lit_ft.registry import get_task
    from lit_ft.source import DataSource
    from lit_ft.tasks.sft import SFTData
    from lit_ft.training.progress import _Meter

    assert get_task("sft").throughput_unit == "tokens" and get_task("seq2seq").throughput_unit == "tokens"
    assert get_task("classification").throughput_unit == "samples"
    dm = SFTData(source=DataSource(train=write_jsonl(chat_rows(4), tmp_path / "rows.jsonl")),
                 tokenizer=str(llama), batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    meter = _Meter("tokens")
    meter.add(batch, world_size=2)
    assert meter.count == 2 * sum(dm.features("train")["length"])  # real tokens, not padding; both processes
    assert re.fullmatch(r"Epoch 1  1 batches  [\d.]+s  [\d,]+ tokens/s", meter.line("Epoch 1", None))


def test_a_terminal_gets_live_bars_that_give_way_to_the_stage_line(tmp_path: Path, tiny_bert: Path,
                                                                   sentiment_files: dict) -> None:
    import fcntl
    import pty
    import struct
    import termios

    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    at = args.index("--trainer.enable_progress_bar")
    args[at + 1] = "true"
    primary, replica = pty.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen([sys.executable, "-m", "lit_ft", "fit", "--config", QUICKSTART, *args,
                             "--trainer.max_epochs", "1", "--export.enabled", "false"],
                            stdout=replica, stderr=replica, stdin=replica, env=env, close_fds=True)
    os.close(replica)
    shown = b""
    while chunk := _read(primary):
        shown += chunk
    assert proc.wait(timeout=300) == 0, shown.decode()[-3000:]
    text = shown.decode(errors="replace")
    assert re.search(r"\rEpoch 1/1: +\d+%\|", text), "a live bar while the epoch runs"
    assert re.search(r"\rValidation: +\d+%\|", text)
    assert re.search(r"\rEpoch 1/1  \d+/\d+ batches  [\d.]+s  [\d,]+ samples/s  loss [\d.]+\r\n", text), text
    assert "v_num" not in text and "DataLoader 0" not in text.split("Epoch 1/1  ")[-1]


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the child closed the terminal
        return b""


def test_best_keeps_optimizer_state_when_configured(tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    from lit_ft.errors import UserError

    args = [*tiny_args(tmp_path / "run", tiny_bert, sentiment_files), "--export.enabled", "false"]
    result = cli("fit", "--config", QUICKSTART, *args, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                 "--checkpoint.save_weights_only_best", "false")
    best = torch.load(result.trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=False)
    assert best["optimizer_states"][0]["state"]
    with pytest.raises(UserError, match=r"holds the weights only .* resume with `--ckpt_path last`"):
        cli("fit", "--config", QUICKSTART, *args, "--ckpt_path", "best")


def test_metric_files_are_written_without_the_progress_bar(tmp_path: Path, tiny_bert: Path) -> None:
    """`metrics/*.json` do not depend on the display: mid-epoch and end-of-epoch validations and the test all
    write their file with the bar off, and each holds what the CSV logger logged for the same step."""
    files = write_sentiment_csvs(tmp_path / "data", n_train=32, n_eval=16)
    root = tmp_path / "run"
    args = [*_run_args(root, tiny_bert, files)[1:], "--trainer.enable_progress_bar", "false",
            "--trainer.max_epochs", "1", "--trainer.val_check_interval", "2"]
    repo = Path(__file__).resolve().parents[1]
    _lit_ft("fit", "--config", repo / QUICKSTART, *args, cwd=tmp_path, home=tmp_path)
    _lit_ft("test", "--config", repo / QUICKSTART, *args, "--ckpt_path", "last", cwd=tmp_path, home=tmp_path)
    names = sorted(p.name for p in (root / "metrics").glob("*.json"))
    assert names == ["test.json", "val_epoch_1.json", "val_step_2.json"], names
    mid = json.loads((root / "metrics" / "val_step_2.json").read_text())
    assert mid["step"] == 2 and "val/f1/negative" in mid["metrics"]
    logged = {}
    for path in root.glob("csv/version_*/metrics.csv"):
        for row in csv.DictReader(path.open()):
            if row.get("val/loss"):
                logged[int(row["step"])] = float(row["val/loss"])
    end = json.loads((root / "metrics" / "val_epoch_1.json").read_text())
    files = {run["step"]: run["metrics"]["val/loss"] for run in (mid, end)}  # the same step numbering
    assert logged == pytest.approx(files, abs=1e-6)
    assert "test/accuracy" in json.loads((root / "metrics" / "test.json").read_text())["metrics"]


def test_sft_fit_prints_one_cut_line_no_warnings_and_dashes_for_unmeasured(tmp_path: Path, llama: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A real SFT fit run by step count (`max_epochs -1`) with examples cut at max_length and no generation: the
    epoch line counts its batches out of the run's, the cut and dropped examples are one line, no Python warning or
    torchmetrics notice reaches the terminal, and the generation metrics never measured show `-`."""
    from sft_fixtures import write_jsonl
    from test_packing import varied_rows

    train, held = (write_jsonl(varied_rows(n), tmp_path / f"{name}.jsonl") for name, n in (("train", 24), ("held", 8)))
    repo = Path(__file__).resolve().parents[1]
    args = ["--config", repo / "configs/sft_chat.yaml", "--model.backbone", llama,
            "--data.init_args.source.train", train, "--data.init_args.source.validation", held,
            "--data.init_args.source.test", held, "--data.init_args.format", "prompt_completion",
            "--data.init_args.max_length", "12", "--data.init_args.drop_untrainable", "true",
            "--data.init_args.batch_size", "2", "--data.init_args.packing", "true", "--trainer.max_epochs", "-1",
            "--trainer.max_steps", "3", "--trainer.precision", "32-true", "--model.task_options.generate_examples", "0"]
    out = _lit_ft("fit", *args, "--trainer.default_root_dir", tmp_path / "run", cwd=tmp_path, home=tmp_path)
    lines = out.splitlines()
    assert re.search(r"^Epoch 1  3/3 batches  ", out, re.MULTILINE), out
    assert not any(w in out for w in ("Warning", "warnings.warn", "rank_zero_warn", "compute", ".py:")), out
    cut = [line for line in lines if "max_length" in line and "cut" in line]
    assert cut == ["lit_ft sft: 16 of 24 train, 5 of 8 validation, 5 of 8 test examples longer than "
                   "data.max_length=12 were cut; dropped 4 train, 1 validation, 1 test with no response token left "
                   "(data.drop_untrainable)"], out
    header = lines.index(next(line for line in lines if line.startswith("  val ")))
    cells = dict(zip(lines[header].split()[1:], lines[header + 1].split(), strict=True))
    assert cells["exact_match"] == cells["rougeL"] == "-" and float(cells["perplexity"]) > 1
    saved = json.loads(next((tmp_path / "run" / "metrics").glob("val_*.json")).read_text())["metrics"]
    assert set(saved) == {"val/loss", "val/perplexity"}  # an unmeasured metric is not logged as 0
    capsys.readouterr()  # a monitor that was never measured ranks as the worst value, and says so
    cli("fit", *args, "--model.task_options.monitor", "rougeL", "--trainer.default_root_dir", tmp_path / "by_rouge",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false")
    assert "  best val/rougeL: - (not measured)" in capsys.readouterr().out.splitlines()
