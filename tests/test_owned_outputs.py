"""lit_ft never deletes a file it did not write, and one process at a time writes a run directory.

Output directories (exports, the fit-time export, a report's folder, a search's directory, a new-task scaffold)
are written only when missing, empty or an earlier output of the same kind (`lit_ft.owned_dir`); `--overwrite`
writes beside other files and still keeps them. `fit`, `tune` and `export` lock the directories they write
(`lit_ft.run_lock`); a second process is refused naming the holder, and a killed holder leaves no stale lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from builders import write_sentiment_csvs
from helpers import cli, tiny_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lit_ft.commands.cli import main
from lit_ft.errors import UserError
from lit_ft.owned_dir import MANIFEST, write_owned_dir
from lit_ft.run_lock import LOCK_FILE, is_launching_process

QUICKSTART = "configs/quickstart.yaml"
# a stand-in for another lit_ft process: it holds the locks of the directories it is given until killed
HOLDER = ("import sys, time\nfrom lit_ft.run_lock import lock_directory\n"
          "held = [lock_directory(d, 'lit_ft fit (the holder)') for d in sys.argv[1:]]\n"
          "print('held', flush=True)\ntime.sleep(600)\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A finished one-epoch run of the tiny BERT, in `<tmp>/runs/run` (its parent holds nothing else)."""
    base = tmp_path_factory.mktemp("owned")
    root = base / "runs" / "run"
    cli("fit", "--config", QUICKSTART, *tiny_args(root, tiny_bert, write_sentiment_csvs(base / "data")),
        "--trainer.max_epochs", "1")
    return root


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run `lit_ft ARGV` in-process; it must exit 2 with one line on stderr, which is returned."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.startswith("lit_ft: error: ") and err.count("\n") == 1, err
    return err


# ---- output directories ----------------------------------------------------------------------------
def test_export_into_a_foreign_directory_is_refused_and_its_files_kept(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "config.json").write_text("{}")
    before = snapshot(out)
    for extra in ([], ["--format", "onnx"]):
        err = refused(capsys, ["export", str(run_dir), "--output_dir", str(out), *extra])
        assert f"'{out}'" in err and "config.json" in err and "notes.txt" in err and "--overwrite" in err
    # --overwrite writes beside the user's files, but its config.json would replace theirs: refused too
    err = refused(capsys, ["export", str(run_dir), "--output_dir", str(out), "--overwrite"])
    assert "config.json" in err and "did not write" in err
    assert snapshot(out) == before


def test_no_output_directory_holds_the_run_or_its_checkpoints(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_dir / "checkpoints")
    for target in (run_dir.parent, run_dir, run_dir / "checkpoints", run_dir / "checkpoints" / "hf"):
        for extra in ([], ["--overwrite"]):
            err = refused(capsys, ["export", str(run_dir), "--output_dir", str(target), *extra])
            assert f"'{target}'" in err and ("checkpoint directory" in err or "run directory" in err)
    assert snapshot(run_dir / "checkpoints") == before
    main(["export", str(run_dir), "--output_dir", str(run_dir / "export")])  # the usual place, inside the run
    assert snapshot(run_dir / "checkpoints") == before


def test_an_export_is_written_again_and_overwrite_keeps_foreign_files(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    main(["export", str(run_dir), "--output_dir", str(out)])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["kind"] == "export" and manifest["task"] == "classification"
    assert sorted(manifest["files"]) == sorted(set(snapshot(out)) - {MANIFEST})
    assert "model.safetensors" in manifest["files"]
    # an earlier export is written again without --overwrite; a file it listed and no longer writes goes
    (out / "stale.bin").write_bytes(b"old weights")
    (out / MANIFEST).write_text(json.dumps({**manifest, "files": [*manifest["files"], "stale.bin"]}))
    main(["export", str(run_dir), "--output_dir", str(out)])
    assert not (out / "stale.bin").exists() and json.loads((out / MANIFEST).read_text()) == manifest
    # a file the user put there: refused, then kept by --overwrite (and not listed as lit_ft's)
    (out / "notes.txt").write_text("mine")
    assert "notes.txt" in refused(capsys, ["export", str(run_dir), "--output_dir", str(out)])
    main(["export", str(run_dir), "--output_dir", str(out), "--overwrite"])
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()
    assert "notes.txt" not in json.loads((out / MANIFEST).read_text())["files"]
    # an export written before manifests had kind and files is an earlier export too, and loses no file
    (out / "notes.txt").unlink()
    (out / "extra.txt").write_text("an old export's file")
    (out / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k not in ("kind", "files")}))
    main(["export", str(run_dir), "--output_dir", str(out)])
    assert (out / "extra.txt").read_text() == "an old export's file" and (out / "model.safetensors").is_file()
    assert json.loads((out / MANIFEST).read_text())["kind"] == "export"


