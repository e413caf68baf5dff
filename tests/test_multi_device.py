"""Every rank gets the same number of batches (train, validation, test, predict), and evaluation still counts every
example exactly once: the samplers over many (examples, ranks, batch size) combinations, the padding flag through
a real loader, and real 2- and 3-process gloo runs (fit + validate + predict) against the 1-process run."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from builders import write_sentiment_csvs
from helpers import QUIET, cli, tiny_args
from torch.utils.data import DataLoader

from lit_ft.commands.cli import LitFtCLI
from lit_ft.io import read_jsonl
from lit_ft.sampler import (
    PADDING,
    EvalRows,
    LengthGroupedBatchSampler,
    ShardedEvalBatchSampler,
    flagged_collate,
    is_padding,
)
from lit_ft.training.safe_load import load_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
CASES = [(n, world, batch) for n in (*range(12), 13, 23, 37, 101) for world in (1, 2, 3, 4)
         for batch in (1, 2, 3, 5, 8)]


def _lengths(n: int) -> list[int]:
    return [(i * 7) % 11 + 1 for i in range(n)]


def test_eval_ranks_get_equal_batches_and_every_example_once() -> None:
    for n, world, batch in CASES:
        _check_eval(n, world, batch)


def _check_eval(n: int, world: int, batch: int) -> None:
    shards = [list(ShardedEvalBatchSampler(_lengths(n), batch, rank=r, world_size=world)) for r in range(world)]
    counts = {len(s) for s in shards}
    # equal on every rank, and no more batches than a full split needs
    assert counts == {math.ceil(n / (batch * world))}, (n, world, batch)
    batches = [b for s in shards for b in s]
    assert all(1 <= len(b) <= batch for b in batches)
    real = Counter(i for b in batches for i in b if i < n)
    assert sorted(real) == list(range(n)) and set(real.values()) <= {1}
    padding = [b for b in batches if any(i >= n for i in b)]
    assert all(len(b) == 1 and b[0] - n in range(n) for b in padding)  # one known row, flagged by its index
    assert len(padding) == len(batches) - min(n, len(batches))  # padding only where a batch would be empty


def test_train_ranks_get_equal_batches_as_len_says() -> None:
    for n, world, batch in CASES:
        for drop_last in (False, True):
            _check_train(n, world, batch, drop_last)


def _check_train(n: int, world: int, batch: int, drop_last: bool) -> None:
    ranks = [list(LengthGroupedBatchSampler(_lengths(n), batch, seed=3, group_batches=2, rank=r, world_size=world,
                                            drop_last=drop_last)) for r in range(world)]
    size = batch * world
    assert [len(r) for r in ranks] == [n // size if drop_last else math.ceil(n / size)] * world, (n, world, batch)
    lengths = [len(LengthGroupedBatchSampler(_lengths(n), batch, rank=r, world_size=world, drop_last=drop_last))
               for r in range(world)]
    assert lengths == [len(r) for r in ranks]  # what Lightning's estimated_stepping_batches counts
    assert all(1 <= len(b) <= batch for r in ranks for b in r)
    seen = Counter(i for r in ranks for b in r for i in b)
    if drop_last:
        assert sum(seen.values()) == len(ranks[0]) * size and set(seen.values()) <= {1}
    else:  # the remainder is kept; a last batch smaller than the ranks wraps around to the start of the epoch
        assert sorted(seen) == list(range(n))
        assert sum(seen.values()) == n + max(0, world - (n % size or size))


def test_the_issue_case_nine_examples_on_four_ranks() -> None:
    counts = [len(ShardedEvalBatchSampler(_lengths(9), 4, rank=r, world_size=4)) for r in range(4)]
    assert counts == [1, 1, 1, 1]  # was [1, 1, 1, 0]


def test_padding_batches_are_flagged_through_a_loader() -> None:
    rows = datasets.Dataset.from_dict({"id": ["a", "b"], "x": [[1, 2], [3]], "length": [2, 1]})

    def collate(items: list[dict]) -> dict:
        return {"id": [r["id"] for r in items], "keys": sorted(items[0])}

    loaders = [DataLoader(EvalRows(rows), batch_sampler=ShardedEvalBatchSampler(rows["length"], 4, r, 3),
                          collate_fn=lambda items: flagged_collate(collate, items)) for r in range(3)]
    batches = [list(loader) for loader in loaders]
    assert [[b["id"] for b in rank] for rank in batches] == [[["b"]], [["a"]], [["b"]]]  # longest first
    assert [is_padding(rank[0]) for rank in batches] == [True, False, False]
    assert all(rank[0]["keys"] == ["id", "length", "x"] for rank in batches)  # the task's collate sees no flag


# ---- real multi-process runs -------------------------------------------------------------------------------------
# one global batch of 12 (12, 6 and 4 per process): 54 = 4 full global batches + 6, and that last one splits evenly
# too (3 + 3, 2 + 2 + 2), so every optimizer step averages the same examples on 1, 2 and 3 processes. 23 evaluation
# examples at batch 1: 12 batches per rank on 2 ranks and 8 on 3, one of them padding
N_TRAIN, N_EVAL, GLOBAL_BATCH = 54, 23, 12
BATCHES_PER_EPOCH = math.ceil(N_TRAIN / GLOBAL_BATCH)
PROCESSES = (2, 3)


def _args(root: Path, tiny_bert: Path, files: dict[str, str], devices: int) -> list[str]:
    return ["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(root, tiny_bert, files),
            "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto",
            "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0", "--export.enabled", "false",
            "--data.init_args.batch_size", str(GLOBAL_BATCH // devices), "--data.init_args.eval_batch_size", "1",
            "--model.learning_rate", "2e-2"]


def _start(argv: list[str]) -> subprocess.Popen[str]:
    """`tests/ddp_probe.py`: fit, then predict with the best checkpoint, in one multi-process launch."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "ddp_probe.py"), *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True)


