"""`configs/strategy/multinode.yaml` launched as docs/multi-gpu.md says, on one machine: two node ranks of one CPU
process each (gloo, 127.0.0.1), by the documented torchrun lines and by the documented `srun` line with the variables
SLURM gives each task. Both train on the global batches of a one-process run and end with its metrics."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import write_sentiment_csvs
from helpers import cli, tiny_args

from lit_ft.training.safe_load import load_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "multi-gpu.md"
PIECE = "configs/strategy/multinode.yaml"
# 24 rows = 3 global batches of 8 (4 per node); 10 evaluation rows in batches of 2: 3 per node, one of them padding
N_TRAIN, N_EVAL, GLOBAL_BATCH, NODES = 24, 10, 8, 2
# what a launcher or an earlier run may have left in this process's environment
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK")


def documented(launcher: str) -> list[list[str]]:
    """The command lines of docs/multi-gpu.md that start with `launcher`, split as a shell would."""
    lines = [line.strip() for line in DOC.read_text().splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(f"{launcher} ")]


def tiny(argv: list[str], root: Path, tiny_bert: Path, files: dict[str, str]) -> list[str]:
    """A documented `lit_ft fit` command with the recipe swapped for the tiny quickstart and one CPU per node."""
    assert argv[:2] == ["fit", "--config"] and argv[3:] == ["--config", PIECE], argv
    return ["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(ROOT / PIECE),
            *run_args(root, tiny_bert, files, GLOBAL_BATCH // NODES)]


def run_args(root: Path, tiny_bert: Path, files: dict[str, str], batch_size: int) -> list[str]:
    return [*tiny_args(root, tiny_bert, files), "--trainer.devices", "1", "--trainer.max_epochs", "1",
            "--trainer.num_sanity_val_steps", "0", "--export.enabled", "false", "--model.learning_rate", "2e-2",
            "--data.init_args.batch_size", str(batch_size), "--data.init_args.eval_batch_size", "2"]


def free_ports(count: int, low: int = 15000, high: int = 25000) -> list[int]:
    """`count` different ports nothing listens on, in [low, high) (SLURM's derived ports are 15000 + the job id's
    last 4 digits)."""
    held: list[socket.socket] = []
    try:
        for port in range(low + os.getpid() % 5000, high):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            held.append(s)
            if len(held) == count:
                return [h.getsockname()[1] for h in held]
    finally:
        for h in held:
            h.close()
    raise AssertionError("no free ports")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCH_VARIABLES and not k.startswith(("SLURM_", "TORCHELASTIC"))}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def torchrun_nodes(root: Path, tiny_bert: Path, files: dict[str, str],
                   port: int) -> list[tuple[list[str], dict[str, str]]]:
    """The two documented torchrun lines, with one process per node on this machine's loopback address."""
    lines = documented("torchrun")
    assert [line[line.index("--node_rank") + 1] for line in lines] == ["0", "1"]
    launches = []
    for line in lines:
        at = line.index("-m")
        assert line[at + 1] == "lit_ft"
        options = dict(zip(line[1:at:2], line[2:at:2], strict=True))
        assert options["--nnodes"] == str(NODES)
        options.update({"--nproc_per_node": "1", "--master_addr": "127.0.0.1", "--master_port": str(port)})
        torchrun = str(Path(sys.executable).parent / "torchrun")
        argv = [torchrun, *[w for kv in options.items() for w in kv], "-m", "lit_ft",
                *tiny(line[at + 2 :], root, tiny_bert, files)]
        launches.append((argv, clean_env()))
    return launches


def slurm_tasks(root: Path, tiny_bert: Path, files: dict[str, str],
                port: int) -> list[tuple[list[str], dict[str, str]]]:
    """The documented `srun` line as SLURM starts it on 2 nodes with --ntasks-per-node=1: the same command in every
    task, each with its task's variables (Lightning's SLURMEnvironment reads them)."""
    (line,) = documented("srun")
    assert line[1] == ".venv/bin/lit_ft"
    job_id = f"7{port - 15000:04d}"  # Lightning's port: 15000 + the job id's last 4 digits
    argv = [sys.executable, "-m", "lit_ft", *tiny(line[2:], root, tiny_bert, files)]
    common = {"SLURM_JOB_ID": job_id, "SLURM_JOB_NAME": "lit_ft", "SLURM_NNODES": str(NODES),
              "SLURM_NTASKS": str(NODES), "SLURM_NTASKS_PER_NODE": "1", "SLURM_NODELIST": "127.0.0.1"}
    return [(argv, clean_env(**common, SLURM_PROCID=str(rank), SLURM_NODEID=str(rank), SLURM_LOCALID="0"))
            for rank in range(NODES)]


def finish(processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for process, log in zip(processes, logs, strict=True):
        process.wait(timeout=240)  # a hang guard (torchrun's own exit barrier waits 300 s)
        assert process.returncode == 0, log.read_text()[-3000:]


def metrics(root: Path) -> tuple[dict[str, float], int]:
    (path,) = (root / "metrics").glob("val_*.json")
    state = load_checkpoint_file(str(root / "checkpoints" / "last.ckpt"))
    return json.loads(path.read_text())["metrics"], state["global_step"]


@pytest.mark.slow
def test_two_nodes_by_torchrun_and_by_slurm_match_one_process(tmp_path: Path, tiny_bert: Path) -> None:
    files = write_sentiment_csvs(tmp_path / "data", n_train=N_TRAIN, n_eval=N_EVAL)
    roots = {"torchrun": tmp_path / "torchrun", "slurm": tmp_path / "slurm"}
    ports = free_ports(2)
    launches = (torchrun_nodes(roots["torchrun"], tiny_bert, files, ports[0])
                + slurm_tasks(roots["slurm"], tiny_bert, files, ports[1]))
    logs = [tmp_path / f"process{i}.log" for i in range(len(launches))]
    processes = []
    for (argv, env), log in zip(launches, logs, strict=True):
        with log.open("w") as out:  # the child keeps its own copy of the descriptor
            processes.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
    try:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:  # the one-process run while the nodes run: the same global batch in one process
            cli("fit", "--config", ROOT / "configs" / "quickstart.yaml",
                *run_args(tmp_path / "one", tiny_bert, files, GLOBAL_BATCH))
        finally:
            torch.set_num_threads(threads)
        finish(processes, logs)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    one, one_steps = metrics(tmp_path / "one")
    assert one_steps == N_TRAIN // GLOBAL_BATCH and 0 < one["val/loss"]
    for launcher, root in roots.items():
        node_metrics, steps = metrics(root)
        assert steps == one_steps, launcher  # one node alone would take 6 steps of 4 rows
        assert node_metrics.keys() == one.keys()
        for key, value in one.items():
            assert node_metrics[key] == pytest.approx(value, abs=1e-6), (launcher, key)
    for rank, log in enumerate(logs):  # torchrun's node 0 and 1, then SLURM's tasks 0 and 1
        out = log.read_text()
        assert f"Initializing distributed: GLOBAL_RANK: {rank % NODES}, MEMBER: {rank % NODES + 1}/{NODES}" in out
        assert "when logging on epoch level in distributed setting" not in out  # lit_ft's metrics are synced
        assert ("SLURM auto-requeueing enabled" in out) == (rank >= NODES)  # Lightning's SLURMEnvironment