def test_a_report_replaces_only_a_report_and_keeps_files_in_its_folder(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page, folder = tmp_path / "r.html", tmp_path / "r_files"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    err = refused(capsys, ["report", str(run_dir), "--output", str(page)])
    assert "r_files" in err and "notes.txt" in err and "--overwrite" in err and not page.exists()
    main(["report", str(run_dir), "--output", str(page), "--overwrite"])
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "data.json").is_file()
    mine = tmp_path / "mine.html"
    mine.write_text("<p>my page</p>")
    assert "never replaces" in refused(capsys, ["report", str(run_dir), "--output", str(mine)])
    assert mine.read_text() == "<p>my page</p>" and not (tmp_path / "mine_files").exists()


def test_a_search_directory_must_be_new_empty_or_a_search(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tune_dir = tmp_path / "elsewhere"
    tune_dir.mkdir()
    (tune_dir / "notes.txt").write_text("mine")
    search = tmp_path / "space.yaml"
    search.write_text("model.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    err = refused(capsys, ["tune", "--config", QUICKSTART, "--model.backbone", str(tiny_bert), "--search",
                           str(search), "--trials", "1", "--tune_dir", str(tune_dir)])
    assert f"'{tune_dir}'" in err and "notes.txt" in err
    assert snapshot(tune_dir) == {"notes.txt": b"mine"}


names = st.sampled_from(["a.txt", "b.bin", "config.json", "sub/c.txt", "sub/d.bin", "e"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(foreign=st.sets(names), owned=st.sets(names), new=st.sets(names, min_size=1))
def test_writing_an_owned_directory_never_touches_a_file_lit_ft_did_not_write(
    tmp_path_factory: pytest.TempPathFactory, foreign: set[str], owned: set[str], new: set[str]
) -> None:
    """Any mix of the user's files and an earlier output's: with --overwrite the new output replaces lit_ft's own
    files only, removes the earlier ones it does not write again, and keeps every other file byte for byte (a
    new file that would replace one of them refuses the whole write, changing nothing)."""
    out = tmp_path_factory.mktemp("out")
    owned -= foreign
    for name in foreign | owned:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"old {name}")
    (out / MANIFEST).write_text(json.dumps({"kind": "export", "files": sorted(owned)}))
    before = snapshot(out)

    def write(tmp: Path) -> None:
        for name in new:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(f"new {name}")

    if new & foreign:
        with pytest.raises(UserError, match="did not write"):
            write_owned_dir(out, "export", write, overwrite=True)
        assert snapshot(out) == before
        return
    write_owned_dir(out, "export", write, overwrite=True)
    after = snapshot(out)
    assert {name: after.get(name) for name in foreign} == {name: before[name] for name in foreign}
    assert all(after[name] == f"new {name}".encode() for name in new)
    assert not (owned - new) & set(after)
    assert json.loads(after[MANIFEST])["files"] == sorted(new) and LOCK_FILE not in after


# ---- one process per run directory -------------------------------------------------------------------
def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_lock(
    run_dir: Path, tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str],
    capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "run"
    fit = ["fit", "--config", QUICKSTART, *tiny_args(fresh, tiny_bert, sentiment_files), "--trainer.max_steps", "2"]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(fresh), str(run_dir)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        second = subprocess.run([sys.executable, "-m", "lit_ft", *fit], capture_output=True, text=True, timeout=600)
        assert second.returncode == 2, second.stderr
        error = [line for line in second.stderr.splitlines() if "error" in line]  # after Lightning's "Seed set"
        assert len(error) == 1 and error[0].startswith("lit_ft: error: ") and error == second.stderr.splitlines()[-1:]
        assert f"pid {holder.pid}: lit_ft fit (the holder)" in error[0]
        assert str(fresh) in second.stderr and not (fresh / "checkpoints").exists()
        out = tmp_path / "export"
        err = refused(capsys, ["export", str(run_dir), "--output_dir", str(out)])
        assert f"pid {holder.pid}" in err and str(run_dir) in err and not out.exists()
    finally:
        holder.kill()  # SIGKILL: the lock file stays, its lock goes with the process
        holder.wait()
    assert (fresh / LOCK_FILE).is_file()
    cli(*fit)
    assert (fresh / "checkpoints" / "best.json").is_file() and not (fresh / LOCK_FILE).exists()
    main(["export", str(run_dir), "--output_dir", str(tmp_path / "export")])
    assert (tmp_path / "export" / "model.safetensors").is_file()


@pytest.mark.parametrize(("env", "launching"), [({}, True), ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True),
                                                ({"LOCAL_RANK": "1"}, False), ({"RANK": "3"}, False),
                                                ({"SLURM_PROCID": "2"}, False), ({"NODE_RANK": "1"}, False)])
def test_only_the_launching_process_of_a_ddp_run_takes_its_lock(
    env: dict[str, str], launching: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_launching_process() is launching
