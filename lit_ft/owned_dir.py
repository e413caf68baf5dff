"""Output directories lit_ft owns: it writes a directory only if it is missing, empty, or a previous output of the
same kind, and it deletes or replaces only files it wrote itself.

A directory lit_ft writes as a whole (an export, a report's files) gets a manifest, `lit_ft.json`, with the
output's `kind` and the `files` lit_ft wrote there. Anything else in a directory is the user's: a directory
holding such files is refused in one line unless `--overwrite` is given, and even then those files are kept
(a new file that would replace one of them is refused). Writing is done in a hidden temporary directory next to
the target, then the files are moved in one by one (each rename is atomic); the manifest is written first
listing the old and new files together, so a kill half-way leaves every file accounted for, and last with the
new files alone, after the old ones no longer written are removed. The writer holds the directory's lock
(`lit_ft.run_lock`) throughout, so two processes never write one directory.

Outputs written before the manifest named its kind and files are recognised by `LEGACY` (an export's
`lit_ft.json` naming its task, a report's `data.json` and PNGs, a search's `study.db`). Such a directory was
written whole by lit_ft (earlier versions replaced it whole each time), so its files are taken as lit_ft's;
the first write into it removes none of them, and later writes treat them as their own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_ft.errors import UserError
from lit_ft.io import TMP_MARK, clean_stale_temps, remove_path, temp_name, write_text
from lit_ft.run_lock import LOCK_FILE, lock_directory

MANIFEST = "lit_ft.json"
SHOWN = 3  # names of files shown in a refusal
LISTED = 100  # files of a directory looked at to refuse it
OVERWRITE_FIX = ("give a new or empty directory, or add --overwrite to write beside them (lit_ft never removes "
                 "files it did not write)")
# what lit_ft writes in run directories that carry no manifest: `fit --overwrite` and `tune --keep best` remove these
WRITTEN_FILES = {"checkpoints": ("*.ckpt", "*.consolidated", "best.json"), "samples": ("*_step*.jsonl",)}


def _legacy_export(path: Path, manifest: dict[str, Any]) -> bool:
    return "task" in manifest and "pipeline_tag" in manifest


def _legacy_report(path: Path, manifest: dict[str, Any]) -> bool:
    files = listed_files(path, LISTED)
    return "data.json" in files and all(f == "data.json" or f.endswith(".png") for f in files)


def _legacy_tune(path: Path, manifest: dict[str, Any]) -> bool:
    return (path / "study.db").is_file()


LEGACY: dict[str, Callable[[Path, dict[str, Any]], bool]] = {
    "export": _legacy_export, "report": _legacy_report, "tune": _legacy_tune,
}


@dataclass(frozen=True)
class Ownership:
    """What an existing directory holds, seen by a writer of outputs of `kind`.

    `owned`: files lit_ft wrote there (an earlier output of this kind); `foreign`: the other files (the first
    `LISTED`);
    `remove_stale`: whether owned files the new output does not write again are removed (False for an output
    from before manifests listed their files: they are kept, and listed from now on)."""

    path: Path
    kind: str
    owned: frozenset[str]
    foreign: tuple[str, ...]
    remove_stale: bool = True


def ownership(path: Path, kind: str) -> Ownership:
    """Sort the files under `path` (missing: none) into lit_ft's own of `kind` and the rest (the first `LISTED`
    of the rest: a refusal needs no more, and an output directory given as `~` is not walked whole)."""
    manifest = read_manifest(path)
    previous = manifest.get("kind") == kind or ("kind" not in manifest and kind in LEGACY
                                                and LEGACY[kind](path, manifest))
    if not previous:
        return Ownership(path, kind, frozenset(), tuple(listed_files(path, LISTED)))
    listed = manifest.get("files") if manifest.get("kind") == kind else None
    if not isinstance(listed, list):  # listing none: every file there is the earlier output's
        return Ownership(path, kind, frozenset(f for f in listed_files(path) if f != MANIFEST), (), remove_stale=False)
    owned = frozenset(str(f) for f in listed) | {MANIFEST}
    return Ownership(path, kind, owned - {MANIFEST}, tuple(listed_files(path, LISTED, skip=owned)))


def claim(path: str | Path, kind: str, overwrite: bool, label: str, fix: str = OVERWRITE_FIX) -> Ownership:
    """The ownership of output directory `path`, or a one-line UserError when it is not lit_ft's to write.

    Args:
        path: The output directory.
        kind: The kind of output (`export`, `report`, ...); an earlier output of another kind is not this one's.
        overwrite: Write beside files lit_ft did not write (they are kept).
        label: The option that names the directory, for the message (`--output_dir`).
        fix: What the message tells the user to do.
    """
    where = Path(path)
    if where.exists() and not where.is_dir():
        raise UserError(f"{label} '{where}' is a file, not a directory; give a directory to write the {kind} to")
    found = ownership(where, kind)
    if found.foreign and not overwrite:
        count = f"{LISTED} or more" if len(found.foreign) >= LISTED else str(len(found.foreign))
        shown = ", ".join(found.foreign[:SHOWN]) + (f", ... ({count} in all)" if len(found.foreign) > SHOWN else "")
        raise UserError(f"{label} '{where}' is not empty: it holds files lit_ft did not write ({shown}); {fix}")
    return found


def check_apart(output: str | Path, label: str, run_dir: str | Path, checkpoint_dir: str | Path) -> None:
    """An output directory may neither equal nor contain the run directory or its checkpoint directory, nor lie
    inside the checkpoint directory (a directory inside the run, such as `<run>/export`, is fine; so is one next
    to a loose checkpoint file, whose folder is taken as its run directory)."""
    out = Path(output).resolve()
    for name, guarded in (("run directory", Path(run_dir).resolve()),
                          ("checkpoint directory", Path(checkpoint_dir).resolve())):
        if out == guarded or out in guarded.parents:
            raise UserError(f"{label} '{output}' {'is' if out == guarded else 'contains'} the {name} '{guarded}', "
                            f"whose checkpoints it must not touch; write the {label} elsewhere, such as "
                            f"{Path(run_dir) / 'export'}")
    inside_run = Path(checkpoint_dir).resolve() == Path(run_dir).resolve()  # a loose .ckpt: its folder is the run
    if not inside_run and Path(checkpoint_dir).resolve() in out.parents:
        raise UserError(f"{label} '{output}' is inside the checkpoint directory '{checkpoint_dir}'; write it "
                        f"elsewhere, such as {Path(run_dir) / 'export'}")


def write_owned_dir(path: str | Path, kind: str, write: Callable[[Path], None], overwrite: bool = False,
                    label: str = "output directory", fix: str = OVERWRITE_FIX, record: bool = True) -> Path:
    """Write output directory `path` with `write(tmp)` (which fills an empty temporary directory), under the
    directory's lock; a failure or a refusal leaves `path` as it was (created only if the write succeeds).

    Args:
        path: The output directory.
        kind: The kind of output recorded in its manifest.
        write: Writes the output's files into the directory it is given; a `lit_ft.json` it writes is kept
            (with `kind` and `files` added).
        overwrite: Write beside files lit_ft did not write (they are kept; none may be replaced).
        label: The option naming the directory, for messages.
        fix: What a refusal tells the user to do.
        record: Write the manifest; without it (a scaffold that becomes the user's own files at once) nothing
            marks the directory as lit_ft's, so it is written only when missing or empty.
    """
    out = Path(path)
    claim(out, kind, overwrite, label, fix)  # refused before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out.parent)  # a killed write's temporary directory
    lock = lock_directory(out, f"lit_ft: writing the {kind} {out}")
    try:
        found = claim(out, kind, overwrite, label, fix)  # again, now that no other process can write it
        tmp = temp_name(out)
        try:
            tmp.mkdir()
            write(tmp)
            install(tmp, found, record)
        finally:
            remove_path(tmp)
    finally:
        lock.release()  # a directory the lock created goes again if the write failed
    return out


def install(tmp: Path, found: Ownership, record: bool = True) -> None:
    """Move the files of the finished `tmp` into `found.path`, replacing lit_ft's own files only; `record`:
    write the manifest (the kind and the files)."""
    new = [f for f in listed_files(tmp) if f != MANIFEST]
    clashes = [f for f in new if f not in found.owned and (found.path / f).exists()]
    if clashes:
        raise UserError(f"{found.path} holds {clashes[0]}, which lit_ft did not write, and the {found.kind} "
                        f"would replace it: move it away, or write the {found.kind} to a new directory")
    manifest = read_manifest(tmp)
    stale = sorted(found.owned - set(new))
    kept = [] if found.remove_stale else stale
    manifest.update(kind=found.kind, files=sorted({*new, *kept}))
    target = found.path
    target.mkdir(parents=True, exist_ok=True)
    if record:
        write_text(json.dumps({**manifest, "files": sorted({*new, *stale})}, indent=2), target / MANIFEST)
    for name in new:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, target / name)
    if found.remove_stale:
        for name in stale:
            remove_path(target / name)
            _prune_parents(target / name, target)
    if record:
        write_text(json.dumps(manifest, indent=2), target / MANIFEST)


def mark_owned(path: Path, kind: str) -> None:
    """Write the manifest of an output that grows in place (a search's directory): its kind, no file list."""
    if read_manifest(path).get("kind") != kind:
        write_text(json.dumps({"kind": kind}, indent=2), path / MANIFEST)


def remove_owned(path: Path, kind: str) -> list[Path]:
    """Remove what lit_ft wrote in `path`: the files its manifest lists, or for the run's checkpoint and sample
    directories (`WRITTEN_FILES`, by name) the files fit writes; other files stay. Returns what went."""
    if not path.is_dir():
        return []
    if kind in WRITTEN_FILES:
        gone = sorted({p for pattern in WRITTEN_FILES[kind] for p in path.glob(pattern)})
    else:
        listed = ownership(path, kind).owned
        gone = [path / name for name in sorted(listed)] + ([path / MANIFEST] if listed else [])
    for item in gone:
        remove_path(item)
        _prune_parents(item, path)
    clean_stale_temps(path)
    _remove_empty(path)
    return gone


def listed_files(path: Path, limit: int | None = None, skip: frozenset[str] = frozenset()) -> list[str]:
    """The files under `path` (relative, `/`-separated; symbolic links not followed), leaving out lit_ft's lock
    and temporary files and the names in `skip`; at most `limit` of them."""
    found: list[str] = []
    for top, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if TMP_MARK not in d)
        base = Path(top).relative_to(path)
        for name in sorted(files):
            relative = (base / name).as_posix()
            if TMP_MARK in name or name == LOCK_FILE or relative in skip:
                continue
            found.append(relative)
            if limit is not None and len(found) >= limit:
                return found
    return found


def read_manifest(path: Path) -> dict[str, Any]:
    """A directory's `lit_ft.json` (empty when missing or not a JSON object)."""
    try:
        loaded = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _prune_parents(item: Path, top: Path) -> None:
    """Remove the directories above a removed file that are left empty, up to `top` (not included)."""
    for parent in item.parents:
        if parent == top or top not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:
            return


def _remove_empty(path: Path) -> None:
    """Remove `path` if it is empty (a lock file left by a killed process keeps it: it may be locked again)."""
    try:
        path.rmdir()
    except OSError:
        pass