@contextlib.contextmanager
def _launched(argvs: list[list[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """The launches of `_start`; any still running when the test ends (a failed check) is killed with its workers."""
    launches = [_start(argv) for argv in argvs]
    try:
        yield launches
    finally:
        for launch in launches:
            if launch.poll() is None:
                os.killpg(launch.pid, signal.SIGKILL)
                launch.communicate()


def _finish(process: subprocess.Popen[str]) -> None:
    _, err = process.communicate(timeout=1200)  # a hang guard: on a crowded 2-core machine a launch takes minutes
    assert process.returncode == 0, err[-3000:]


def _val_metrics(root: Path) -> dict[str, float]:
    (path,) = (root / "metrics").glob("val_*.json")
    return json.loads(path.read_text())["metrics"]


def _final_step_and_lr(root: Path) -> tuple[int, list[float]]:
    state = load_checkpoint_file(str(root / "checkpoints" / "last.ckpt"))
    return state["global_step"], state["lr_schedulers"][0]["_last_lr"]


def _states(model: Any, stage: str) -> dict[str, Any]:
    metrics = {**dict(model.metrics[stage].items()), "loss": model.losses[stage]}
    return {f"{stage}/{name}.{key}": [t.clone() for t in value] if isinstance(value, list) else [value.clone()]
            for name, metric in metrics.items() for key, value in metric.metric_state.items()}


def _check_padding_counts_nowhere(fitted: LitFtCLI) -> None:
    """A flagged batch runs through the fitted model but changes no metric state and makes no record."""
    model, batch = fitted.model, next(iter(fitted.datamodule.val_dataloader()))
    model.eval()
    with torch.no_grad():
        assert model.predict_step(batch, 0) and model.test_step(batch, 0)  # a real batch makes records
        before = _states(model, "test") | _states(model, "val")
        padding = {**batch, PADDING: True}
        assert model.predict_step(padding, 0) == [] and model.test_step(padding, 0) is None
        model.validation_step(padding, 0)
    after = _states(model, "test") | _states(model, "val")
    assert before.keys() == after.keys() and before["test/loss.weight"][0] > 0
    for key, tensors in before.items():
        assert len(tensors) == len(after[key]) and all(map(torch.equal, tensors, after[key])), key


def _check_rank_batches(root: Path, world: int) -> None:
    """Every rank ran the same number of training, validation and predict batches, and the evaluation batches that
    are not padding hold every example exactly once."""
    ranks = [json.loads((root / "batches" / f"rank{r}.json").read_text()) for r in range(world)]
    assert [r["train"] for r in ranks] == [BATCHES_PER_EPOCH] * world
    per_rank = math.ceil(N_EVAL / world)
    padding = per_rank * world - N_EVAL
    assert padding > 0  # the case that needs the padding batches
    for stage in ("val", "predict"):
        assert [len(r[stage]) for r in ranks] == [per_rank] * world, stage
        assert sum(flag for r in ranks for _, flag in r[stage]) == padding, stage
        counted = Counter(i for r in ranks for ids, flag in r[stage] if not flag for i in ids)
        assert sorted(counted, key=int) == [str(i) for i in range(N_EVAL)] and set(counted.values()) == {1}, stage


@pytest.mark.slow
def test_two_and_three_processes_match_one_process(tmp_path: Path, tiny_bert: Path) -> None:
    files = write_sentiment_csvs(tmp_path / "data", n_train=N_TRAIN, n_eval=N_EVAL)
    files["predict"] = files["validation"]
    roots = {world: tmp_path / f"world{world}" for world in PROCESSES}
    with _launched([_args(roots[world], tiny_bert, files, world) for world in PROCESSES]) as launches:
        one = _fit_one_process(tmp_path / "one", tiny_bert, files)  # while the launches run
        for world, launch in zip(PROCESSES, launches, strict=True):
            _finish(launch)
            _check_matches_one_process(roots[world], world, tmp_path / "one", one)


def _fit_one_process(root: Path, tiny_bert: Path, files: dict[str, str]) -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = cli("fit", *_args(root, tiny_bert, files, 1), *QUIET[2:])
    finally:
        torch.set_num_threads(threads)
    assert single.trainer.global_step == single.trainer.estimated_stepping_batches == BATCHES_PER_EPOCH
    _check_padding_counts_nowhere(single)
    one = _val_metrics(root)
    assert 0.5 < one["val/accuracy"] < 1  # learnt something, not one class throughout
    return one


def _check_matches_one_process(root: Path, world: int, single_root: Path, single: dict[str, float]) -> None:
    _check_rank_batches(root, world)
    # the schedule's length (estimated_stepping_batches) is the steps taken: linear decay ends at 0 on the last step
    assert _final_step_and_lr(root) == _final_step_and_lr(single_root)
    assert _final_step_and_lr(root)[0] == BATCHES_PER_EPOCH and set(_final_step_and_lr(root)[1]) == {0.0}
    many = _val_metrics(root)
    assert single.keys() == many.keys()
    for key, value in single.items():
        assert many[key] == pytest.approx(value, abs=1e-6), (world, key)
    ids = [r["id"] for r in read_jsonl(root / "predictions.jsonl")]
    assert ids == [str(i) for i in range(N_EVAL)], world  # every input once, in input order
